"""A reward: a scorer with its id and range, registered by a decorator.

The scorer modules read as a table of decorated functions::

    @summary_reward("summary.format", 0.0, 1.0)
    def format_(ctx: SummaryContext) -> float:
        \"\"\"Two lines: a header and a line ending in '}'; 无关图片 for irrelevant images.\"\"\"

``reward`` wraps each scorer in a ``RewardFunction`` (called the way ms-swift
calls rewards, named by its id) and adds it to ``REGISTRY`` in definition
order.

A reward may declare parameters (``params={"false_pass": Param(float, 4.0, lo=0)}``),
which the config sets (``reward.params.<id>.<name>``) and the scorer receives as
keyword arguments. Its range may then depend on them: ``lo`` / ``hi`` may be
functions of the parameter values, and every range check uses the range of the
values in effect. ``REGISTRY`` holds each reward at its declared defaults;
``RewardFunction.with_params`` builds it with other values (checked first).

A scorer that raises or leaves its range must not break a training
step, so that row scores 0.0; but it is never silent: the row is counted under
the reward's id (``pop_error_metrics`` -> ``rewards/<id>/errors``) and the
first error of each id is logged as a warning. Under ``strict_rewards()`` the
error is raised instead, so tests can fail on it.
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import Any

from .summary.context import as_list, column

log = logging.getLogger(__name__)


_TYPE_WORDS = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One declared parameter of a reward: its type, default and allowed range (inclusive).

    Set from the config as ``reward.params.<reward id>.<name>``. A ``float`` takes any finite
    number (an int too, converted); an ``int`` takes integers; booleans are neither.
    """

    type: type  # float | int | bool | str
    default: Any
    lo: float | None = None  # smallest allowed value (None: unbounded)
    hi: float | None = None  # largest allowed value (None: unbounded)
    doc: str = ""  # what it means, for the docs and error lines

    def __post_init__(self):
        if self.type not in _TYPE_WORDS:
            raise TypeError(f"Param type must be one of float, int, bool, str; got {self.type!r}")
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"Param default {self.default!r}: {problem}")

    def expected(self) -> str:
        """What the parameter takes, in words: ``a finite number >= 0``."""
        words = _TYPE_WORDS[self.type]
        if self.lo is not None and self.hi is not None:
            return f"{words} in [{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{words} >= {self.lo:g}"
        if self.hi is not None:
            return f"{words} <= {self.hi:g}"
        return words

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed (``expected a finite number >= 0``), or None when it is."""
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is str:
            ok = isinstance(value, str)
        elif isinstance(value, bool):
            ok = False
        elif self.type is int:
            ok = isinstance(value, int)
        else:
            ok = isinstance(value, (int, float)) and math.isfinite(value)
        if ok and self.type in (int, float):
            ok = (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        return None if ok else f"expected {self.expected()}"

    def convert(self, value: object) -> Any:
        """An allowed value in the parameter's own type (an int given for a float becomes a float)."""
        return float(value) if self.type is float else value


class RewardParamError(ValueError):
    """Parameter values a reward does not take; ``problems`` is one line each, naming the parameter."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


Bound = float | Callable[[Mapping[str, Any]], float]


@dataclass(frozen=True)
class RewardSpec:
    """A reward's id, its range for the parameter values in effect, and its declared parameters."""

    id: str
    lo: float
    hi: float
    doc: str
    params: dict[str, Param] = field(default_factory=dict, hash=False)  # declared parameters
    values: dict[str, Any] = field(default_factory=dict, hash=False)  # the values in effect (defaults filled)
    # the declared range as given to @reward: numbers, or functions of the parameter values
    bounds: tuple[Bound, Bound] | None = field(default=None, compare=False, hash=False, repr=False)
    # the dataset columns the reward reads (``group_label``; ``metadata.domain``: a key of an object column), so a
    # row without one is refused before training (bbuqc.data.swift_rows) instead of scoring as if it were empty
    reads: tuple[str, ...] = ()
    # the rows the reward speaks about (a predicate on the prepared row; None: every row): an irrelevant image has
    # no content F1 (it scores 0), so a mean over a validation set is taken over the rows in scope, not diluted by
    # the share of the others (:meth:`RewardFunction.in_scope`)
    scope: Callable[[Any], bool] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def namespace(self) -> str:
        return self.id.split(".", 1)[0]

    def param_problems(self, values: Mapping[str, Any], prefix: str | None = None) -> list[str]:
        """One line per value the reward does not take, each naming ``<prefix>.<name>``.

        ``prefix`` defaults to ``reward.params.<id>``, the config key that sets them.
        """
        prefix = prefix or f"reward.params.{self.id}"
        out = []
        for name, value in values.items():
            param = self.params.get(name)
            if param is None:
                takes = ", ".join(f"{n} ({p.expected()}, default {p.default!r})" for n, p in self.params.items())
                out.append(
                    f"{prefix}.{name}: {self.id} declares no parameter {name!r}; "
                    + (f"it takes {takes}" if takes else "it takes none")
                )
                continue
            problem = param.problem(value)
            if problem:
                out.append(f"{prefix}.{name}={value!r}: {problem}")
        return out

    def with_values(self, values: Mapping[str, Any] | None = None) -> RewardSpec:
        """The spec for these parameter values (the others at their defaults), its range computed from them.

        Raises ``RewardParamError`` for a value the reward does not take.
        """
        values = dict(values or {})
        problems = self.param_problems(values)
        if problems:
            raise RewardParamError(problems)
        effective = {name: p.convert(values[name]) if name in values else p.default for name, p in self.params.items()}
        lo, hi = self.bounds if self.bounds is not None else (self.lo, self.hi)
        lo = float(lo(effective) if callable(lo) else lo)
        hi = float(hi(effective) if callable(hi) else hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise RewardParamError([f"reward.params.{self.id}: the values {effective} give the range [{lo}, {hi}]"])
        return RewardSpec(
            self.id, lo, hi, self.doc, dict(self.params), effective, (lo, hi) if self.bounds is None else self.bounds,
            self.reads, self.scope,
        )


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

    def __init__(self, spec: RewardSpec, prepare: Callable[[object, dict], list], score: Callable[..., float]):
        self.spec = spec
        self.__name__ = self.__qualname__ = spec.id  # ms-swift names the metric after it
        self.__doc__ = spec.doc
        self._prepare = prepare
        self._scorer = score  # as registered: takes the row, and the parameters as keyword arguments
        self._score = partial(score, **spec.values) if spec.values else score

    @property
    def params(self) -> dict[str, Any]:
        """The parameter values in effect (every declared one, defaults filled)."""
        return dict(self.spec.values)

    def with_params(self, values: Mapping[str, Any] | None = None) -> RewardFunction:
        """This reward with these parameter values (the others at their defaults), its range computed
        from them; itself when they change nothing. Raises ``RewardParamError`` for a value it does not take."""
        spec = self.spec.with_values(values)
        if spec == self.spec:
            return self
        return RewardFunction(spec, self._prepare, self._scorer)

    def in_scope(self, completions: object = None, **kwargs) -> list[bool]:
        """Whether each row is one the reward speaks about (``spec.scope``; every row without one), read from the
        rows as the reward reads them."""
        n = len(as_list(completions))
        if self.spec.scope is None:
            return [True] * n
        return [bool(self.spec.scope(row)) for row in self._prepare(completions, kwargs)]

    def __repr__(self) -> str:
        values = "".join(f", {k}={v!r}" for k, v in self.spec.values.items())
        return f"<reward {self.spec.id} [{self.spec.lo}, {self.spec.hi}]{values}>"

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


def reward(
    rid: str,
    lo: Bound,
    hi: Bound,
    *,
    prepare: Callable[[object, dict], list],
    params: Mapping[str, Param] | None = None,
    reads: tuple[str, ...] = (),
    scope: Callable[[Any], bool] | None = None,
):
    """Register the decorated scorer as reward ``rid`` with range ``[lo, hi]``.

    ``prepare(completions, columns)`` turns a batch into the rows the scorer
    takes; the docstring's first paragraph is the reward's description. The scorer
    itself is returned unchanged, so it can still be called (and tested) directly.

    ``params`` declares the reward's parameters (name -> ``Param``); the scorer is then
    called as ``score(row, **values)``, and ``lo`` / ``hi`` may be functions of the
    values (``lambda p: -max(p["false_pass"], p["false_fail"])``).

    ``reads`` names the dataset columns the reward reads (``"metadata.domain"``: a key inside an object
    column); a training row without one is refused before any model loads.

    ``scope(row)`` says which prepared rows the reward speaks about (None: all); validation averages over those.
    """

    def register(score: Callable[..., float]) -> Callable[..., float]:
        if rid in REGISTRY:
            raise ValueError(f"reward id {rid!r} is registered twice")
        doc = " ".join((score.__doc__ or "").strip().split("\n\n")[0].split())
        declared = RewardSpec(rid, math.nan, math.nan, doc, dict(params or {}), {}, (lo, hi), tuple(reads), scope)
        REGISTRY[rid] = RewardFunction(declared.with_values(), prepare, score)
        return score

    return register


def columns_rows(completions: object, columns: dict) -> list[dict]:
    """One dict per completion: ``completion`` (its text, special tokens and fences cleaned as every reward
    reads it) and that row's value of every dataset column ms-swift passes (``group_label``, ``summaries``,
    ``metadata``, your own)."""
    from .summary.parsing import completion_text

    texts = [completion_text(c) for c in as_list(completions)]
    cols = {key: column(values, len(texts)) for key, values in columns.items()}
    return [{"completion": text, **{key: values[i] for key, values in cols.items()}} for i, text in enumerate(texts)]


def signature_reads(fn: Callable[..., Any], exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The columns a row reward reads, from its signature: the named parameters without a default (TRL's
    convention: the dataset's columns arrive as keyword arguments), less ``completion`` and ``exclude``."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        name for name, p in inspect.signature(fn).parameters.items()
        if p.kind in kinds and p.default is inspect.Parameter.empty and name != "completion" and name not in exclude
    )


def row_reward(
    rid: str,
    lo: Bound,
    hi: Bound,
    *,
    params: Mapping[str, Param] | None = None,
    reads: tuple[str, ...] | None = None,
    scope: Callable[[dict], bool] | None = None,
):
    """Register ``fn(completion, **row)`` as reward ``rid`` (``<namespace>.<name>``, range ``[lo, hi]``): it is
    called once per completion with the completion's text and the row's columns, and the reward's parameter
    values, as keyword arguments (take the ones you read, and ``**_`` for the rest). For reward plug-ins
    (``reward.plugins``); the built-ins use :func:`reward` with a prepare of their own. An error or a value out
    of range scores the row 0.0 and is counted (``rewards/<id>/errors``), as for every reward.

    ``reads`` (the columns it reads, which every training row must carry) defaults to ``fn``'s named parameters
    without a default, less ``completion`` and the declared parameters: ``def exact(completion, label, **_)``
    reads ``label``. ``scope(row)`` (the same dict: ``completion`` and the columns) says which rows the reward speaks
    about, so that validation averages it over those (``lambda row: not row["metadata"]["irrelevant"]``); every row
    without one."""

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        @wraps(fn)
        def score(row: dict, **values: Any) -> float:
            return fn(**row, **values)

        columns = signature_reads(fn, tuple(params or ())) if reads is None else tuple(reads)
        reward(rid, lo, hi, prepare=columns_rows, params=params, reads=columns, scope=scope)(score)
        return fn

    return register
