"""Validate in Hydra's on_run_start: a bad config exits before Hydra makes a run folder."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bbuqc.config.validate import ConfigError, validate


class ValidateConfig(Callback):
    def __init__(self, command: str):
        self.command = command  # which command's checks run (set by each primary config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            validate(config, self.command)
        except ConfigError as err:
            for line in err.problems:
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
