"""The sweep comparison report: every job of a sweep folder side by side.

For each job folder (one with Hydra's `.hydra/overrides.yaml`) it reads the overrides, the
status the sweep callback recorded (`job_status.json`, `error.txt`), and the training
metrics: ms-swift's `logging.jsonl`, else the job's offline W&B run (`wandb/*run-*/run-*.wandb`,
read record by record; no W&B server, no wandb login). It writes, in the sweep folder:

- `report.md`: one row per job (overrides, status, steps, final and best reward, each reward
  id's final mean, the error of a failed job), the swept parameters, the plots;
- `report.csv`: the same rows, one column per swept parameter as well;
- `reward_curves.png`: the reward per step of every job;
- `final_reward_vs_<parameter>.png`: the final reward against each swept parameter, one line
  per combination of the other swept parameters.

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

from bbuqc.sweep.callbacks import ERROR_TXT, JOB_STATUS, job_dirs
from bbuqc.wandb_records import WandbRun, find_run_files, read_run

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

    @property
    def params(self) -> dict[str, str]:
        return parse_overrides(self.overrides)

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


def read_logging_jsonl(path: Path) -> tuple[list[int], list[float], dict[str, float]]:
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
    return _metrics_from_rows(rows, prefix="", step_key="global_step/max_steps")


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


def rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """One dict per job, the columns of report.csv."""
    swept = swept_parameters(jobs)
    ids = reward_id_columns(jobs)
    out = []
    for job in jobs:
        row: dict[str, Any] = {
            "job": _job_name(job),
            "dir": job.label,
            "status": job.status,
            "overrides": " ".join(job.overrides),
        }
        for key in swept:
            row[key] = job.params.get(key)
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


def render_csv(jobs: list[Job]) -> str:
    table = rows(jobs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _param_filename(key: str) -> str:
    return "final_reward_vs_" + re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".png"


def render_markdown(folder: Path, jobs: list[Job], plots: list[str]) -> str:
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
    scored = [job for job in jobs if job.final_reward is not None]
    if scored:
        best = max(scored, key=lambda j: j.final_reward)
        lines.append(f"Best final reward: {_fmt(best.final_reward)}, job {_job_name(best)} (`{' '.join(best.overrides)}`).")
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
        lines.append("final / best reward are the weighted sum the trainer optimises.")
        lines.append("")
    lines.append("## Plots")
    lines.append("")
    for name in plots:
        title = "reward per step" if name == CURVES_PNG else name[:-4].replace("_", " ", 3)
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


def build_report(folder: Path) -> dict[str, bytes]:
    """Every output file of the report, by name, rendered in memory."""
    folder = Path(folder)
    jobs = collect_jobs(folder)
    files: dict[str, bytes] = {CURVES_PNG: plot_curves(jobs)}
    for key in swept_parameters(jobs):
        files[_param_filename(key)] = plot_final_vs(jobs, key)
    plots = list(files)
    files[REPORT_CSV] = render_csv(jobs).encode()
    files[REPORT_MD] = render_markdown(folder, jobs, plots).encode()
    return files


def write_report(folder: Path) -> list[Path]:
    """Build, then write every file; returns the paths written (report.md first)."""
    folder = Path(folder)
    files = build_report(folder)
    written = []
    for name in [REPORT_MD, REPORT_CSV, *[n for n in files if n not in (REPORT_MD, REPORT_CSV)]]:
        path = folder / name
        path.write_bytes(files[name])
        written.append(path)
    return written
