"""bbuqc.rewards -> ms-swift's ORM registry.

ms-swift names a reward's metrics after its class name, so each reward id gets its own
ORM subclass *named by the id*: metrics read `rewards/summary.format/mean`.
"""

from __future__ import annotations

from swift.rewards import ORM, orms

from bbuqc.rewards import get_reward


def _orm_class(reward_id: str) -> type[ORM]:
    fn = get_reward(reward_id)

    def __call__(self, completions, **kwargs):
        return fn(completions, **kwargs)

    return type(reward_id, (ORM,), {"__call__": __call__, "__module__": __name__, "__qualname__": reward_id})


def register_rewards(reward_ids: list[str]) -> list[str]:
    """Register every id into `orms` (idempotent) and return the ids, the names ms-swift takes."""
    for rid in reward_ids:
        if rid not in orms:
            orms[rid] = _orm_class(rid)
    return list(reward_ids)
