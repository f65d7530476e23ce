"""Ranking a sweep's jobs: by the rule that picks a run's best checkpoint, seeds combined, the Pareto front.

Each finished job is ranked by a held-out metric at its best checkpoint (`--metric`; default the jobs'
objective, `train.select_by`), under the jobs' business constraint (`train.select_constraint`, or
`--constraint`) exactly as training chose that checkpoint (`bbuqc.training.selection.selection_key`):
the jobs that meet it first, best first; then the others, closest to meeting it first. Jobs that
differ only by `train.seed` are combined (mean ± std, count); with two objectives (`train.objectives`)
the Pareto front is marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbuqc.data.swift_rows import lookup
from bbuqc.sweep.jobs import Job, ReportError, number, swept_parameters
from bbuqc.training.selection import Constraint, greater_is_better, parse_constraint, selection_key

SEED = "train.seed"
NO_CONSTRAINT = "none"  # --constraint none: rank by the metric alone


@dataclass
class Ranking:
    metric: str | None  # the held-out metric jobs are ranked by (None: no job validated)
    greater: bool
    order: list[Job]  # every job, the ranked ones first (best first), then the others in job order
    objectives: list[str]  # two: the Pareto front is marked
    pareto: set[int] = field(default_factory=set)  # id() of the jobs on the front
    available: list[str] = field(default_factory=list)  # every held-out metric some job logged
    search: bool = False  # a search sweeper (Optuna, ...) ran the jobs: the history plot
    constraint: Constraint | None = None  # the business rule the ranking is under
    meets: dict[int, bool] = field(default_factory=dict)  # id() of each ranked job -> meets the constraint

    @property
    def ranked(self) -> list[Job]:
        """The jobs with a rank (finished, with the metric), best first."""
        return [j for j in self.order if self.metric and j.finished and number(j.held_out.get(self.metric)) is not None]

    def meeting(self) -> list[Job]:
        return [j for j in self.ranked if self.meets.get(id(j))]


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


def _constraint(folder: Path, jobs: list[Job], text: str | None, available: list[str]) -> Constraint | None:
    """`--constraint` (``none``: no constraint), else the jobs' `train.select_constraint`."""
    if text is not None:
        if text.strip().lower() == NO_CONSTRAINT:
            return None
        try:
            constraint = parse_constraint(text)
        except ValueError as exc:
            raise ReportError(f"--constraint {text}: {exc}") from None
        if constraint.metric not in available:
            shown = ", ".join(available) if available else "none (no job validated: train.eval_steps)"
            raise ReportError(f"--constraint {text}: no job in {folder} logged {constraint.metric}; held-out "
                              f"metrics logged: {shown}")
        return constraint
    for job in jobs:
        if job.finished and job.constraint:
            try:
                return parse_constraint(job.constraint)
            except ValueError:  # checked before the job ran; a hand-edited config is not the report's to refuse
                return None
    return None


def rank(folder: Path, jobs: list[Job], metric: str | None = None, constraint: str | None = None) -> Ranking:
    """Rank by `metric` (default: the jobs' objective, train.select_by) at each job's best checkpoint, under
    `constraint` (default: the jobs' train.select_constraint) by the rule that chose those checkpoints."""
    available = held_out_metrics(jobs)
    if metric is not None and metric not in available:
        shown = ", ".join(available) if available else "none (no job validated: train.eval_steps)"
        raise ReportError(f"--metric {metric}: no job in {folder} logged it; held-out metrics logged: {shown}")
    rule = _constraint(folder, jobs, constraint, available)
    finished = [j for j in jobs if j.finished]
    if metric is None:
        defaults = [j.select_metric for j in finished if j.select_metric in j.held_out]
        metric = defaults[0] if defaults else None
    greater = next((j.metric_greater(metric) for j in finished if metric and j.select_metric == metric),
                   greater_is_better(metric) if metric else True)
    ranked = [j for j in finished if metric and number(j.held_out.get(metric)) is not None]

    def constrained(job: Job) -> float | None:
        return number(job.held_out.get(rule.metric)) if rule else None

    ranked.sort(key=lambda j: (selection_key(j.held_out[metric], constrained(j), greater, rule),
                               j.num if j.num is not None else 1 << 30))
    meets = {id(j): rule.met(constrained(j)) for j in ranked} if rule else {}
    order = ranked + [j for j in jobs if j not in ranked]
    objectives = next((j.objectives for j in finished if len(j.objectives) == 2), [])
    pareto: set[int] = set()
    if len(objectives) == 2:
        scored = [j for j in finished if all(number(j.held_out.get(o)) is not None for o in objectives)]
        directions = [scored[0].metric_greater(o) if scored else greater_is_better(o) for o in objectives]
        front = pareto_front([[j.held_out[o] for o in objectives] for j in scored], directions)
        pareto = {id(scored[i]) for i in front}
    target = lookup(_sweep_config(folder), "hydra.sweeper._target_")
    search = (folder / "optimization_results.yaml").is_file() or bool(target and "BasicSweeper" not in str(target))
    return Ranking(metric, greater, order, objectives, pareto, available, search, rule, meets)


@dataclass
class SeedGroup:
    params: dict[str, str | None]  # the swept parameters other than train.seed
    jobs: list[Job]

    def stats(self, metric: str) -> tuple[float, float, int] | None:
        """(mean, sample std, count) of `metric` at the best checkpoints; std 0 for one job."""
        values = [j.held_out[metric] for j in self.jobs if number(j.held_out.get(metric)) is not None]
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
