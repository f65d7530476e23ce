"""The one reward registry, keyed by namespaced ids (``summary.format``, ...).

A registered reward is a ``RewardFunction``: called the way ms-swift calls
rewards, ``fn(completions, **columns) -> list[float]``, and named by its id
(``fn.__name__ == "summary.format"``), since ms-swift names the per-reward
metrics after ``__name__``. Legacy underscore ids are rejected with the new
id named, never aliased. ``get_reward(id, params)`` builds a reward with
parameter values of its own (``reward.params.<id>.<name>`` in the config).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from .base import REGISTRY, RewardFunction, RewardSpec

# Importing a scorer module registers its rewards: summary.* first, then verdict.*.
# isort: off
from .summary import scorers as _summary_scorers  # noqa: F401
from . import verdict as _verdict_rewards

# isort: on
from .summary import context as _summary_context


def clear_caches() -> None:
    """Drop every cached parse (tests and benchmarks start cold with it)."""
    _summary_context.clear_caches()
    _verdict_rewards.clear_caches()


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


def get_reward(name: str, params: Mapping[str, Any] | None = None) -> RewardFunction:
    """The reward ``name``; with ``params`` ({parameter: value}), built with those values (the
    others at their declared defaults; ``RewardParamError`` for a value it does not take)."""
    problem = _problem(name)
    if problem is not None:
        error, message = problem
        raise error(message)
    return REGISTRY[name].with_params(params) if params else REGISTRY[name]


def reward_spec(name: str) -> RewardSpec:
    return get_reward(name).spec
