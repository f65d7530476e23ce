"""Where bbuqc keeps things it builds or downloads (tiny models, ...).

Kept import-light on purpose: the config path and the tiny-model cache check
import this module and must stay fast (no torch, transformers, ms-swift).
"""
from __future__ import annotations

import os
from pathlib import Path

#: The Hydra config tree: `conf/` at the top of a checkout (its `experiment` group is `experiments/`, linked
#: in), shipped in the wheel as `conf/` (setup.cfg maps it), so an installed bbuqc finds it from any folder.
_PACKAGE = Path(__file__).resolve().parent.parent
CONF_DIR = str(next((d for d in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if (d / "common.yaml").is_file()),
                    _PACKAGE.parent / "conf"))

#: Environment variable that overrides the cache root (tests point it at a tmp dir).
CACHE_ENV = "BBUQC_CACHE"


def cache_dir() -> Path:
    """Root cache folder: ``$BBUQC_CACHE`` if set, else ``~/.cache/bbuqc``.

    Created on demand so callers can write into it straight away.
    """
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "bbuqc"
    root.mkdir(parents=True, exist_ok=True)
    return root
