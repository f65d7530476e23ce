"""The shared shape of every entry point: compose, validate, hand over to a runner.

Runners are imported only after validation passed, so `--cfg job`, `--help` and config
errors never pay for torch, transformers or ms-swift.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import bbuqc.config.store  # noqa: F401  (registers the schema and the mission group)
import bbuqc.sweep  # noqa: F401  (registers the resolver conf/hydra/launcher/ray.yaml uses)
from bbuqc.errors import InputError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def entry_point(runner: str) -> Callable[[], None]:
    """`runner` is "module:function", called with the validated config."""

    @hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        from bbuqc.config.validate import validate

        try:
            # Single runs were validated by the on_run_start callback; sweep jobs are checked
            # here so a bad job fails alone and is recorded with the rest of the sweep.
            validate(cfg)
            module, func = runner.split(":")
            return getattr(importlib.import_module(module), func)(cfg)
        except InputError as err:
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise  # the sweep records it and goes on with the other jobs
            for line in str(err).splitlines():
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)

    return main
