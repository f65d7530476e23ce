"""The sweep comparison report: every job of a sweep folder side by side, ranked by what matters.

`python -m bbuqc.report <sweep folder>` (bbuqc/report.py). One module per job of the report:

- `bbuqc.sweep.jobs`: each job folder read back (overrides, config, status, held-out validation at the
  best checkpoint, end-of-run warnings, training metrics from `logging.jsonl` or the offline W&B run);
- `bbuqc.sweep.ranking`: ranked by a held-out metric at the best checkpoint (`--metric`; default the
  jobs' objective, `train.select_by`) under the jobs' `train.select_constraint` (or `--constraint`) by
  the rule that chose each checkpoint; seeds combined (mean ± std); the Pareto front of two objectives;
- `bbuqc.sweep.render`: `report.md` (every rate with its Wilson 95% interval, the constraint, GRPO's
  health, the training warnings, the failed jobs) and `report.csv` (one row per job in ranked order);
- `bbuqc.sweep.plots`: `reward_curves.png`, `validation_curves.png`, `<metric>_vs_<parameter>.png`,
  `optimization_history.png` for a search; without any validation `final_reward_vs_<parameter>.png`
  instead, and nothing is ranked.

This module puts them together. Everything is computed before anything is written, so a bad folder
writes nothing. matplotlib is imported only to draw; nothing here imports torch or starts wandb.
"""

from __future__ import annotations

from pathlib import Path

from bbuqc.sweep.jobs import Job, ReportError, collect_jobs, swept_parameters
from bbuqc.sweep.plots import (
    CURVES_PNG,
    HISTORY_PNG,
    VAL_CURVES_PNG,
    metric_filename,
    param_filename,
    plot_curves,
    plot_final_vs,
    plot_history,
    plot_objective_vs,
    plot_validation_curves,
)
from bbuqc.sweep.ranking import Ranking, pareto_front, rank
from bbuqc.sweep.render import REPORT_CSV, REPORT_MD, render_csv, render_markdown

__all__ = ["REPORT_CSV", "REPORT_MD", "Job", "Ranking", "ReportError", "build_report", "collect_jobs",
           "pareto_front", "rank", "write_report"]


def build_report(folder: Path, metric: str | None = None, constraint: str | None = None) -> dict[str, bytes]:
    """Every output file of the report, by name, rendered in memory (nothing written on a ReportError)."""
    folder = Path(folder)
    jobs = collect_jobs(folder)
    if not any(job.finished for job in jobs):
        counts = ", ".join(f"{sum(j.status == s for j in jobs)} {s}" for s in dict.fromkeys(j.status for j in jobs))
        raise ReportError(f"{folder}: no finished job ({counts}); see each job's error.txt and sweep_summary.json")
    ranking = rank(folder, jobs, metric, constraint)
    files: dict[str, bytes] = {CURVES_PNG: plot_curves(jobs)}
    if ranking.metric:
        files[VAL_CURVES_PNG] = plot_validation_curves(jobs, ranking.metric)
        if ranking.search:
            files[HISTORY_PNG] = plot_history(ranking)
        for key in swept_parameters(jobs):
            files[metric_filename(ranking.metric, key)] = plot_objective_vs(jobs, key, ranking.metric)
    else:
        for key in swept_parameters(jobs):
            files[param_filename(key)] = plot_final_vs(jobs, key)
    plots = list(files)
    files[REPORT_CSV] = render_csv(jobs, ranking).encode()
    files[REPORT_MD] = render_markdown(folder, jobs, plots, ranking).encode()
    return files


def write_report(folder: Path, metric: str | None = None, constraint: str | None = None) -> list[Path]:
    """Build, then write every file; returns the paths written (report.md first)."""
    folder = Path(folder)
    files = build_report(folder, metric, constraint)
    written = []
    for name in [REPORT_MD, REPORT_CSV, *[n for n in files if n not in (REPORT_MD, REPORT_CSV)]]:
        path = folder / name
        path.write_bytes(files[name])
        written.append(path)
    return written
