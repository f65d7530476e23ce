"""Failure isolation records for sweeps (and single runs), as a Hydra callback.

Registered in conf/common.yaml under `hydra.callbacks.sweep_records`.

- `on_job_end` (runs where the job ran: in-process for the basic launcher, on the Ray worker,
  inside the SLURM job): `<job dir>/job_status.json` always ({status, num, overrides, return,
  error}); `<job dir>/error.txt` when the job raised (type, message, traceback).
- `on_run_start` / `on_multirun_start` (bbuqc-train): `train.objectives` must name validation
  metrics, and a search sweeper (anything but the grid; e.g. hydra/sweeper=optuna) needs jobs that
  validate and produce the objective (bbuqc/sweep/objective.py, bbuqc/training/objective.py); else `error:` lines, exit 2,
  before the first trial. Then the sweep folder is made: one that cannot be is one `error:` line,
  exit 2.
- `on_multirun_end` (the process that started the sweep): `<sweep dir>/sweep_summary.json`,
  one entry per job folder found (dir, overrides, status, error).

Hydra's BasicSweeper (used with every launcher here) runs the whole batch, then re-raises the
first failed job's exception, so `on_multirun_end` is skipped when a job failed; the summary
is then written by an exit hook registered in `on_multirun_start`. Either way it is written
once, from the job folders, after every job has ended.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

import bbuqc.sweep  # noqa: F401  (registers the launcher resolvers before Hydra builds the launcher)
from bbuqc.io.atomic import write_json_atomic

log = logging.getLogger(__name__)

JOB_STATUS = "job_status.json"
ERROR_TXT = "error.txt"
SWEEP_SUMMARY = "sweep_summary.json"
MAX_RETURN_CHARS = 20_000


def _jsonable(value: Any) -> Any:
    """The job's return value as JSON (str() for anything else; cut when huge)."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict) and "log_history" in value:
        # ms-swift's result repeats every logged step; they are in logging.jsonl already
        value = {k: v for k, v in value.items() if k != "log_history"}
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > MAX_RETURN_CHARS:
        return {"truncated": text[:MAX_RETURN_CHARS]}
    return json.loads(text)


def error_text(err: BaseException) -> str:
    """`Type: message`, a blank line, then the traceback."""
    head = f"{type(err).__name__}: {err}"
    return head + "\n\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__))


def error_line(err: BaseException) -> str:
    return " | ".join(f"{type(err).__name__}: {err}".splitlines())


def write_job_records(job_dir: Path, job_return: JobReturn, num: int | None = None) -> dict[str, Any]:
    failed = job_return.status == JobStatus.FAILED
    value = getattr(job_return, "_return_value", None)  # `.return_value` re-raises a failure
    record: dict[str, Any] = {
        "status": "failed" if failed else ("completed" if job_return.status == JobStatus.COMPLETED else "unknown"),
        "num": num,
        "overrides": list(job_return.overrides or []),
        "return": None if failed else _jsonable(value),
        "error": error_line(value) if failed and isinstance(value, BaseException) else None,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    if failed and isinstance(value, BaseException):
        (job_dir / ERROR_TXT).write_text(error_text(value))
    write_json_atomic(job_dir / JOB_STATUS, record, indent=1, default=str)
    return record


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders under a sweep folder: those with Hydra's `.hydra/overrides.yaml`."""
    found = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    found = {p for p in found if p != sweep_dir and "wandb" not in p.relative_to(sweep_dir).parts}
    return sorted(found, key=_job_order)


def _job_order(job_dir: Path) -> tuple[int, str]:
    status = job_dir / JOB_STATUS
    if status.is_file():
        try:
            num = json.loads(status.read_text()).get("num")
            if isinstance(num, int):
                return num, job_dir.name
        except (OSError, ValueError):
            pass
    head = job_dir.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30), job_dir.name


def sweep_summary(sweep_dir: Path) -> dict[str, Any]:
    """One entry per job folder (what each job's callback recorded; `unknown` if it never did)."""
    import yaml

    jobs = []
    for job_dir in job_dirs(sweep_dir):
        status_file = job_dir / JOB_STATUS
        record: dict[str, Any] = {}
        if status_file.is_file():
            try:
                record = json.loads(status_file.read_text())
            except (OSError, ValueError):
                record = {}
        overrides = record.get("overrides")
        if overrides is None:
            overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        error = record.get("error")
        if error is None and (job_dir / ERROR_TXT).is_file():
            error = (job_dir / ERROR_TXT).read_text().splitlines()[0]
        jobs.append(
            {
                "dir": str(job_dir.relative_to(sweep_dir)),
                "num": record.get("num"),
                "overrides": overrides,
                "status": record.get("status", "unknown"),
                "error": error,
            }
        )
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {"sweep_dir": str(sweep_dir), "counts": counts, "jobs": jobs}


def write_sweep_summary(sweep_dir: Path) -> Path:
    path = sweep_dir / SWEEP_SUMMARY
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, sweep_summary(sweep_dir), indent=1, default=str)
    return path


def _command(config: DictConfig) -> str | None:
    """Which bbuqc command composed this config (each primary config names it for its validation)."""
    return OmegaConf.select(config, "hydra.callbacks.validate.command", default=None)


def _refuse(problems: list[str]) -> None:
    """Config problems as `error:` lines and exit 2, as bbuqc.cli.ValidateConfig does for single runs."""
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


class SweepRecords(Callback):
    """See the module docstring. Stateless apart from the sweep folder, so it pickles to Ray."""

    def __init__(self) -> None:
        self._sweep_dir: str | None = None
        self._summary_written = False

    # -- the driver ------------------------------------------------------------------------
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _command(config) == "train":
            from bbuqc.sweep.objective import objective_problems

            _refuse(objective_problems(config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _command(config) == "train":
            # a search (Optuna, ...) needs every trial to return a held-out objective: refuse before the
            # first trial, and before any sweep folder or summary exists
            from bbuqc.sweep.objective import is_search, objective_problems, search_problems

            _refuse(search_problems(config) if is_search(config) else objective_problems(config))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            # the launcher makes it next, and reports a failure with its traceback and exit 1
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _refuse([f"hydra.sweep.dir={sweep_dir}: cannot create the sweep folder: "
                     f"{exc.strerror or exc} ({exc.filename})"])
        self._sweep_dir = str(sweep_dir.resolve())
        self._summary_written = False
        atexit.register(self._summary_at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write_summary()

    def _summary_at_exit(self) -> None:
        # reached when a failed job made the sweeper raise (Hydra exits 1), or on Ctrl-C
        if not self._summary_written:
            self._write_summary()

    def _write_summary(self) -> None:
        if self._sweep_dir is None:
            return
        try:
            path = write_sweep_summary(Path(self._sweep_dir))
            summary = json.loads(path.read_text())
            counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items())) or "no jobs"
            log.info("sweep summary: %s (%s)", path, counts)
        except Exception as err:  # a broken summary must not hide the sweep's own outcome
            log.warning("could not write %s in %s: %s", SWEEP_SUMMARY, self._sweep_dir, err)
        self._summary_written = True

    # -- every job, where it runs -------------------------------------------------------------
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from bbuqc.runtime.nodes import is_worker

        if is_worker():
            return  # one rank of a multi-GPU / multi-node job: the job's launcher records it
        try:
            job_dir = Path(str(config.hydra.runtime.output_dir))
            num = OmegaConf.select(config, "hydra.job.num", default=None)
            record = write_job_records(job_dir, job_return, num if isinstance(num, int) else None)
        except Exception as err:
            log.warning("could not record the job's status: %s", err)
            return
        if record["status"] == "failed":
            log.error("job failed (recorded in %s): %s", job_dir / ERROR_TXT, record["error"])
