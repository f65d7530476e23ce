"""Offline defaults for every heavy entry point: no hub, no W&B server, unless asked."""

from __future__ import annotations

import os

DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def use_offline_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
