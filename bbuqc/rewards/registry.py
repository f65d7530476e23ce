"""The one reward registry, keyed by namespaced ids (``summary.format``, ...).

A registered reward is a ``RewardFunction``: called the way ms-swift calls
rewards, ``fn(completions, **columns) -> list[float]``, and named by its id
(``fn.__name__ == "summary.format"``), since ms-swift names the per-reward
metrics after ``__name__``. Legacy underscore ids are rejected with the new
id named, never aliased.
"""

from __future__ import annotations

import difflib
import gc
import math
from collections.abc import Callable
from dataclasses import dataclass

from . import verdict
from .summary.context import as_list, batch_contexts
from .summary.rewards import SUMMARY_REWARDS


@dataclass(frozen=True)
class RewardSpec:
    id: str
    lo: float
    hi: float
    doc: str

    @property
    def namespace(self) -> str:
        return self.id.split(".", 1)[0]


_ONLY_FLOATS = {float}


class RewardFunction:
    """One registered reward: prepares the batch's rows, then scores each.

    Never raises on model output or odd columns: a row whose scoring fails,
    or whose value is not a finite number in range, scores 0.0 (neutral, and
    inside every reward's range). Every value returned is a float.
    """

    def __init__(
        self,
        spec: RewardSpec,
        prepare: Callable[[object, dict], list],
        score: Callable[[object], float],
    ):
        self.spec = spec
        self.__name__ = self.__qualname__ = spec.id
        self.__doc__ = spec.doc
        self._prepare = prepare
        self._score = score

    def __repr__(self) -> str:
        return f"<reward {self.spec.id} [{self.spec.lo}, {self.spec.hi}]>"

    def __call__(self, completions: object = None, **kwargs) -> list[float]:
        # The first reward of a batch builds the cached parse: tens of
        # thousands of small, acyclic objects that outlive the call. CPython's
        # cyclic collector would rescan them over and over while they are
        # built (10-30% of the stack's time); they hold no cycles, so the
        # collector is paused for the call and resumes as it was.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._call(completions, kwargs)
        finally:
            if paused:
                gc.enable()

    def _call(self, completions: object, kwargs: dict) -> list[float]:
        try:
            rows = self._prepare(completions, kwargs)
        except Exception:  # a reward never breaks a training step
            return [0.0] * len(as_list(completions))
        score = self._score
        try:
            values = [score(row) for row in rows]
            if self._all_valid(values):
                return values
        except Exception:
            pass
        # Something failed or fell out of range: redo it row by row.
        return [self._safe_score(row) for row in rows]

    def _all_valid(self, values: list) -> bool:
        """All floats, finite and in range (checked at C speed)."""
        if not values:
            return True
        if set(map(type, values)) != _ONLY_FLOATS:
            return False
        total = sum(values)  # NaN or inf anywhere makes the sum non-finite
        return math.isfinite(total) and min(values) >= self.spec.lo and max(values) <= self.spec.hi

    def _safe_score(self, row: object) -> float:
        try:
            value = float(self._score(row))
        except Exception:
            return 0.0
        return value if self.spec.lo <= value <= self.spec.hi else 0.0  # NaN fails too


def _summary_rows(completions: object, kwargs: dict) -> list:
    return batch_contexts(completions, kwargs.get("metadata"))


def _build() -> dict[str, RewardFunction]:
    registry: dict[str, RewardFunction] = {}
    for rid, score, lo, hi, doc in SUMMARY_REWARDS:
        registry[rid] = RewardFunction(RewardSpec(rid, lo, hi, doc), _summary_rows, score)
    for rid, score, lo, hi, doc in verdict.VERDICT_REWARDS:
        registry[rid] = RewardFunction(RewardSpec(rid, lo, hi, doc), verdict.prepare_rows, score)
    return registry


REGISTRY: dict[str, RewardFunction] = _build()

# Every id's underscore form (summary_format -> summary.format), plus old names
# that did not follow that rule.
LEGACY_IDS: dict[str, str] = {
    **{rid.replace(".", "_", 1): rid for rid in REGISTRY},
    "summary_content": "summary.content_eq",
    "summary_tversky": "summary.content_structured_tversky",
    "summary_structured_tversky": "summary.content_structured_tversky",
    "summary_text": "summary.text_bbu",
    "summary_notes": "summary.notes_bbu",
    "summary_objects": "summary.objects_total",
    "summary_category": "summary.category_recall",
    "summary_group_stats": "summary.group_stats_presence",
    "verdict_reason": "verdict.consistency",
}

class RewardIdError(KeyError):
    """An id that is not in the registry; the message lists the known ids."""

    def __str__(self) -> str:  # KeyError would show the message's repr
        return str(self.args[0]) if self.args else ""


class LegacyRewardIdError(RewardIdError):
    """A legacy id; the message names the id that replaces it."""


def reward_names() -> list[str]:
    return list(REGISTRY)


def _problem(name: object) -> tuple[type[RewardIdError], str] | None:
    if isinstance(name, str) and name in REGISTRY:
        return None
    if isinstance(name, str) and name in LEGACY_IDS:
        new = LEGACY_IDS[name]
        return LegacyRewardIdError, (f"reward id {name!r} is a legacy id and is no longer accepted; use {new!r}")
    known = ", ".join(REGISTRY)
    if not isinstance(name, str):
        return RewardIdError, (f"reward id must be a string, got {type(name).__name__} {name!r}; known ids: {known}")
    close = difflib.get_close_matches(name, list(REGISTRY), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return RewardIdError, f"unknown reward id {name!r}{hint}; known ids: {known}"


def reward_id_problem(name: object) -> str | None:
    """Why ``name`` is not a usable reward id, or None when it is."""
    problem = _problem(name)
    return None if problem is None else problem[1]


def get_reward(name: str) -> RewardFunction:
    problem = _problem(name)
    if problem is not None:
        error, message = problem
        raise error(message)
    return REGISTRY[name]


def reward_spec(name: str) -> RewardSpec:
    return get_reward(name).spec
