"""bbuqc.rewards -> ms-swift's ORM registry.

ms-swift names a reward's metrics after its class name, so each reward id gets its own
ORM subclass *named by the id*: metrics read `rewards/summary.format/mean`. A reward with
parameters is built with the config's values (`reward.params.<id>.<name>`), so the reward
ms-swift calls is the one validation and evaluation score with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from swift.rewards import ORM, orms

from bbuqc.rewards import RewardFunction, get_reward


def _orm_class(fn: RewardFunction) -> type[ORM]:
    def __call__(self, completions, **kwargs):
        return fn(completions, **kwargs)

    rid = fn.spec.id
    return type(rid, (ORM,), {"__call__": __call__, "__module__": __name__, "__qualname__": rid, "reward": fn})


def register_rewards(reward_ids: list[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Register every id into `orms`, built with its `params[id]` values, and return the ids (the names
    ms-swift takes). Idempotent: an id already registered with the same reward keeps its class."""
    params = params or {}
    for rid in reward_ids:
        fn = get_reward(rid, params.get(rid))
        current = orms.get(rid)
        if current is None or getattr(current, "reward", None) is not fn:
            orms[rid] = _orm_class(fn)
    return list(reward_ids)


def register_config_rewards(cfg: DictConfig) -> list[str]:
    """The config's reward set (`reward.weights`, in order) with its parameters (`reward.params`), as GRPO
    training registers them; returns the `reward_funcs` names."""
    from bbuqc.config.reward_sets import reward_params
    from bbuqc.config.validate import reward_weights

    return register_rewards(list(reward_weights(cfg)), reward_params(cfg))
