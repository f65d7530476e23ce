"""A sweep's jobs, read back from their folders: what the report ranks, renders and plots.

For each job folder (one with Hydra's `.hydra/overrides.yaml`) it reads the overrides, the composed
config (`.hydra/config.yaml`), the status the sweep callback recorded (`job_status.json`, `error.txt`),
the held-out validation (`validation.jsonl`, `best_checkpoint.json`), the end-of-run warnings
(`run_summary.json`) and the training metrics: ms-swift's `logging.jsonl`, else the job's offline W&B
run (`wandb/*run-*/run-*.wandb`, read record by record; no W&B server, no wandb login). The run
folder's own files are read through `bbuqc.io.run_folder`, the sweep's through `bbuqc.sweep.records`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbuqc.data.swift_rows import lookup  # a key of a nested dict by its dotted path
from bbuqc.io.run_folder import (
    LOGGING,
    STEP_KEY,
    checkpoint_validations,
    figures_at,
    log_rows,
    number,
    read_best,
    read_summary,
    read_validations,
    step_value,
    training_finished,
)
from bbuqc.sweep.records import ERROR_TXT, JOB_STATUS, job_dirs
from bbuqc.tracking.wandb_records import WandbRun, find_run_files, read_run
from bbuqc.training.selection import DEFAULT_SELECT_BY, VAL, greater_is_better, select_metric


class ReportError(ValueError):
    """Input the report cannot work with; str() is one line."""


@dataclass
class Job:
    dir: Path
    label: str  # the folder, relative to the report's folder
    num: int | None
    overrides: list[str]
    status: str
    error: str | None = None
    steps: list[int] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)  # the weighted reward, per logged step
    reward_ids: dict[str, float] = field(default_factory=dict)  # final mean of each reward id
    metrics_source: str | None = None  # logging.jsonl | wandb | None
    wandb: WandbRun | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the job's composed config (.hydra/config.yaml)
    validations: list[dict[str, Any]] = field(default_factory=list)  # {"step": N, "val/...": x} per validation
    best_step: int | None = None  # the best checkpoint's step (best_checkpoint.json)
    best_checkpoint: str | None = None  # its folder, relative to the job folder
    held_out: dict[str, float] = field(default_factory=dict)  # every val/ figure at the best step
    health: dict[str, float] = field(default_factory=dict)  # GRPO health: HEALTH keys, mean over logged steps
    returned: Any = None  # what the job returned to the sweeper (job_status.json)
    warnings: list[str] = field(default_factory=list)  # the run's end-of-run warnings (run_summary.json)

    @property
    def params(self) -> dict[str, str]:
        return parse_overrides(self.overrides)

    @property
    def select_metric(self) -> str | None:
        """The job's `train.select_by` (its task's default when null): its objective."""
        task = lookup(self.config, "task.name")
        if task not in DEFAULT_SELECT_BY:
            return lookup(self.config, "train.select_by")
        return select_metric(task, lookup(self.config, "train.select_by"))

    @property
    def objectives(self) -> list[str]:
        return list(lookup(self.config, "train.objectives") or []) or ([self.select_metric] if self.select_metric else [])

    @property
    def constraint(self) -> str | None:
        """The job's `train.select_constraint` (the business rule its best checkpoint was chosen under)."""
        return lookup(self.config, "train.select_constraint") or None

    def metric_greater(self, metric: str) -> bool:
        explicit = lookup(self.config, "train.select_greater_is_better") if metric == self.select_metric else None
        return greater_is_better(metric, explicit)

    @property
    def finished(self) -> bool:
        return self.status == "completed"

    @property
    def final_reward(self) -> float | None:
        return self.reward[-1] if self.reward else None

    @property
    def best_reward(self) -> float | None:
        finite = [r for r in self.reward if math.isfinite(r)]
        return max(finite) if finite else None


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """`+a.b=1` / `~a` / `a=x` -> {"a.b": "1", "a": None, ...}, in order."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        out[key] = value if sep else None
    return out


_REWARD_ID = re.compile(r"^rewards/(.+)/mean$")


def _metrics_from_rows(rows: list[dict[str, Any]], prefix: str, step_key: str) -> tuple[list[int], list[float], dict[str, float]]:
    steps, reward, ids = [], [], {}
    for row in rows:
        if prefix:
            row = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
        value = number(row.get("reward"))
        if value is None:
            continue
        step = step_value(row.get(step_key))
        steps.append(step if step is not None else (steps[-1] + 1) if steps else 1)
        reward.append(value)
        for key, v in row.items():
            m = _REWARD_ID.match(key)
            if m and number(v) is not None:
                ids[m.group(1)] = number(v)  # later steps overwrite: the final mean
    return steps, reward, ids


# GRPO's health, as ms-swift logs it each step: the share of prompts whose completions all scored the
# same (no advantage, no gradient), the mean completion length, the share cut at max_completion_length
HEALTH = ("frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio")


def _validations_from_rows(rows: list[dict[str, Any]], prefix: str, step_key: str) -> list[dict[str, Any]]:
    """`val/` figures logged in training lines (logging.jsonl, or W&B history) as validation lines."""
    out = []
    for row in rows:
        figures = {k[len(prefix):]: number(v) for k, v in row.items() if k.startswith(prefix + VAL)}
        figures = {k: v for k, v in figures.items() if v is not None}
        step = step_value(row.get(step_key))
        if figures and step is not None:
            out.append({"step": step, **figures})
    return out


def _health(rows: list[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    out = {}
    for key in HEALTH:
        values = [number(row.get(prefix + key)) for row in rows]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            out[key] = sum(values) / len(values)
    return out


def _read_config(job_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}




def _read_held_out(job: Job, logging_rows: list[dict[str, Any]]) -> None:
    """Validation history, best checkpoint and the figures at it: validation.jsonl and
    best_checkpoint.json, else the val/ keys of logging.jsonl or of the W&B run."""
    job.validations = read_validations(job.dir)
    if not job.validations:
        job.validations = _validations_from_rows(logging_rows, "", STEP_KEY)
    if not job.validations and job.wandb is not None:
        job.validations = _validations_from_rows(job.wandb.history, "", "train/global_step")
    best = read_best(job.dir)
    if best is not None:
        job.best_step = best["step"]
        checkpoint = job.dir / f"checkpoint-{best['step']}"
        job.best_checkpoint = checkpoint.name if checkpoint.is_dir() else None
    elif job.validations and job.select_metric:
        # no record (a W&B-only folder): the best validation by the job's own selection metric
        scored = [v for v in checkpoint_validations(job.validations) if number(v.get(job.select_metric)) is not None]
        if scored:
            sign = 1 if job.metric_greater(job.select_metric) else -1
            job.best_step = max(scored, key=lambda v: (sign * v[job.select_metric], -v["step"]))["step"]
    job.held_out = figures_at(job.validations, job.best_step)
    if best is not None and best.get("metric") and best.get("value") is not None:
        job.held_out.setdefault(best["metric"], best["value"])


def _config_order(ids: dict[str, float], config: dict[str, Any]) -> dict[str, float]:
    """Reward ids in the run's reward-set order (W&B history keys come unordered)."""
    weights = (config.get("reward") or {}).get("weights") if isinstance(config.get("reward"), dict) else None
    order = []
    if isinstance(weights, dict):
        for namespace, entries in weights.items():
            if isinstance(entries, dict):
                order += [f"{namespace}.{name}" for name in entries]
    rank = {rid: i for i, rid in enumerate(order)}
    return dict(sorted(ids.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def read_job(job_dir: Path, root: Path) -> Job:
    import yaml

    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])]
    except (OSError, yaml.YAMLError):
        overrides = []
    record: dict[str, Any] = {}
    if (job_dir / JOB_STATUS).is_file():
        try:
            record = json.loads((job_dir / JOB_STATUS).read_text())
        except (OSError, ValueError):
            record = {}
    num = record.get("num")
    if not isinstance(num, int):
        head = job_dir.name.split("_", 1)[0]
        num = int(head) if head.isdigit() else None
    label = str(job_dir.relative_to(root)) if job_dir != root else job_dir.name
    job = Job(dir=job_dir, label=label, num=num, overrides=overrides, status=record.get("status") or "")
    job.error = record.get("error")
    if (job_dir / ERROR_TXT).is_file():
        text = (job_dir / ERROR_TXT).read_text(errors="replace")
        job.error = job.error or " | ".join(text.split("\n\n", 1)[0].splitlines())
        job.status = job.status or "failed"

    logging_jsonl = job_dir / LOGGING
    logging_rows = log_rows(job_dir)
    runs = find_run_files(Path(job_dir) / "wandb")
    if runs:
        try:
            job.wandb = read_run(runs[-1])
        except Exception:  # an unreadable run file must not sink the report
            job.wandb = None
    if logging_jsonl.is_file():
        job.steps, job.reward, job.reward_ids = _metrics_from_rows(logging_rows, prefix="", step_key=STEP_KEY)
        job.metrics_source = LOGGING
    if not job.reward and job.wandb is not None:
        steps, reward, ids = _metrics_from_rows(job.wandb.history, prefix="train/", step_key="global_step")
        if reward:
            job.steps, job.reward, job.reward_ids = steps, reward, _config_order(ids, job.wandb.config)
            job.metrics_source = "wandb"
    job.config = _read_config(job_dir) or (job.wandb.config if job.wandb else {})
    job.returned = record.get("return")
    job.health = _health(logging_rows) or (_health(job.wandb.history, "train/") if job.wandb else {})
    _read_held_out(job, logging_rows)
    summary = read_summary(job_dir)
    job.warnings = [str(w) for w in (summary or {}).get("warnings") or []]
    if not job.status:
        if training_finished(job_dir):
            job.status = "completed"
        elif job.wandb is not None and job.wandb.exit_code is not None:
            job.status = "completed" if job.wandb.exit_code == 0 else "failed"
        else:
            job.status = "incomplete" if job.reward else "unknown"
    return job


def collect_jobs(folder: Path) -> list[Job]:
    folder = Path(folder)
    if not folder.exists():
        raise ReportError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    dirs = job_dirs(folder)
    if not dirs and (folder / ".hydra" / "overrides.yaml").is_file():
        dirs = [folder]  # a single run's folder
    if not dirs:
        raise ReportError(f"{folder}: no Hydra job folders (none with .hydra/overrides.yaml) in it")
    return [read_job(d, folder) for d in dirs]


def swept_parameters(jobs: list[Job]) -> dict[str, list[str | None]]:
    """Override keys whose value differs between jobs, with their values in first-seen order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.params if k not in keys]
    swept = {}
    for key in keys:
        values: list[str | None] = []
        for job in jobs:
            value = job.params.get(key)
            if value not in values:
                values.append(value)
        if len(values) > 1:
            swept[key] = values
    return swept


def reward_id_columns(jobs: list[Job]) -> list[str]:
    ids: list[str] = []
    for job in jobs:
        ids += [i for i in job.reward_ids if i not in ids]
    return ids


def job_name(job: Job) -> str:
    return str(job.num) if job.num is not None else job.label


def short_label(job: Job, swept: dict[str, list]) -> str:
    params = job.params
    parts = [f"{key.rsplit('.', 1)[-1]}={params.get(key)}" for key in swept]
    return ", ".join(parts) or (", ".join(job.overrides) or job.label)
