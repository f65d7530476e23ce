"""A reward: a scorer with its id and range, registered by a decorator.

The scorer modules read as a table of decorated functions::

    @summary_reward("summary.format", 0.0, 1.0)
    def format_(ctx: SummaryContext) -> float:
        \"\"\"Two lines: a header and a line ending in '}'; 无关图片 for irrelevant images.\"\"\"

``reward`` wraps each scorer in a ``RewardFunction`` (called the way ms-swift
calls rewards, named by its id) and adds it to ``REGISTRY`` in definition
order. A scorer that raises or leaves its range must not break a training
step, so that row scores 0.0; but it is never silent: the row is counted under
the reward's id (``pop_error_metrics`` -> ``rewards/<id>/errors``) and the
first error of each id is logged as a warning. Under ``strict_rewards()`` the
error is raised instead, so tests can fail on it.
"""

from __future__ import annotations

import gc
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .summary.context import as_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardSpec:
    id: str
    lo: float
    hi: float
    doc: str

    @property
    def namespace(self) -> str:
        return self.id.split(".", 1)[0]


class RewardError(RuntimeError):
    """A scorer raised or returned a value outside its range (raised only in strict mode)."""


_ONLY_FLOATS = {float}
_strict = False
_errors: Counter = Counter()  # reward id -> rows scored 0.0 because of an error, since the last pop
_called: set[str] = set()  # ids called since the last pop (each gets a metric, 0 included)
_warned: set[str] = set()  # ids already warned about (one warning per id per process)


@contextmanager
def strict_rewards() -> Iterator[None]:
    """Raise ``RewardError`` instead of scoring 0.0 (for tests)."""
    global _strict
    previous, _strict = _strict, True
    try:
        yield
    finally:
        _strict = previous


def pop_error_metrics() -> dict[str, float]:
    """``{"rewards/<id>/errors": rows}`` for every reward called since the last pop; resets.

    The training callback logs it each step beside ms-swift's ``rewards/<id>/mean``.
    """
    metrics = {f"rewards/{rid}/errors": float(_errors[rid]) for rid in sorted(_called)}
    _errors.clear()
    _called.clear()
    return metrics


class RewardFunction:
    """One registered reward: prepares the batch's rows, then scores each.

    Every value returned is a finite float in ``[spec.lo, spec.hi]``; a row
    whose scoring fails or falls out of range scores 0.0 (inside every range)
    and is counted as an error of this id.
    """

    def __init__(self, spec: RewardSpec, prepare: Callable[[object, dict], list], score: Callable[[object], float]):
        self.spec = spec
        self.__name__ = self.__qualname__ = spec.id  # ms-swift names the metric after it
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
        _called.add(self.spec.id)
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
        except Exception as exc:  # a reward never breaks a training step
            n = len(as_list(completions))
            self._error(n, f"preparing the batch raised {exc!r}", exc)
            return [0.0] * n
        score = self._score
        try:
            values = [score(row) for row in rows]
            if self._all_valid(values):
                return values
        except Exception:
            pass
        # Something failed or fell out of range: redo it row by row.
        return [self._safe_score(i, row) for i, row in enumerate(rows)]

    def _all_valid(self, values: list) -> bool:
        """All floats, finite and in range (checked at C speed)."""
        if not values:
            return True
        if set(map(type, values)) != _ONLY_FLOATS:
            return False
        total = sum(values)  # NaN or inf anywhere makes the sum non-finite
        return math.isfinite(total) and min(values) >= self.spec.lo and max(values) <= self.spec.hi

    def _safe_score(self, index: int, row: object) -> float:
        try:
            value = float(self._score(row))
        except Exception as exc:
            self._error(1, f"row {index} raised {exc!r}", exc)
            return 0.0
        if self.spec.lo <= value <= self.spec.hi:  # NaN fails too
            return value
        self._error(1, f"row {index} scored {value!r}, outside [{self.spec.lo}, {self.spec.hi}]")
        return 0.0

    def _error(self, rows: int, what: str, cause: BaseException | None = None) -> None:
        rid = self.spec.id
        if _strict:
            raise RewardError(f"reward {rid}: {what}") from cause
        _errors[rid] += rows
        if rid not in _warned:
            _warned.add(rid)
            log.warning(
                "reward %s: %s; the row scores 0.0. Further errors of %s are counted in rewards/%s/errors.",
                rid,
                what,
                rid,
                rid,
            )


REGISTRY: dict[str, RewardFunction] = {}


def reward(rid: str, lo: float, hi: float, *, prepare: Callable[[object, dict], list]):
    """Register the decorated scorer as reward ``rid`` with range ``[lo, hi]``.

    ``prepare(completions, columns)`` turns a batch into the rows the scorer
    takes; the docstring's first paragraph is the reward's description. The scorer
    itself is returned unchanged, so it can still be called (and tested) directly.
    """

    def register(score: Callable[[object], float]) -> Callable[[object], float]:
        if rid in REGISTRY:
            raise ValueError(f"reward id {rid!r} is registered twice")
        doc = " ".join((score.__doc__ or "").strip().split("\n\n")[0].split())
        REGISTRY[rid] = RewardFunction(RewardSpec(rid, float(lo), float(hi), doc), prepare, score)
        return score

    return register
