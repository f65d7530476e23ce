"""What the test files share: a command's config composed as the command composes it, and a command run as a
user runs it. ``tests/`` is on ``sys.path`` (its conftest.py puts it there), so a test file writes
``from support import compose, run_cli``.

- ``compose(config_name, overrides)``: the shipped config tree (``bbuqc.runtime.paths.CONF_DIR``) composed for
  ``train`` / ``infer`` / ``evaluate`` / ``export`` with Hydra overrides; Hydra's own errors propagate;
- ``run_cli(module, *overrides, cwd=..., env=...)``: ``python -m bbuqc.<module> <overrides>`` in a subprocess,
  offline, stdout and stderr captured as text; ``env`` adds to (or, with ``None`` values, removes from) this
  process's environment;
- ``error_lines(stderr)``: the ``error: ...`` lines a refused command prints (docs/errors.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

import bbuqc.config.store  # noqa: F401  (the schema every command composes against)
from bbuqc.runtime.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]

#: what every command run by a test gets unless the test says otherwise: no hub, no W&B server, and this
#: checkout importable from any folder (the thread count is the caller's: outputs compared byte for byte
#: across runs must come from the same one)
CLI_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "TOKENIZERS_PARALLELISM": "false"}


def compose(config_name: str = "train", overrides: Iterable[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return _hydra_compose(config_name=config_name, overrides=list(overrides),
                              return_hydra_config=return_hydra_config)


def cli_env(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    merged: dict[str, str | None] = {**os.environ, **CLI_ENV, "PYTHONPATH": str(REPO), **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def run_cli(module: str, *overrides: str, cwd: Path | str = REPO, env: Mapping[str, str | None] | None = None,
            timeout: float = 600, python: Iterable[str] = ()) -> subprocess.CompletedProcess:
    """``module``: ``train``, ``infer``, ... (or ``bbuqc.train``); ``python``: interpreter options (``-X importtime``)."""
    name = module if module.startswith("bbuqc.") else f"bbuqc.{module}"
    return subprocess.run([sys.executable, *python, "-m", name, *overrides], cwd=cwd, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]
