"""Reward sets are the files in conf/reward/: the one place their ids, order and weights live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bbuqc.runtime.paths import CONF_DIR

REWARD_CONF = Path(CONF_DIR) / "reward"


def flatten_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """{namespace: {name: w}} -> {"namespace.name": w}, in order.

    A non-dict entry stays as it is (e.g. `+reward.weights.summary_format=1`, a legacy flat
    id), so validation can name it.
    """
    flat: dict[str, Any] = {}
    for namespace, entries in weights.items():
        if isinstance(entries, dict):
            flat.update({f"{namespace}.{name}": w for name, w in entries.items()})
        else:
            flat[namespace] = entries
    return flat


def reward_set_names() -> list[str]:
    return sorted(p.stem for p in REWARD_CONF.glob("*.yaml"))


def reward_set(name: str) -> dict[str, float]:
    """The named set as an ordered {reward id: weight}."""
    path = REWARD_CONF / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown reward set {name!r}; known sets: {', '.join(reward_set_names())}")
    return flatten_weights(OmegaConf.to_container(OmegaConf.load(path).weights))
