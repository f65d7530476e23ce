"""The sweep comparison report: every job of a sweep folder side by side, ranked by what matters.

For each job folder (one with Hydra's `.hydra/overrides.yaml`) it reads the overrides, the
composed config (`.hydra/config.yaml`), the status the sweep callback recorded (`job_status.json`,
`error.txt`), the held-out validation (`validation.jsonl`, `best_checkpoint.json`) and the
training metrics: ms-swift's `logging.jsonl`, else the job's offline W&B run
(`wandb/*run-*/run-*.wandb`, read record by record; no W&B server, no wandb login).

Jobs are ranked by a held-out metric at their best checkpoint (`--metric`; default the jobs'
objective, `train.select_by`), comparable whatever the reward weights, unlike the weighted
training reward. Jobs that differ only by `train.seed` are combined (mean ± std, count); with two
objectives (`train.objectives`) the Pareto front is marked; GRPO's health per job
(`frac_reward_zero_std`, completion length, clip ratio) sits beside the figures. It writes, in the
sweep folder:

- `report.md`: the ranked table (best checkpoint, held-out figures, health), seeds combined, the
  training-reward table, the plots, the failed jobs;
- `report.csv`: one row per job in ranked order, one column per swept parameter and figure;
- `reward_curves.png`: the training reward per step of every job;
- `validation_curves.png`: the ranking metric per validation of every job (best checkpoint starred);
- `<metric>_vs_<parameter>.png`: the ranking metric against each swept parameter;
- `optimization_history.png` for a search (Optuna, ...): each trial's objective and the best so far.
Without any validation, `final_reward_vs_<parameter>.png` instead, and nothing is ranked.

Everything is computed before anything is written, so a bad folder writes nothing.
matplotlib is imported only to draw; nothing here imports torch or starts wandb.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbuqc.sweep.objective import read_best, read_validations
from bbuqc.sweep.records import ERROR_TXT, JOB_STATUS, job_dirs
from bbuqc.tracking.wandb_records import WandbRun, find_run_files, read_run
from bbuqc.training.selection import DEFAULT_SELECT_BY, VAL, greater_is_better, select_metric

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
CURVES_PNG = "reward_curves.png"


class ReportError(ValueError):
    """Input the report cannot work with; str() is one line."""


# ----------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------
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

    @property
    def params(self) -> dict[str, str]:
        return parse_overrides(self.overrides)

    @property
    def select_metric(self) -> str | None:
        """The job's `train.select_by` (its task's default when null): its objective."""
        task = _select(self.config, "task.name")
        if task not in DEFAULT_SELECT_BY:
            return _select(self.config, "train.select_by")
        return select_metric(task, _select(self.config, "train.select_by"))

    @property
    def objectives(self) -> list[str]:
        return list(_select(self.config, "train.objectives") or []) or ([self.select_metric] if self.select_metric else [])

    def metric_greater(self, metric: str) -> bool:
        explicit = _select(self.config, "train.select_greater_is_better") if metric == self.select_metric else None
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


_STEP = re.compile(r"^\s*(\d+)\s*/")
_REWARD_ID = re.compile(r"^rewards/(.+)/mean$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _metrics_from_rows(rows: list[dict[str, Any]], prefix: str, step_key: str) -> tuple[list[int], list[float], dict[str, float]]:
    steps, reward, ids = [], [], {}
    for row in rows:
        if prefix:
            row = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
        value = _number(row.get("reward"))
        if value is None:
            continue
        step = row.get(step_key)
        match = _STEP.match(step) if isinstance(step, str) else None
        if match:
            step = int(match.group(1))
        elif _number(step) is not None:
            step = int(_number(step))
        else:
            step = (steps[-1] + 1) if steps else 1
        steps.append(step)
        reward.append(value)
        for key, v in row.items():
            m = _REWARD_ID.match(key)
            if m and _number(v) is not None:
                ids[m.group(1)] = _number(v)  # later steps overwrite: the final mean
    return steps, reward, ids


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a killed job
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_logging_jsonl(path: Path) -> tuple[list[int], list[float], dict[str, float]]:
    return _metrics_from_rows(_jsonl_rows(path), prefix="", step_key="global_step/max_steps")


# GRPO's health, as ms-swift logs it each step: the share of prompts whose completions all scored the
# same (no advantage, no gradient), the mean completion length, the share cut at max_completion_length
HEALTH = ("frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio")


def _row_step(row: dict[str, Any], step_key: str) -> int | None:
    step = row.get(step_key)
    match = _STEP.match(step) if isinstance(step, str) else None
    if match:
        return int(match.group(1))
    number = _number(step)
    return int(number) if number is not None else None


def _validations_from_rows(rows: list[dict[str, Any]], prefix: str, step_key: str) -> list[dict[str, Any]]:
    """`val/` figures logged in training lines (logging.jsonl, or W&B history) as validation lines."""
    out = []
    for row in rows:
        figures = {k[len(prefix):]: _number(v) for k, v in row.items() if k.startswith(prefix + VAL)}
        figures = {k: v for k, v in figures.items() if v is not None}
        step = _row_step(row, step_key)
        if figures and step is not None:
            out.append({"step": step, **figures})
    return out


def _health(rows: list[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    out = {}
    for key in HEALTH:
        values = [_number(row.get(prefix + key)) for row in rows]
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


def _select(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _read_held_out(job: Job, logging_rows: list[dict[str, Any]]) -> None:
    """Validation history, best checkpoint and the figures at it: validation.jsonl and
    best_checkpoint.json, else the val/ keys of logging.jsonl or of the W&B run."""
    job.validations = read_validations(job.dir)
    if not job.validations:
        job.validations = _validations_from_rows(logging_rows, "", "global_step/max_steps")
    if not job.validations and job.wandb is not None:
        job.validations = _validations_from_rows(job.wandb.history, "", "train/global_step")
    best = read_best(job.dir)
    if best is not None:
        job.best_step = best["step"]
        checkpoint = job.dir / f"checkpoint-{best['step']}"
        job.best_checkpoint = checkpoint.name if checkpoint.is_dir() else None
    elif job.validations and job.select_metric:
        # no record (a W&B-only folder): the best validation by the job's own selection metric
        scored = [v for v in job.validations if _number(v.get(job.select_metric)) is not None]
        if scored:
            sign = 1 if job.metric_greater(job.select_metric) else -1
            job.best_step = max(scored, key=lambda v: (sign * v[job.select_metric], -v["step"]))["step"]
    for row in job.validations:
        if row["step"] == job.best_step:
            job.held_out = {k: v for k, v in row.items() if k != "step"}
    if best is not None and best.get("metric") and best.get("value") is not None:
        job.held_out.setdefault(best["metric"], best["value"])


def _training_finished(path: Path) -> bool:
    try:
        return '"train_runtime"' in path.read_text(errors="replace")
    except OSError:
        return False


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

    logging_jsonl = job_dir / "logging.jsonl"
    runs = find_run_files(Path(job_dir) / "wandb")
    if runs:
        try:
            job.wandb = read_run(runs[-1])
        except Exception:  # an unreadable run file must not sink the report
            job.wandb = None
    if logging_jsonl.is_file():
        job.steps, job.reward, job.reward_ids = read_logging_jsonl(logging_jsonl)
        job.metrics_source = "logging.jsonl"
    if not job.reward and job.wandb is not None:
        steps, reward, ids = _metrics_from_rows(job.wandb.history, prefix="train/", step_key="global_step")
        if reward:
            job.steps, job.reward, job.reward_ids = steps, reward, _config_order(ids, job.wandb.config)
            job.metrics_source = "wandb"
    job.config = _read_config(job_dir) or (job.wandb.config if job.wandb else {})
    job.returned = record.get("return")
    logging_rows = _jsonl_rows(logging_jsonl) if logging_jsonl.is_file() else []
    job.health = _health(logging_rows) or (_health(job.wandb.history, "train/") if job.wandb else {})
    _read_held_out(job, logging_rows)
    if not job.status:
        if logging_jsonl.is_file() and _training_finished(logging_jsonl):
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


# ----------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------
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


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _job_name(job: Job) -> str:
    return str(job.num) if job.num is not None else job.label


def _short_label(job: Job, swept: dict[str, list]) -> str:
    params = job.params
    parts = [f"{key.rsplit('.', 1)[-1]}={params.get(key)}" for key in swept]
    return ", ".join(parts) or (", ".join(job.overrides) or job.label)


# ----------------------------------------------------------------------------------------
# ranking by a held-out metric, seeds combined, the Pareto front
# ----------------------------------------------------------------------------------------
SEED = "train.seed"


@dataclass
class Ranking:
    metric: str | None  # the held-out metric jobs are ranked by (None: no job validated)
    greater: bool
    order: list[Job]  # every job, the ranked ones first (best first), then the others in job order
    objectives: list[str]  # two: the Pareto front is marked
    pareto: set[int] = field(default_factory=set)  # id() of the jobs on the front
    available: list[str] = field(default_factory=list)  # every held-out metric some job logged
    search: bool = False  # a search sweeper (Optuna, ...) ran the jobs: the history plot


def held_out_metrics(jobs: list[Job]) -> list[str]:
    names: list[str] = []
    for job in jobs:
        names += [n for n in job.held_out if n not in names]
    return names


def dominates(a: list[float], b: list[float], greater: list[bool]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    better = [(x > y) if g else (x < y) for x, y, g in zip(a, b, greater)]
    worse = [(x < y) if g else (x > y) for x, y, g in zip(a, b, greater)]
    return any(better) and not any(worse)


def pareto_front(points: list[list[float]], greater: list[bool]) -> list[int]:
    """Indices of the points no other point dominates."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, greater) for j, q in enumerate(points) if j != i)]


def _sweep_config(folder: Path) -> dict[str, Any]:
    import yaml

    for name in ("multirun.yaml", ".hydra/hydra.yaml"):
        try:
            config = yaml.safe_load((folder / name).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(config, dict):
            return config
    return {}


def rank(folder: Path, jobs: list[Job], metric: str | None = None) -> Ranking:
    """Rank by `metric` (default: the jobs' objective, train.select_by) at each job's best checkpoint."""
    available = held_out_metrics(jobs)
    if metric is not None and metric not in available:
        shown = ", ".join(available) if available else "none (no job validated: train.eval_steps)"
        raise ReportError(f"--metric {metric}: no job in {folder} logged it; held-out metrics logged: {shown}")
    finished = [j for j in jobs if j.finished]
    if metric is None:
        defaults = [j.select_metric for j in finished if j.select_metric in j.held_out]
        metric = defaults[0] if defaults else None
    greater = next((j.metric_greater(metric) for j in finished if metric and j.select_metric == metric),
                   greater_is_better(metric) if metric else True)
    ranked = [j for j in finished if metric and _number(j.held_out.get(metric)) is not None]
    ranked.sort(key=lambda j: ((-1 if greater else 1) * j.held_out[metric], j.num if j.num is not None else 1 << 30))
    order = ranked + [j for j in jobs if j not in ranked]
    objectives = next((j.objectives for j in finished if len(j.objectives) == 2), [])
    pareto: set[int] = set()
    if len(objectives) == 2:
        scored = [j for j in finished if all(_number(j.held_out.get(o)) is not None for o in objectives)]
        directions = [scored[0].metric_greater(o) if scored else greater_is_better(o) for o in objectives]
        front = pareto_front([[j.held_out[o] for o in objectives] for j in scored], directions)
        pareto = {id(scored[i]) for i in front}
    target = _select(_sweep_config(folder), "hydra.sweeper._target_")
    search = (folder / "optimization_results.yaml").is_file() or bool(target and "BasicSweeper" not in str(target))
    return Ranking(metric, greater, order, objectives, pareto, available, search)


@dataclass
class SeedGroup:
    params: dict[str, str | None]  # the swept parameters other than train.seed
    jobs: list[Job]

    def stats(self, metric: str) -> tuple[float, float, int] | None:
        """(mean, sample std, count) of `metric` at the best checkpoints; std 0 for one job."""
        values = [j.held_out[metric] for j in self.jobs if _number(j.held_out.get(metric)) is not None]
        if not values:
            return None
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return mean, std, len(values)


def seed_groups(jobs: list[Job]) -> list[SeedGroup]:
    """Finished jobs that differ only by train.seed, grouped (first-seen order); [] when no seed was swept."""
    swept = swept_parameters(jobs)
    if SEED not in swept:
        return []
    groups: dict[tuple, SeedGroup] = {}
    for job in jobs:
        if not job.finished:
            continue
        params = {k: job.params.get(k) for k in swept if k != SEED}
        groups.setdefault(tuple(params.items()), SeedGroup(params, [])).jobs.append(job)
    return list(groups.values())


def rows(jobs: list[Job], ranking: Ranking | None = None) -> list[dict[str, Any]]:
    """One dict per job, the columns of report.csv, in ranked order."""
    swept = swept_parameters(jobs)
    ids = reward_id_columns(jobs)
    held = held_out_metrics(jobs)
    out = []
    ordered = ranking.order if ranking else jobs
    ranked = {id(j): i + 1 for i, j in enumerate(ordered)
              if ranking and ranking.metric and j.finished and j.held_out.get(ranking.metric) is not None}
    for job in ordered:
        row: dict[str, Any] = {
            "rank": ranked.get(id(job)),
            "job": _job_name(job),
            "dir": job.label,
            "status": job.status,
            "overrides": " ".join(job.overrides),
        }
        for key in swept:
            row[key] = job.params.get(key)
        row["pareto"] = (id(job) in ranking.pareto) if ranking and ranking.objectives else None
        row["best_step"] = job.best_step
        row["best_checkpoint"] = f"{job.label}/{job.best_checkpoint}" if job.best_checkpoint else None
        for name in held:
            row[name] = job.held_out.get(name)
        for key in HEALTH:
            row[key] = job.health.get(key)
        row["steps"] = job.steps[-1] if job.steps else None
        row["final_reward"] = job.final_reward
        row["best_reward"] = job.best_reward
        for rid in ids:
            row[rid] = job.reward_ids.get(rid)
        row["metrics_source"] = job.metrics_source
        row["wandb_group"] = job.wandb.group if job.wandb else None
        row["error"] = job.error
        out.append(row)
    return out


def render_csv(jobs: list[Job], ranking: Ranking | None = None) -> str:
    table = rows(jobs, ranking)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _param_filename(key: str) -> str:
    return "final_reward_vs_" + re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".png"


def _metric_filename(metric: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", metric.removeprefix(VAL))
    return f"{slug}_vs_" + re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".png"


VAL_CURVES_PNG = "validation_curves.png"
HISTORY_PNG = "optimization_history.png"


def _param_cell(value: str | None) -> str:
    """A swept value as a table shows it: a search's floats to 4 significant digits (the CSV keeps them whole)."""
    number = _number(value)
    if number is None or value is None or "." not in str(value) and "e" not in str(value).lower():
        return "" if value is None else str(value)
    return f"{number:.4g}"


def _cells_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _ranked_table(ranking: Ranking, jobs: list[Job]) -> list[str]:
    swept = swept_parameters(jobs)
    shown = [ranking.metric, *[o for o in ranking.objectives if o != ranking.metric]]
    shown += [n for n in ranking.available if n not in shown and n != f"{VAL}n"]
    health = [h for h in HEALTH if any(h in j.health for j in jobs)]
    header = ["rank", "job", *swept, *(["Pareto"] if ranking.objectives else []), "best checkpoint",
              *[n.removeprefix(VAL) for n in shown], *health, "status"]
    lines = [_cells_row(header), "|" + "|".join("---:" if h not in ("job", "best checkpoint", "status") else "---"
                                                for h in header) + "|"]
    position = 0
    for job in ranking.order:
        value = job.held_out.get(ranking.metric) if job.finished else None
        position += value is not None
        cells = [
            str(position) if value is not None else "",
            _job_name(job),
            *[_param_cell(job.params.get(k)) for k in swept],
            *(["**front**" if id(job) in ranking.pareto else ""] if ranking.objectives else []),
            f"`{job.best_checkpoint}`" if job.best_checkpoint else (f"step {job.best_step}" if job.best_step else ""),
            *[(f"**{_fmt(job.held_out.get(n))}**" if n == ranking.metric and value is not None else _fmt(job.held_out.get(n)))
              for n in shown],
            *[_fmt(job.health.get(h)) for h in health],
            f"**{job.status}**" if job.status != "completed" else job.status,
        ]
        lines.append(_cells_row(cells))
    return lines


def render_markdown(folder: Path, jobs: list[Job], plots: list[str], ranking: Ranking | None = None) -> str:
    swept = swept_parameters(jobs)
    ids = reward_id_columns(jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    lines = [f"# Sweep report: `{folder}`", ""]
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines.append(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {status_text}.")
    if swept:
        shown = "; ".join(f"`{k}` = {', '.join('(unset)' if v is None else v for v in vals)}" for k, vals in swept.items())
        lines.append(f"Swept: {shown}.")
    groups = sorted({job.wandb.group for job in jobs if job.wandb and job.wandb.group})
    if groups:
        lines.append(f"W&B group: {', '.join(f'`{g}`' for g in groups)} (offline runs: `wandb sync <job>/wandb/offline-run-*`).")
    ranked = ranking is not None and ranking.metric is not None
    if ranked:
        best = ranking.order[0]
        direction = "higher" if ranking.greater else "lower"
        lines.append(f"Ranked by held-out `{ranking.metric}` ({direction} is better) at each job's best checkpoint "
                     f"(`train.select_by`). Best: {_fmt(best.held_out[ranking.metric])}, job {_job_name(best)} "
                     f"(`{' '.join(best.overrides)}`), checkpoint `{best.label}/{best.best_checkpoint or ''}`.")
        if ranking.objectives:
            front = [_job_name(j) for j in ranking.order if id(j) in ranking.pareto]
            lines.append(f"Pareto front of {' and '.join(f'`{o}`' for o in ranking.objectives)}: "
                         f"job{'s' if len(front) != 1 else ''} {', '.join(front) or '(none)'} "
                         "(no other job is at least as good on both and better on one).")
    lines.append("")
    if ranked:
        lines.append("## Ranked by the held-out objective")
        lines.append("")
        lines += _ranked_table(ranking, jobs)
        lines.append("")
        lines.append("Held-out figures are those of the validation at the best checkpoint's step (the checkpoint "
                     "folder is inside the job's folder, `report.csv` has the path). "
                     + ("GRPO health columns are means over the logged steps (`frac_reward_zero_std` near 1: "
                        "the groups' rewards all agree and GRPO has nothing to learn from; `clipped_ratio` near 1: "
                        "answers cut at `max_completion_length`)." if any(j.health for j in jobs) else ""))
        lines.append("")
        groups_ = seed_groups(jobs)
        if groups_ and any(len(g.jobs) > 1 for g in groups_):
            lines.append(f"## Seeds combined (`{SEED}`)")
            lines.append("")
            others = [k for k in swept if k != SEED]
            header = [*others, "jobs", "n", f"{ranking.metric.removeprefix(VAL)} mean ± std",
                      *[f"{o.removeprefix(VAL)} mean ± std" for o in ranking.objectives if o != ranking.metric]]
            lines.append(_cells_row(header))
            lines.append("|" + "|".join("---" for _ in header) + "|")
            metrics = [ranking.metric, *[o for o in ranking.objectives if o != ranking.metric]]
            sign = -1 if ranking.greater else 1

            def key(g: SeedGroup):
                st = g.stats(ranking.metric)
                return (0, sign * st[0]) if st else (1, 0.0)

            for group in sorted(groups_, key=key):
                cells = [str(group.params.get(k, "")) for k in others]
                cells += [", ".join(_job_name(j) for j in group.jobs)]
                first = group.stats(ranking.metric)
                cells += [str(first[2]) if first else "0"]
                for m_ in metrics:
                    st = group.stats(m_)
                    cells.append(f"{st[0]:.4g} ± {st[1]:.2g}" if st else "")
                lines.append(_cells_row(cells))
            lines.append("")
            lines.append("Sample standard deviation over the seeds (0 for a single job).")
            lines.append("")
    lines.append("## Training reward" if ranked else "## Jobs")
    lines.append("")
    header = ["job", "overrides", "status", "steps", "final reward", "best reward", *ids, "error"]
    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    lines.append("|" + "|".join("---" if h in ("job", "overrides", "status", "error") else "---:" for h in header) + "|")
    for job in jobs:
        cells = [
            _job_name(job),
            " ".join(f"`{o}`" for o in job.overrides) or "(defaults)",
            f"**{job.status}**" if job.status != "completed" else job.status,
            str(job.steps[-1]) if job.steps else "",
            _fmt(job.final_reward),
            _fmt(job.best_reward),
            *[_fmt(job.reward_ids.get(rid)) for rid in ids],
            job.error or "",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    if ids:
        lines.append("Reward-id columns are each reward's mean at the last logged step (before weighting); ")
        lines.append("final / best reward are the weighted sum the trainer optimises: its scale changes with the "
                     "reward weights, so rank a reward-weight sweep by the held-out objective, not by it.")
        lines.append("")
    scored = [job for job in jobs if job.final_reward is not None]
    if scored and not ranked:
        best = max(scored, key=lambda j: j.final_reward)
        lines.append(f"Best final reward: {_fmt(best.final_reward)}, job {_job_name(best)} (`{' '.join(best.overrides)}`). "
                     "No job validated (train.eval_steps), so nothing is ranked by a held-out metric.")
        lines.append("")
    lines.append("## Plots")
    lines.append("")
    for name in plots:
        title = {CURVES_PNG: "reward per step", VAL_CURVES_PNG: "validation curves",
                 HISTORY_PNG: "optimisation history"}.get(name, name[:-4].replace("_", " "))
        lines.append(f"![{title}]({name})")
        lines.append("")
    failed = [job for job in jobs if job.status == "failed"]
    if failed:
        lines.append("## Failed jobs")
        lines.append("")
        for job in failed:
            lines.append(f"### job {_job_name(job)}: `{' '.join(job.overrides)}`")
            lines.append("")
            detail = job.dir / ERROR_TXT
            text = detail.read_text(errors="replace").split("\n\n", 1)[0] if detail.is_file() else (job.error or "")
            lines += ["```text", text.strip(), "```", f"Full traceback: `{job.label}/{ERROR_TXT}`", ""]
    return "\n".join(lines).rstrip() + "\n"

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_curves(jobs: list[Job]) -> bytes:
    from matplotlib.figure import Figure

    swept = swept_parameters(jobs)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    drawn = 0
    for job in jobs:
        if job.reward:
            ax.plot(job.steps, job.reward, marker="o", markersize=4, label=f"{_job_name(job)}: {_short_label(job, swept)}")
            drawn += 1
    if drawn:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no job logged a reward", ha="center", va="center", transform=ax.transAxes)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("reward (weighted sum)")
    ax.set_title("Reward per step")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_final_vs(jobs: list[Job], key: str) -> bytes:
    from matplotlib.figure import Figure

    swept = swept_parameters(jobs)
    values = swept[key]
    numeric = all(_number(v) is not None for v in values)
    order = sorted(values, key=lambda v: _number(v)) if numeric else values
    position = {v: (_number(v) if numeric else i) for i, v in enumerate(order)}
    others = [k for k in swept if k != key]
    series: dict[str, list[tuple[float, float]]] = {}
    for job in jobs:
        if job.final_reward is None:
            continue
        name = ", ".join(f"{k.rsplit('.', 1)[-1]}={job.params.get(k)}" for k in others) or "final reward"
        series.setdefault(name, []).append((position[job.params.get(key)], job.final_reward))
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    for name, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    if series:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no job logged a reward", ha="center", va="center", transform=ax.transAxes)
    if not numeric:
        ax.set_xticks(list(range(len(order))), ["(unset)" if v is None else str(v) for v in order])
    ax.set_xlabel(key)
    ax.set_ylabel("final reward")
    ax.set_title(f"Final reward vs {key}")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_validation_curves(jobs: list[Job], metric: str) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    swept = swept_parameters(jobs)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for job in jobs:
        points = [(v["step"], v[metric]) for v in job.validations if _number(v.get(metric)) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4,
                    label=f"{_job_name(job)}: {_short_label(job, swept)}")
            if job.best_step is not None and metric in job.held_out:
                ax.plot([job.best_step], [job.held_out[metric]], marker="*", markersize=11, color="black")
    if ax.lines:
        ax.legend(fontsize=7, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"Held-out {metric} per validation (star: best checkpoint)")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_objective_vs(jobs: list[Job], key: str, metric: str) -> bytes:
    """Each finished job's held-out metric against one swept parameter (a point per job: a search's
    values are continuous, so no lines)."""
    from matplotlib.figure import Figure

    values = swept_parameters(jobs)[key]
    numeric = all(_number(v) is not None for v in values)
    order = sorted(values, key=lambda v: _number(v)) if numeric else values
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    xs, ys = [], []
    for job in jobs:
        if job.finished and _number(job.held_out.get(metric)) is not None:
            value = job.params.get(key)
            xs.append(_number(value) if numeric else order.index(value))
            ys.append(job.held_out[metric])
    ax.scatter(xs, ys)
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 50:
        ax.set_xscale("log")  # a learning rate searched on a log scale
    if not numeric:
        ax.set_xticks(list(range(len(order))), ["(unset)" if v is None else str(v) for v in order])
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (best checkpoint)")
    ax.set_title(f"{metric} vs {key}")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_history(ranking: Ranking) -> bytes:
    """The objective of each trial in launch order, and the best so far."""
    from matplotlib.figure import Figure

    metric, sign = ranking.metric, (1 if ranking.greater else -1)
    trials = sorted((j for j in ranking.order if j.finished and j.held_out.get(metric) is not None),
                    key=lambda j: j.num if j.num is not None else 1 << 30)
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    xs = [j.num for j in trials]
    ys = [j.held_out[metric] for j in trials]
    best, so_far = None, []
    for y in ys:
        best = y if best is None or sign * y > sign * best else best
        so_far.append(best)
    ax.scatter(xs, ys, label="trial")
    ax.step(xs, so_far, where="post", color="tab:red", label="best so far")
    if xs:
        ax.legend(fontsize=8, loc="best")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (job number)")
    ax.set_ylabel(metric)
    ax.set_title(f"Optimisation history: {metric}")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def build_report(folder: Path, metric: str | None = None) -> dict[str, bytes]:
    """Every output file of the report, by name, rendered in memory (nothing written on a ReportError)."""
    folder = Path(folder)
    jobs = collect_jobs(folder)
    if not any(job.finished for job in jobs):
        counts = ", ".join(f"{sum(j.status == s for j in jobs)} {s}" for s in dict.fromkeys(j.status for j in jobs))
        raise ReportError(f"{folder}: no finished job ({counts}); see each job's error.txt and sweep_summary.json")
    ranking = rank(folder, jobs, metric)
    files: dict[str, bytes] = {CURVES_PNG: plot_curves(jobs)}
    if ranking.metric:
        files[VAL_CURVES_PNG] = plot_validation_curves(jobs, ranking.metric)
        if ranking.search:
            files[HISTORY_PNG] = plot_history(ranking)
        for key in swept_parameters(jobs):
            files[_metric_filename(ranking.metric, key)] = plot_objective_vs(jobs, key, ranking.metric)
    else:
        for key in swept_parameters(jobs):
            files[_param_filename(key)] = plot_final_vs(jobs, key)
    plots = list(files)
    files[REPORT_CSV] = render_csv(jobs, ranking).encode()
    files[REPORT_MD] = render_markdown(folder, jobs, plots, ranking).encode()
    return files


def write_report(folder: Path, metric: str | None = None) -> list[Path]:
    """Build, then write every file; returns the paths written (report.md first)."""
    folder = Path(folder)
    files = build_report(folder, metric)
    written = []
    for name in [REPORT_MD, REPORT_CSV, *[n for n in files if n not in (REPORT_MD, REPORT_CSV)]]:
        path = folder / name
        path.write_bytes(files[name])
        written.append(path)
    return written
