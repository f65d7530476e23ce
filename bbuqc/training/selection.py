"""Which held-out metrics validation produces, and which checkpoint is best by one of them, under a constraint.

Pure Python (no torch): config validation checks `train.select_by` and `train.select_constraint`
against :func:`validation_metric_names` before any model loads, and the training callback keeps the
best checkpoint with :class:`BestTracker`.

The business rule is a constraint, not a metric: "pass fewer than 5% of the groups a human failed" is
`train.select_constraint='val/false_pass_rate<=0.05'` (or, to be sure of it on a small validation set,
its Wilson upper bound `val/false_pass_rate_hi<=0.05`). The best checkpoint is then the best by
`select_by` among the validations that meet it; while none does, the one closest to meeting it (ties:
the better `select_by`), flagged as not meeting it.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field

VAL = "val/"
# Stage-B business figures, from bbuqc.stage_b.metrics (one metrics implementation for both)
VERDICT_FIGURES = ("accuracy", "false_pass_rate", "false_fail_rate", "invalid_rate")
#: Each rate's Wilson 95% interval, as `<rate>_lo` / `<rate>_hi` (bbuqc.stage_b.metrics.wilson)
INTERVAL_ENDS = ("_lo", "_hi")
_LOWER_IS_BETTER = ("false_pass", "false_fail", "invalid")


def validation_metric_names(task: str, reward_ids: list[str] | None = None) -> list[str]:
    """Every `val/...` name validation logs for `task` (the task's whole reward namespace)."""
    from bbuqc.rewards import reward_names

    means = [f"{VAL}{rid}" for rid in reward_names() if rid.startswith(f"{task}.")]
    if task == "verdict":
        return [*(VAL + f for f in VERDICT_FIGURES), *means,
                *(VAL + f + end for f in VERDICT_FIGURES for end in INTERVAL_ENDS)]
    return means


DEFAULT_SELECT_BY = {"verdict": f"{VAL}accuracy", "summary": f"{VAL}summary.content_f1"}


def select_metric(task: str, select_by: str | None) -> str:
    """`train.select_by`, or the task's default when it is null."""
    return select_by or DEFAULT_SELECT_BY[task]


def greater_is_better(metric: str, explicit: bool | None = None) -> bool:
    if explicit is not None:
        return explicit
    return not any(word in metric for word in _LOWER_IS_BETTER)


_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*(?P<metric>[\w./-]+)\s*(?P<op><=|>=|<|>)\s*(?P<limit>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`<val/ metric> <op> <number>`, e.g. `val/false_pass_rate<=0.05`."""

    metric: str
    op: str
    limit: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"

    def met(self, value: float | None) -> bool:
        return value is not None and _OPS[self.op](value, self.limit)

    def shortfall(self, value: float | None) -> float:
        """How far ``value`` is from meeting it (0 when it does; infinite when there is no value)."""
        if value is None or math.isnan(value):
            return math.inf
        return 0.0 if self.met(value) else abs(value - self.limit)


def parse_constraint(text: str) -> Constraint:
    """Raises ValueError (a line for `train.select_constraint`) when ``text`` is not `<metric><op><number>`."""
    m = _CONSTRAINT.match(text or "")
    if m is None:
        raise ValueError("expected <val/ metric><op><number> with op one of <=, >=, <, >, "
                         "e.g. 'val/false_pass_rate<=0.05'")
    return Constraint(m["metric"], m["op"], float(m["limit"]))


def selection_key(value: float, constrained: float | None, greater: bool,
                  constraint: Constraint | None) -> tuple[float, float]:
    """The one rule that orders candidates (a run's validations, a sweep's jobs), smaller first: the
    shortfall from the constraint (0 for all that meet it), then the metric in its better direction."""
    shortfall = constraint.shortfall(constrained) if constraint else 0.0
    return (shortfall, -value if greater else value)


@dataclass
class BestTracker:
    """The best value of one metric over validations, among those that meet the constraint (if any);
    counts validations without improvement."""

    metric: str
    greater: bool
    constraint: Constraint | None = None
    best_value: float | None = None
    best_step: int | None = None
    best_meets: bool | None = None  # whether the best meets the constraint (None: there is none)
    best_constrained_value: float | None = None
    since_best: int = 0
    history: list[tuple[int, float | None]] = field(default_factory=list)

    def _key(self, value: float, constrained: float | None) -> tuple[float, float]:
        return selection_key(value, constrained, self.greater, self.constraint)

    def update(self, step: int, value: float | None, figures: dict[str, float] | None = None) -> bool:
        """Record a validation (``figures``: all its metrics, for the constraint); True when it is a new best
        (a missing value never is)."""
        self.history.append((step, value))
        constrained = (figures or {}).get(self.constraint.metric) if self.constraint else None
        better = value is not None and (
            self.best_value is None
            or self._key(value, constrained) < self._key(self.best_value, self.best_constrained_value))
        if better:
            self.best_value, self.best_step, self.since_best = value, step, 0
            self.best_constrained_value = constrained
            self.best_meets = self.constraint.met(constrained) if self.constraint else None
        else:
            self.since_best += 1
        return better
