"""Reward sets are the files in conf/reward/: the one place their ids, order and weights live.

A set (or the command line) may also set its rewards' declared parameters, nested like the weights:
``reward.params.verdict.cost.false_pass=4`` is ``{"verdict": {"cost": {"false_pass": 4}}}``.
"""

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


PARAMS_SHAPE = "reward.params.<namespace>.<reward>.<parameter>=<value> (e.g. reward.params.verdict.cost.false_pass=4)"


def params_problems(tree: Any, chosen: Any = None, set_name: str | None = None) -> list[str]:
    """One line per problem of a ``reward.params`` tree, naming ``reward.params.<id>[.<name>]``: a
    misshapen entry, a reward id not in the registry or not in the chosen set (``chosen``: its ids,
    None to skip), a parameter the reward does not declare, of the wrong type or out of its range."""
    from bbuqc.rewards import reward_id_problem, reward_spec

    if tree is None:
        return []
    if not isinstance(tree, dict):
        return [f"reward.params={tree!r}: expected {PARAMS_SHAPE}"]
    out = []
    for namespace, entries in tree.items():
        if not isinstance(entries, dict):
            out.append(f"reward.params.{namespace}={entries!r}: expected {PARAMS_SHAPE}")
            continue
        for name, values in entries.items():
            rid, key = f"{namespace}.{name}", f"reward.params.{namespace}.{name}"
            problem = reward_id_problem(rid)
            if problem:
                out.append(f"{key}: {problem}")
            elif chosen is not None and rid not in chosen:
                out.append(
                    f"{key}: reward={set_name} does not use {rid} (its rewards: {', '.join(chosen)}); "
                    f"choose a set that does, or add it with +reward.weights.{rid}=<weight>"
                )
            elif not isinstance(values, dict):
                out.append(f"{key}={values!r}: expected {{parameter: value}}, e.g. {key}.<parameter>=<value>")
            else:
                out.extend(reward_spec(rid).param_problems(values, prefix=key))
    return out


def flatten_params(tree: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """{namespace: {name: {parameter: value}}} -> {"namespace.name": {parameter: value}} (a valid tree)."""
    return {
        f"{namespace}.{name}": dict(values or {})
        for namespace, entries in (tree or {}).items()
        for name, values in (entries or {}).items()
    }


def reward_params(cfg: Any) -> dict[str, dict[str, Any]]:
    """The config's reward parameters by reward id (``{"verdict.cost": {"false_pass": 4.0}}``), for
    building the rewards as training and evaluation score with them (``get_reward(id, params[id])``)."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "reward.params")
    return flatten_params(OmegaConf.to_container(node, resolve=True) if node is not None else {})


def reward_set_names() -> list[str]:
    return sorted(p.stem for p in REWARD_CONF.glob("*.yaml"))


def reward_set(name: str) -> dict[str, float]:
    """The named set as an ordered {reward id: weight}."""
    path = REWARD_CONF / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown reward set {name!r}; known sets: {', '.join(reward_set_names())}")
    return flatten_weights(OmegaConf.to_container(OmegaConf.load(path).weights))
