"""Stage-A fixtures; the helpers (and why the tests use their own test model) are in stage_a_support.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from stage_a_support import base_overrides, build_chatty, compose, make_tree


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Torch on one thread in these tests: on a small shared machine, OpenMP threads competing
    with other processes make the tiny model several times slower (restored afterwards)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("stage-a-tree"))


@pytest.fixture(scope="session")
def chatty_model(session_cache) -> Path:
    from bbuqc.models.tiny import ensure_tiny_model, tiny_env

    for key, value in tiny_env().items():
        os.environ.setdefault(key, value)
    return build_chatty(ensure_tiny_model("vl"), session_cache / "models" / "tiny-qwen2-vl-stage-a-test")


@pytest.fixture(scope="session")
def backend(chatty_model):
    """One loaded test model for the whole session."""
    from bbuqc.stage_a.backends import HFBackend

    return HFBackend(chatty_model)


@pytest.fixture
def make_cfg(tree, session_cache):
    """``make_cfg(output, root=tree, model=None, extra=[...], **infer_overrides)`` -> a composed config.
    ``model``: a checkpoint folder (the test model), or None for model=tiny (stub-backend tests)."""

    def make(output: Path, root: Path | None = None, model: Path | None = None, extra: list[str] | None = None,
             **infer):
        return compose(base_overrides(root or tree, output, model, **infer) + list(extra or []))

    return make
