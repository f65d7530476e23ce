"""The sweep report's plots, and one training run's curves (the demo's), each rendered to PNG bytes.

- `reward_curves.png`: the training reward per step of every job;
- `validation_curves.png`: the ranking metric per validation of every job (best checkpoint starred);
- `<metric>_vs_<parameter>.png`: the ranking metric against each swept parameter;
- `optimization_history.png` for a search (Optuna, ...): each trial's objective and the best so far;
- `final_reward_vs_<parameter>.png` when no job validated;
- :func:`plot_run`: one run's training loss / reward and its validation figures (`make demo`'s `<stage>.png`).

matplotlib is imported only to draw, through its object API (no pyplot).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from bbuqc.sweep.jobs import Job, job_name, number, short_label, swept_parameters
from bbuqc.sweep.ranking import Ranking
from bbuqc.training.selection import VAL

CURVES_PNG = "reward_curves.png"
VAL_CURVES_PNG = "validation_curves.png"
HISTORY_PNG = "optimization_history.png"
TITLES = {CURVES_PNG: "reward per step", VAL_CURVES_PNG: "validation curves", HISTORY_PNG: "optimisation history"}


def param_filename(key: str) -> str:
    return "final_reward_vs_" + re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".png"


def metric_filename(metric: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", metric.removeprefix(VAL))
    return f"{slug}_vs_" + re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".png"


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot: no global state, safe beside other threads)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _finish(ax, xlabel: str, ylabel: str, title: str, steps: bool = False) -> None:
    """Labels, title and grid of one plot; ``steps``: whole-number ticks on the x axis (steps, trials)."""
    if steps:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def plot_curves(jobs: list[Job]) -> bytes:
    from matplotlib.figure import Figure

    swept = swept_parameters(jobs)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    drawn = 0
    for job in jobs:
        if job.reward:
            ax.plot(job.steps, job.reward, marker="o", markersize=4, label=f"{job_name(job)}: {short_label(job, swept)}")
            drawn += 1
    if drawn:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no job logged a reward", ha="center", va="center", transform=ax.transAxes)
    _finish(ax, "step", "reward (weighted sum)", "Reward per step", steps=True)
    return figure_png(fig)


def plot_final_vs(jobs: list[Job], key: str) -> bytes:
    from matplotlib.figure import Figure

    swept = swept_parameters(jobs)
    values = swept[key]
    numeric = all(number(v) is not None for v in values)
    order = sorted(values, key=lambda v: number(v)) if numeric else values
    position = {v: (number(v) if numeric else i) for i, v in enumerate(order)}
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
    _finish(ax, key, "final reward", f"Final reward vs {key}")
    return figure_png(fig)


def plot_validation_curves(jobs: list[Job], metric: str) -> bytes:
    from matplotlib.figure import Figure

    swept = swept_parameters(jobs)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for job in jobs:
        points = [(v["step"], v[metric]) for v in job.validations if number(v.get(metric)) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4,
                    label=f"{job_name(job)}: {short_label(job, swept)}")
            if job.best_step is not None and metric in job.held_out:
                ax.plot([job.best_step], [job.held_out[metric]], marker="*", markersize=11, color="black")
    if ax.lines:
        ax.legend(fontsize=7, loc="best")
    _finish(ax, "step", metric, f"Held-out {metric} per validation (star: best checkpoint)", steps=True)
    return figure_png(fig)


def plot_objective_vs(jobs: list[Job], key: str, metric: str) -> bytes:
    """Each finished job's held-out metric against one swept parameter (a point per job: a search's
    values are continuous, so no lines)."""
    from matplotlib.figure import Figure

    values = swept_parameters(jobs)[key]
    numeric = all(number(v) is not None for v in values)
    order = sorted(values, key=lambda v: number(v)) if numeric else values
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    xs, ys = [], []
    for job in jobs:
        if job.finished and number(job.held_out.get(metric)) is not None:
            value = job.params.get(key)
            xs.append(number(value) if numeric else order.index(value))
            ys.append(job.held_out[metric])
    ax.scatter(xs, ys)
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 50:
        ax.set_xscale("log")  # a learning rate searched on a log scale
    if not numeric:
        ax.set_xticks(list(range(len(order))), ["(unset)" if v is None else str(v) for v in order])
    _finish(ax, key, f"{metric} (best checkpoint)", f"{metric} vs {key}")
    return figure_png(fig)


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
    _finish(ax, "trial (job number)", metric, f"Optimisation history: {metric}", steps=True)
    return figure_png(fig)


def plot_run(run: str, train_steps: Sequence[int], train: dict[str, Sequence], val_steps: Sequence[int],
             val: dict[str, Sequence]) -> bytes:
    """One training run: its training series (loss, GRPO's reward) per step beside its held-out
    validation figures per validation."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    for name, values in train.items():
        ax1.plot(train_steps, values, label=name)
    ax1.set_xlabel("step")
    ax1.set_title(f"{run}: training")
    ax1.legend()
    for name, values in val.items():
        ax2.plot(val_steps, values, marker="o", label=name)
    ax2.set_xlabel("step")
    ax2.set_title(f"{run}: held-out validation")
    if val:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig, dpi=90)
