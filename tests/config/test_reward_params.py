"""reward.params.<id>.<name>: composed, validated before any model loads, and handed to the rewards that
GRPO (through the ms-swift bridge), in-training validation and evaluation score with."""

from __future__ import annotations

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.config.reward_sets import flatten_params, reward_params, reward_set
from bbuqc.stage_b.metrics import score_answers

ANSWERS = ["通过\n理由: 图片_1 挡风板安装规范", "不通过\n理由: 图片_1 缺少挡风板", "通过"]
LABELS = ["不通过", "通过", "通过"]  # a false pass, a false fail, an invalid answer


def _compose(overrides: list[str], command: str = "train"):
    return compose(command, overrides)


def test_verdict_cost_set_composes_with_its_params():
    cfg = _compose(["task=verdict", "reward=verdict_cost"])
    assert reward_set("verdict_cost") == {"verdict.format": 1.0, "verdict.cost": 1.0}
    assert reward_params(cfg) == {"verdict.cost": {"false_pass": 4.0, "false_fail": 1.0}}  # the declared defaults
    assert problems(cfg, "train") == []
    cfg = _compose(["task=verdict", "reward=verdict_cost", "reward.params.verdict.cost.false_pass=9"])
    assert reward_params(cfg) == {"verdict.cost": {"false_pass": 9, "false_fail": 1.0}}
    assert problems(cfg, "train") == []


def test_sets_without_params_have_none():
    for name in ("verdict", "summary_full"):
        assert reward_params(_compose([f"reward={name}"])) == {}
    assert flatten_params({"verdict": {"cost": {"false_pass": 2}, "label": {}}}) == {
        "verdict.cost": {"false_pass": 2},
        "verdict.label": {},
    }


def test_params_reach_the_rewards_through_the_ms_swift_bridge():
    """Built as GRPO training builds them (runner.prepare -> register_config_rewards; ms-swift resolves the
    `reward_funcs` names through its own `orms`), then called as its trainer calls them."""
    from swift.rewards import orms
    from swift.rlhf_trainers.utils import resolve_reward_funcs

    from bbuqc.config.validate import reward_weights
    from bbuqc.training.rewards import register_config_rewards

    values = {}
    for false_pass, false_fail in ((9, 2.5), (4.0, 1.0)):
        cfg = _compose(
            [
                "task=verdict",
                "reward=verdict_cost",
                f"reward.params.verdict.cost.false_pass={false_pass}",
                f"reward.params.verdict.cost.false_fail={false_fail}",
            ]
        )
        names = register_config_rewards(cfg)
        assert names == list(reward_weights(cfg)) == ["verdict.format", "verdict.cost"]
        funcs, func_names = resolve_reward_funcs(names)
        assert func_names == names  # metrics: rewards/verdict.cost/mean
        cost = funcs[1]
        values[false_pass] = cost(ANSWERS, group_label=LABELS, summaries=[{}] * 3, trainer_state=None)
        assert type(cost).reward.spec.lo == -max(false_pass, false_fail)
    assert values[9] == [-9.0, -2.5, -9.0]
    assert values[4.0] == [-4.0, -1.0, -4.0]
    assert orms["verdict.cost"]().reward.params == {"false_pass": 4.0, "false_fail": 1.0}  # the last registered


def test_evaluation_and_validation_score_with_the_same_params():
    """bbuqc-evaluate composes a reward node too: its records and in-training validation use the params."""
    from bbuqc.training.validation import verdict_figures

    cfg = _compose(["reward=verdict_cost", "reward.params.verdict.cost.false_pass=9"], command="evaluate")
    assert problems(cfg, "evaluate") == []
    params = reward_params(cfg)
    assert score_answers(ANSWERS[:1], "不通过", {}, params)["verdict.cost"] == [-9.0]
    assert score_answers(ANSWERS[:1], "不通过", {})["verdict.cost"] == [-4.0]  # defaults without a config
    rows = [{"group_label": label, "summaries": {}} for label in LABELS]
    assert verdict_figures(rows, ANSWERS, params)["val/verdict.cost"] == pytest.approx((-9 - 1 - 9) / 3)
    assert verdict_figures(rows, ANSWERS)["val/verdict.cost"] == pytest.approx((-4 - 1 - 4) / 3)


BAD = [
    # (overrides, the one line's start, what it says was expected)
    (["reward.params.verdict.cost.false_pass=-1"], "reward.params.verdict.cost.false_pass=-1", "a finite number >= 0"),
    (
        ["reward.params.verdict.cost.false_fail=abc"],
        "reward.params.verdict.cost.false_fail='abc'",
        "a finite number >= 0",
    ),
    (
        ["reward.params.verdict.cost.false_pass=true"],
        "reward.params.verdict.cost.false_pass=True",
        "a finite number >= 0",
    ),
    (["+reward.params.verdict.cost.fp=2"], "reward.params.verdict.cost.fp", "declares no parameter 'fp'; it takes"),
    (["+reward.params.verdict.costs.false_pass=2"], "reward.params.verdict.costs", "unknown reward id 'verdict.costs'"),
    (["+reward.params.verdict_cost.false_pass=2"], "reward.params.verdict_cost.false_pass", "unknown reward id"),
    (
        ["+reward.params.verdict.label.x=1"],
        "reward.params.verdict.label",
        "reward=verdict_cost does not use verdict.label",
    ),
    (["+reward.params.verdict.format=1"], "reward.params.verdict.format=1", "expected {parameter: value}"),
]


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("overrides,field,expected", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_params_are_one_line_each(overrides, field, expected, command):
    found = problems(_compose(["task=verdict", "reward=verdict_cost", *overrides], command=command), command)
    assert len(found) == 1, found
    assert found[0].startswith(field) and expected in found[0], found[0]


def test_params_of_a_reward_outside_the_chosen_set_are_refused():
    found = problems(_compose(["task=verdict", "reward=verdict", "+reward.params.verdict.cost.false_pass=4"]), "train")
    assert found == [
        "reward.params.verdict.cost: reward=verdict does not use verdict.cost (its rewards: "
        "verdict.format, verdict.label, verdict.consistency); choose a set that does, or add it with "
        "+reward.weights.verdict.cost=<weight>"
    ]
    # added to the set, it is used, and its params are taken
    cfg = _compose(
        ["task=verdict", "reward=verdict", "+reward.weights.verdict.cost=1", "+reward.params.verdict.cost.false_pass=4"]
    )
    assert problems(cfg, "train") == [] and reward_params(cfg) == {"verdict.cost": {"false_pass": 4}}
