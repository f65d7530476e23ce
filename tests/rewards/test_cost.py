"""verdict.cost (the business cost of a wrong verdict) and reward parameters: declared, checked, applied."""

from __future__ import annotations

import math

import pytest

from bbuqc.rewards import (
    REGISTRY,
    Param,
    RewardError,
    RewardParamError,
    clear_caches,
    get_reward,
    reward_spec,
    strict_rewards,
)
from bbuqc.rewards import verdict as V

PASS_ANSWER = "通过\n理由: 图片_1 挡风板安装规范"
FAIL_ANSWER = "不通过\n理由: 图片_1 缺少挡风板"
INVALID_ANSWERS = ["通过", "需复核\n理由: 图片_1 看不清", "", None, "通过\n理由：", "理由: 通过\n通过"]
ANSWERS = {"pass": PASS_ANSWER, "fail": FAIL_ANSWER, "invalid": INVALID_ANSWERS[0]}
LABELS = {"pass": "通过", "fail": "不通过"}


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


def cost(label: str, answer, **params) -> float:
    fn = get_reward("verdict.cost", params or None)
    with strict_rewards():  # a value outside the declared range would raise here
        values = fn([answer], group_label=[label], summaries=[{"图片_1": "{}"}])
    assert len(values) == 1 and isinstance(values[0], float)
    return values[0]


# (human label, answer) -> value, at the defaults and at other costs; docs/rewards.md holds the same table
DEFAULT_TABLE = {
    ("pass", "pass"): 1.0,
    ("pass", "fail"): -1.0,
    ("pass", "invalid"): -4.0,
    ("fail", "pass"): -4.0,
    ("fail", "fail"): 1.0,
    ("fail", "invalid"): -4.0,
}
CUSTOM = {"false_pass": 9, "false_fail": 2.5}
CUSTOM_TABLE = {
    ("pass", "pass"): 1.0,
    ("pass", "fail"): -2.5,
    ("pass", "invalid"): -9.0,
    ("fail", "pass"): -9.0,
    ("fail", "fail"): 1.0,
    ("fail", "invalid"): -9.0,
}
# false fails costlier than false passes: the invalid answer takes the larger one
INVERTED = {"false_pass": 0.5, "false_fail": 3}
INVERTED_TABLE = {
    ("pass", "pass"): 1.0,
    ("pass", "fail"): -3.0,
    ("pass", "invalid"): -3.0,
    ("fail", "pass"): -0.5,
    ("fail", "fail"): 1.0,
    ("fail", "invalid"): -3.0,
}


@pytest.mark.parametrize("label,answer", list(DEFAULT_TABLE))
def test_cost_at_defaults_on_every_label_answer_pair(label, answer):
    assert cost(LABELS[label], ANSWERS[answer]) == DEFAULT_TABLE[label, answer]
    # explicit values equal to the defaults are the same reward
    assert cost(LABELS[label], ANSWERS[answer], false_pass=4.0, false_fail=1) == DEFAULT_TABLE[label, answer]


@pytest.mark.parametrize("params,table", [(CUSTOM, CUSTOM_TABLE), (INVERTED, INVERTED_TABLE)], ids=["9-2.5", "0.5-3"])
@pytest.mark.parametrize("label,answer", list(DEFAULT_TABLE))
def test_cost_at_custom_params_on_every_label_answer_pair(label, answer, params, table):
    assert cost(LABELS[label], ANSWERS[answer], **params) == table[label, answer]


def test_one_cost_set_leaves_the_other_at_its_default():
    assert cost("不通过", PASS_ANSWER, false_pass=2) == -2.0
    assert cost("通过", FAIL_ANSWER, false_pass=2) == -1.0
    assert cost("通过", "通过", false_pass=2) == -2.0  # max(2, 1)


@pytest.mark.parametrize("answer", INVALID_ANSWERS)
@pytest.mark.parametrize("label", ["通过", "不通过"])
def test_every_invalid_answer_is_the_lowest_value(label, answer):
    """Invalid is what evaluation calls invalid (parse_verdict): never better than any valid answer."""
    assert V.parse_verdict(V.verdict_text(answer or ""))[0] is None
    assert cost(label, answer) == reward_spec("verdict.cost").lo == -4.0
    assert cost(label, answer, **CUSTOM) == -9.0


@pytest.mark.parametrize("label", [None, "", "pass", "需复核", 1])
def test_no_usable_label_scores_zero(label):
    for answer in (PASS_ANSWER, FAIL_ANSWER, "通过"):
        assert cost(label, answer) == 0.0


def test_batch_with_mixed_rows_and_columns():
    fn = get_reward("verdict.cost", CUSTOM)
    answers = [PASS_ANSWER, FAIL_ANSWER, "通过", PASS_ANSWER]
    labels = ["不通过", "通过", "通过", "通过"]
    assert fn(answers, group_label=labels, trainer_state=None) == [-9.0, -2.5, -9.0, 1.0]
    # the registered (default) reward is untouched by building another
    assert get_reward("verdict.cost")(answers, group_label=labels) == [-4.0, -1.0, -4.0, 1.0]


def test_verdict_label_keeps_its_meaning():
    """verdict.label is unchanged: a first line equal to the label is 1 even without a reason."""
    label = get_reward("verdict.label")
    assert label(["通过", PASS_ANSWER, FAIL_ANSWER], group_label=["通过"] * 3) == [1.0, 1.0, 0.0]
    assert reward_spec("verdict.label").params == {} and (
        reward_spec("verdict.label").lo,
        reward_spec("verdict.label").hi,
    ) == (0, 1)


# --- declared parameters and the range computed from them ------------------------------------


def test_cost_declares_its_parameters():
    spec = reward_spec("verdict.cost")
    assert set(spec.params) == {"false_pass", "false_fail"}
    assert spec.params["false_pass"] == Param(float, 4.0, lo=0.0, doc=spec.params["false_pass"].doc)
    assert spec.params["false_fail"].default == 1.0 and spec.params["false_fail"].lo == 0.0
    assert spec.values == {"false_pass": 4.0, "false_fail": 1.0}
    assert (spec.lo, spec.hi) == (-4.0, 1.0)


@pytest.mark.parametrize(
    "params,expected",
    [
        ({}, (-4.0, 1.0)),
        ({"false_pass": 9}, (-9.0, 1.0)),
        ({"false_fail": 7.5}, (-7.5, 1.0)),
        ({"false_pass": 0, "false_fail": 0}, (0.0, 1.0)),
    ],
)
def test_range_is_computed_from_the_params(params, expected):
    fn = get_reward("verdict.cost", params)
    assert (fn.spec.lo, fn.spec.hi) == expected
    assert fn.__name__ == "verdict.cost" and fn.params == {"false_pass": 4.0, "false_fail": 1.0, **params}
    assert all(isinstance(v, float) for v in fn.params.values())  # ints from the command line become floats


def test_range_checks_use_the_parameterised_range(monkeypatch):
    """A scorer value inside the default range but outside the one of the values in effect is an error."""
    real = REGISTRY["verdict.cost"]
    cheap = get_reward("verdict.cost", {"false_pass": 1, "false_fail": 1})  # range [-1, 1]
    assert (cheap.spec.lo, cheap.spec.hi) == (-1.0, 1.0)
    monkeypatch.setattr(cheap, "_score", lambda row: -3.0)  # in [-4, 1], not in [-1, 1]
    assert cheap([PASS_ANSWER], group_label=["不通过"]) == [0.0]  # counted as an error, not passed on
    with strict_rewards(), pytest.raises(RewardError, match=r"verdict.cost.*outside \[-1.0, 1.0\]"):
        cheap([PASS_ANSWER], group_label=["不通过"])
    assert real([PASS_ANSWER], group_label=["不通过"]) == [-4.0]


@pytest.mark.parametrize(
    "params,line",
    [
        ({"false_pass": -1}, "reward.params.verdict.cost.false_pass=-1: expected a finite number >= 0"),
        ({"false_fail": "abc"}, "reward.params.verdict.cost.false_fail='abc': expected a finite number >= 0"),
        ({"false_pass": True}, "reward.params.verdict.cost.false_pass=True: expected a finite number >= 0"),
        ({"false_pass": math.inf}, "reward.params.verdict.cost.false_pass=inf: expected a finite number >= 0"),
        (
            {"false_pas": 2},
            "reward.params.verdict.cost.false_pas: verdict.cost declares no parameter 'false_pas'; "
            "it takes false_pass (a finite number >= 0, default 4.0), false_fail",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(params, line):
    with pytest.raises(RewardParamError) as info:
        get_reward("verdict.cost", params)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(line)


def test_a_reward_without_parameters_takes_none():
    with pytest.raises(RewardParamError, match="verdict.label declares no parameter 'x'; it takes none"):
        get_reward("verdict.label", {"x": 1})
    assert get_reward("verdict.label", {}) is get_reward("verdict.label") is REGISTRY["verdict.label"]


@pytest.mark.parametrize(
    "param,good,bad,expected",
    [
        (Param(int, 3, lo=1, hi=5), [1, 5], [0, 6, 2.0, True, "3"], "an integer in [1, 5]"),
        (Param(float, 0.5, hi=1), [-2, 1, 0.25], [1.5, math.nan, False, None], "a finite number <= 1"),
        (Param(bool, False), [True, False], [0, 1, "true"], "true or false"),
        (Param(str, "a"), ["", "b"], [1, None], "a string"),
    ],
)
def test_param_types_and_ranges(param, good, bad, expected):
    assert param.expected() == expected
    assert all(param.problem(v) is None for v in good)
    assert all(param.problem(v) == f"expected {expected}" for v in bad)


def test_a_param_default_outside_its_own_range_is_a_declaration_error():
    with pytest.raises(ValueError, match="default -1"):
        Param(float, -1.0, lo=0)
    with pytest.raises(TypeError):
        Param(list, [])
