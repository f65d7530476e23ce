"""Validate in Hydra's on_run_start: a bad config exits before Hydra makes a run folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bbuqc.config.validate import ConfigError, validate
from bbuqc.errors import InputError
from bbuqc.runtime.devices import require_devices


class ValidateConfig(Callback):
    def __init__(self, command: str):
        self.command = command  # which command's checks run (set by each primary config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from bbuqc.cli import end_of_composition

        end_of_composition()  # the sweep composed; its jobs report their own failures

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from bbuqc.cli import end_of_composition

        end_of_composition()
        try:
            validate(config, self.command)
            require_devices(config)
        except ConfigError as err:
            for line in err.problems:
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        if run_dir:
            # Hydra creates it next, and reports a failure with its traceback: make it here, so a run
            # folder that cannot be written (a file in its place, read-only) is one line naming it
            try:
                Path(str(run_dir)).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                print(f"error: hydra.run.dir={run_dir}: cannot create the run folder: "
                      f"{exc.strerror or exc} ({exc.filename})", file=sys.stderr)
                sys.exit(2)
