"""Which held-out metrics validation produces, and which checkpoint is best by one of them.

Pure Python (no torch): config validation checks `train.select_by` against
:func:`validation_metric_names` before any model loads, and the training callback keeps the
best checkpoint with :class:`BestTracker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VAL = "val/"
# Stage-B business figures, from bbuqc.stage_b.metrics (one metrics implementation for both)
VERDICT_FIGURES = ("accuracy", "false_pass_rate", "false_fail_rate", "invalid_rate")
_LOWER_IS_BETTER = ("false_pass", "false_fail", "invalid")


def validation_metric_names(task: str, reward_ids: list[str] | None = None) -> list[str]:
    """Every `val/...` name validation logs for `task` (the task's whole reward namespace)."""
    from bbuqc.rewards import reward_names

    means = [f"{VAL}{rid}" for rid in reward_names() if rid.startswith(f"{task}.")]
    if task == "verdict":
        return [*(VAL + f for f in VERDICT_FIGURES), *means]
    return means


DEFAULT_SELECT_BY = {"verdict": f"{VAL}accuracy", "summary": f"{VAL}summary.content_f1"}


def select_metric(task: str, select_by: str | None) -> str:
    """`train.select_by`, or the task's default when it is null."""
    return select_by or DEFAULT_SELECT_BY[task]


def greater_is_better(metric: str, explicit: bool | None = None) -> bool:
    if explicit is not None:
        return explicit
    return not any(word in metric for word in _LOWER_IS_BETTER)


@dataclass
class BestTracker:
    """The best value of one metric over validations; counts validations without improvement."""

    metric: str
    greater: bool
    best_value: float | None = None
    best_step: int | None = None
    since_best: int = 0
    history: list[tuple[int, float | None]] = field(default_factory=list)

    def update(self, step: int, value: float | None) -> bool:
        """Record a validation; True when it is a new best (a missing value never is)."""
        self.history.append((step, value))
        better = value is not None and (
            self.best_value is None or (value > self.best_value if self.greater else value < self.best_value)
        )
        if better:
            self.best_value, self.best_step, self.since_best = value, step, 0
        else:
            self.since_best += 1
        return better
