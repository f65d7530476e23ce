"""Shared fixtures: an isolated cache for built models and data, offline everywhere.

Shared helpers live in tests/support.py (``compose``, ``run_cli``, ``error_lines``): this folder is on
``sys.path`` for every test because this conftest is in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache (tiny models, synthetic world) shared by the session's tests; built once.

    ``BBUQC_CACHE`` points at it from the first test that asks until the session
    ends, then is restored to what it was (unset included).
    """
    path = Path(os.environ.get("BBUQC_TEST_CACHE") or tmp_path_factory.mktemp("bbuqc-cache"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BBUQC_CACHE", str(path))
        yield path


@pytest.fixture
def restored_rewards():
    """Whatever reward plug-ins the test loads are unregistered afterwards (the registry is per process)."""
    from bbuqc.rewards import REGISTRY
    from bbuqc.rewards.plugins import LOADED

    before, loaded = set(REGISTRY), dict(LOADED)
    yield
    for rid in set(REGISTRY) - before:
        del REGISTRY[rid]
    LOADED.clear()
    LOADED.update(loaded)
