"""GRPO reward functions: one registry keyed by namespaced ids.

Pure Python (no torch, transformers or ms-swift), so configs can be validated
without them. See docs/rewards.md for every id and REWARDS.md for the contract.
"""

from .base import Param, RewardError, RewardParamError, pop_error_metrics, reward, row_reward, strict_rewards
from .registry import (
    LEGACY_IDS,
    REGISTRY,
    LegacyRewardIdError,
    RewardFunction,
    RewardIdError,
    RewardSpec,
    clear_caches,
    get_reward,
    reward_id_problem,
    reward_names,
    reward_spec,
)

__all__ = [
    "LEGACY_IDS",
    "REGISTRY",
    "LegacyRewardIdError",
    "Param",
    "RewardError",
    "RewardFunction",
    "RewardIdError",
    "RewardParamError",
    "RewardSpec",
    "clear_caches",
    "get_reward",
    "pop_error_metrics",
    "reward_id_problem",
    "reward_names",
    "reward",
    "reward_spec",
    "row_reward",
    "strict_rewards",
]
