"""The shared shape of every entry point: compose, validate, hand over to a runner.

Each command has its own primary config (conf/<command>.yaml) over the shared groups.
Runners are imported only after validation passed, so `--cfg job`, `--help` and config
errors never pay for torch, transformers or ms-swift.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import bbuqc.config.store  # noqa: F401  (registers the schema and the mission group)
import bbuqc.sweep  # noqa: F401  (registers the resolvers conf uses)
from bbuqc.errors import InputError
from bbuqc.runtime.paths import CONF_DIR


def _error_lines(err: Exception) -> list[str]:
    if isinstance(err, OSError) and not isinstance(err, InputError):
        # a folder that cannot be written (read-only, a file in its place, a full disk): name it and why
        return [f"{err.filename}: {err.strerror or type(err).__name__}"]
    return str(err).splitlines()


# Hydra prints a config it cannot compose (several lines) and exits 1; with HYDRA_FULL_ERROR it raises
# instead, so the entry point turns it into one `error:` line. Set only while Hydra composes: the job (and
# every process it starts) reports its own failures the usual way.
_FULL_ERROR = "HYDRA_FULL_ERROR"
_USER_FULL_ERROR = os.environ.get(_FULL_ERROR)
_USER_WANTS_TRACES = _USER_FULL_ERROR == "1"  # Hydra's own rule: only "1" turns it on (HYDRA_FULL_ERROR=0 is off)


def end_of_composition() -> None:
    """Called when the job starts (and by the validation callback, the first hook after composing)."""
    if _USER_FULL_ERROR is None:
        os.environ.pop(_FULL_ERROR, None)
    else:
        os.environ[_FULL_ERROR] = _USER_FULL_ERROR


class ValidateConfig(Callback):
    """Validation in Hydra's on_run_start (conf/common.yaml): a bad single run exits 2 before Hydra makes
    its run folder. Sweep jobs are validated where they run (``entry_point``)."""

    def __init__(self, command: str):
        self.command = command  # which command's checks run (set by each primary config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        end_of_composition()  # the sweep composed; its jobs report their own failures

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from bbuqc.checks import load_config_extensions, preflight
        from bbuqc.config.validate import ConfigError
        from bbuqc.runtime.nodes import is_worker, other_node_launcher, run_other_node

        end_of_composition()
        if is_worker():
            # one rank of a run bbuqc launched: its node's launcher checked this very config (and the node's
            # devices and rendezvous) before starting it, so the N ranks do not read the model's files and the
            # training rows N times more; they load what the checks would have loaded on the way
            load_config_extensions(config)
            return
        try:
            preflight(config, self.command)
            if other_node_launcher(config, self.command):
                # another node of a multi-node run: it starts its workers and leaves the run folder to node 0
                sys.exit(run_other_node(config, self.command))
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


def compose_error_lines(err: BaseException) -> list[str] | None:
    """A value OmegaConf refused while composing, as one line naming the field (and for a choice, what it
    takes); None for any other composition error (Hydra's own message says it best)."""
    from omegaconf.errors import ValidationError

    # a value of a group's file (a mission file's domain) is raised while Hydra handles it: the context
    cause = err if isinstance(err, ValidationError) else (err.__cause__ or err.__context__)
    if not isinstance(cause, ValidationError) or not getattr(cause, "full_key", None):
        return None
    from bbuqc.config.schema import choice_names

    key, value = cause.full_key, getattr(cause, "value", None)
    found = re.match(r"In '([^']+)':", str(err))  # Hydra names the group file it was composing
    where = f" (in {found.group(1)}.yaml)" if found else ""
    allowed = choice_names(key)
    if allowed is not None:
        return [f"{key}={value!r}: expected one of {', '.join(allowed)}{where}"]
    return [f"{key}: {str(cause.msg).splitlines()[0]}{where}"]


def entry_point(command: str, runner: Callable[[], Callable[[DictConfig], Any]]) -> Callable[[], None]:
    """`runner()` returns the function called with the validated config (imported late, see above).

    The function's return value is the job's return value: sweepers (Optuna) optimise it.
    """

    started = False

    @hydra.main(config_path=CONF_DIR, config_name=command, version_base="1.3")
    def task(cfg: DictConfig) -> Any:
        nonlocal started
        started = True
        end_of_composition()
        from bbuqc.checks import preflight

        try:
            # Single runs were validated by the on_run_start callback; sweep jobs are checked here (where
            # the job runs: a launcher host may have no GPU), so a bad job fails alone and is recorded
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                preflight(cfg, command)
            return runner()(cfg)
        except (InputError, OSError) as err:
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise  # the sweep records it and goes on with the other jobs
            if isinstance(err, OSError) and not isinstance(err, InputError) and err.filename is None:
                raise  # not about a file the user named: a real failure, with its traceback
            for line in _error_lines(err):
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)

    def main() -> Any:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        os.environ[_FULL_ERROR] = "1"
        try:
            return task()
        except (HydraException, OmegaConfBaseException) as exc:
            if started or _USER_WANTS_TRACES:
                raise
            lines = compose_error_lines(exc)
            if lines is None:  # what Hydra itself prints
                lines = [str(exc)] + ([str(exc.__cause__)] if isinstance(exc.__cause__, OmegaConfBaseException) else [])
                print("\n".join(lines), file=sys.stderr)
                _print_override_hint()
            else:
                for line in lines:
                    print(f"error: {line}", file=sys.stderr)
            raise SystemExit(2) from None
        except SystemExit as exc:
            # Hydra reports a command line it cannot compose (unknown group option, bad override syntax,
            # a value of the wrong type) with its own message and exit 1 before any job starts; that is
            # an input error like every other, so it exits 2 as they do. Failures inside a job keep theirs:
            # a job a launcher ran in another process (Ray, SLURM) never sets `started` here, but Hydra
            # re-raises its exception in this one, so what Hydra exited on tells a job from composition.
            if exc.code == 1 and not started and _composition_failed(exc):
                _print_override_hint()
                raise SystemExit(2) from None
            raise
        finally:
            end_of_composition()

    main.__doc__ = task.__doc__
    return main


def _composition_failed(exit_: SystemExit) -> bool:
    """Whether Hydra's exit 1 is about the command line (Hydra or OmegaConf refusing it), not a job."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    cause = exit_.__context__  # run_and_report calls sys.exit(1) while handling what it caught
    return cause is None or isinstance(cause, (HydraException, OmegaConfBaseException))


def _print_override_hint() -> None:
    from bbuqc.config.overrides import override_parse_hint

    hint = override_parse_hint(sys.argv[1:])  # Chinese paths must be quoted for Hydra
    if hint:
        print(f"error: {hint}", file=sys.stderr)
