"""GRPO reward functions: one registry keyed by namespaced ids.

Pure Python (no torch, transformers or ms-swift), so configs can be validated
without them. See docs/rewards.md for every id and REWARDS.md for the contract.
"""

from . import verdict as _verdict
from .registry import (
    LEGACY_IDS,
    REGISTRY,
    LegacyRewardIdError,
    RewardFunction,
    RewardIdError,
    RewardSpec,
    get_reward,
    reward_id_problem,
    reward_names,
    reward_spec,
)
from .summary import context as _summary_context


def clear_caches() -> None:
    """Drop every cached parse (tests and benchmarks start cold with it)."""
    _summary_context.clear_caches()
    _verdict.clear_caches()


__all__ = [
    "LEGACY_IDS",
    "REGISTRY",
    "LegacyRewardIdError",
    "RewardFunction",
    "RewardIdError",
    "RewardSpec",
    "clear_caches",
    "get_reward",
    "reward_id_problem",
    "reward_names",
    "reward_spec",
]
