"""verdict.format, verdict.label and verdict.consistency."""

import json

import pytest

from bbuqc.protocol import THIRD_STATE_WORDS, parse_verdict
from bbuqc.rewards import clear_caches, get_reward
from bbuqc.rewards import verdict as V

TWO_IMAGES = {"图片_1": '{"统计":[]}', "图片_2": "无关图片"}


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


def run(rid, completion, label="通过", summaries=None):
    summaries = TWO_IMAGES if summaries is None else summaries
    values = get_reward(rid)([completion], group_label=[label], summaries=[summaries])
    assert len(values) == 1 and isinstance(values[0], float)
    return values[0]


# --- verdict.format ----------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        "通过\n理由：图片_1 螺丝符合",
        "不通过\n理由: 图片_2 缺少挡风板",
        "通过\n理由:x",
        "通过\n理由：x\n",
        "通过\n理由：x  \n\n \t",  # trailing whitespace is removed first
        " 通过 \n  理由： x ",  # each line is stripped
        "通过\r\n理由：x",
        "通过\n理由：x<|im_end|>",
        [{"type": "text", "text": "通过\n"}, {"type": "text", "text": "理由：x"}],
        {"text": "不通过\n理由：x"},
    ],
)
def test_format_valid(completion):
    assert run("verdict.format", completion) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "通过\n\n理由：x",  # a blank middle line makes three lines
        "\n通过\n理由：x",  # only trailing whitespace is removed
        "通过\n理由：",
        "通过\n理由：   ",
        "通过\n理由",
        "通过\n原因：x",
        "通过\n 说明 理由：x",
        "通过",
        "通过\n理由：x\n补充说明",
        "通过。\n理由：x",
        "审核通过\n理由：x",
        "通过 理由：x",
        "",
        None,
        42,
        "需复核\n理由：x",
        "证据不足\n理由：x",
        "待定\n理由：x",
        "无法判断\n理由：x",
        "通过（需复核）\n理由：x",
    ],
)
def test_format_invalid(completion):
    assert run("verdict.format", completion) == 0.0


def test_third_state_words_are_listed():
    assert THIRD_STATE_WORDS == ("需复核", "证据不足", "待定", "无法判断")


@pytest.mark.parametrize(
    "answer",
    [
        "通过<|im_start|>\n理由: 图片_1检测到BBU设备",  # issue 12, defect 1: was 0.0 in training
        "<|vision_start|>不通过\n理由: 图片_1缺少挡风板<|endoftext|>",
        "通过\n理由: 图片_1检测到BBU设备<|eot_id|><|im_end|>",
        "通过\n理由: <|x|>",  # the reason is only a token: empty once stripped
        "通过<|im_start|>\n\n理由: x",  # a token does not hide a blank line
        "通过\n理由: 图片_1<|not a token|>",
    ],
)
def test_training_and_evaluation_read_an_answer_alike(answer):
    """verdict.format is 1.0 exactly when evaluation's parse_verdict accepts the answer."""
    verdict, reason = parse_verdict(answer)
    assert run("verdict.format", answer) == (0.0 if verdict is None else 1.0)
    ctx = V.batch_contexts([answer])[0]
    assert (ctx.verdict, ctx.reason or None) == (verdict, reason)


def test_special_token_after_the_verdict_is_valid_everywhere():
    answer = "通过<|im_start|>\n理由: 图片_1检测到BBU设备"
    assert parse_verdict(answer) == ("通过", "图片_1检测到BBU设备")
    assert run("verdict.format", answer) == 1.0
    assert run("verdict.label", answer, label="通过") == 1.0
    assert run("verdict.consistency", answer) == 1.0  # grounded (图片_1 of 2) and 检测到 backs 通过


# --- verdict.label -----------------------------------------------------------


@pytest.mark.parametrize(
    "completion, label, expected",
    [
        ("通过\n理由：x", "通过", 1.0),
        ("不通过\n理由：x", "不通过", 1.0),
        ("通过\n理由：x", "不通过", 0.0),
        ("不通过\n理由：x", "通过", 0.0),
        ("\n\n 通过 \n理由：x", "通过", 1.0),  # line 1 of the stripped text
        ("通过", "通过", 1.0),  # the label does not need the format
        ("通过\n\n理由：x", "通过", 1.0),
        ("通过。\n理由：x", "通过", 0.0),
        ("需复核\n理由：x", "通过", 0.0),
        ("需复核\n理由：x", "不通过", 0.0),
        ("无法判断", "不通过", 0.0),
        ("通过\n理由：x", "pass", 0.0),
        ("通过\n理由：x", None, 0.0),
        ("通过\n理由：x", " 通过", 0.0),
        ("通过\n理由：x", "需复核", 0.0),
        ("", "通过", 0.0),
    ],
)
def test_label(completion, label, expected):
    assert run("verdict.label", completion, label=label) == expected


def test_label_column_shorter_than_batch():
    values = get_reward("verdict.label")(["通过\n理由：x", "通过\n理由：x"], group_label=["通过"])
    assert values == [1.0, 0.0]


def test_label_without_columns():
    assert get_reward("verdict.label")(["通过\n理由：x"]) == [0.0]


# --- verdict.consistency ----------------------------------------------------------


@pytest.mark.parametrize(
    "completion, summaries, expected",
    [
        # grounded (1) and backed by a failing finding (1)
        ("不通过\n理由：图片_1中BBU安装螺丝不符合", TWO_IMAGES, 1.0),
        # only passing findings under 不通过 contradict it (-1), grounded (1)
        ("不通过\n理由：图片_1、图片_2螺丝均符合", TWO_IMAGES, 0.0),
        ("通过\n理由：图片_1螺丝符合，图片_2挡风板方向正确", TWO_IMAGES, 1.0),
        # a failing finding under 通过 (-1), citing an image that does not exist (-1)
        ("通过\n理由：图片_3缺少挡风板", TWO_IMAGES, -1.0),
        # one valid and one invalid reference: grounding 0
        ("通过\n理由：图片_1符合，图片_5符合", TWO_IMAGES, 0.5),
        # no reference: grounding 0
        ("不通过\n理由：螺丝不符合", TWO_IMAGES, 0.5),
        # no cue: self-consistency 0
        ("通过\n理由：见图片_1", TWO_IMAGES, 0.5),
        # mixed findings: one failure backs 不通过, contradicts 通过
        ("不通过\n理由：图片_1设备完整，但图片_2螺丝不合格", TWO_IMAGES, 1.0),
        ("通过\n理由：图片_1设备完整，但图片_2螺丝不合格", TWO_IMAGES, 0.0),
        # "no problem" phrases are passing findings, not failures
        ("通过\n理由：图片_1无异常", TWO_IMAGES, 1.0),
        ("通过\n理由：图片_1未见异常，光纤无遮挡", TWO_IMAGES, 1.0),
        ("不通过\n理由：图片_1未安装挡风板", TWO_IMAGES, 1.0),
        ("不通过\n理由：图片_2无套管", TWO_IMAGES, 1.0),
        # the verdict word itself is not evidence
        ("不通过\n理由：因此不通过", TWO_IMAGES, 0.0),
        ("通过\n理由：审核通过", TWO_IMAGES, 0.0),
        # reference spellings: 图片1 counts, 图片0 and absurd indices do not exist
        ("通过\n理由：图片1符合", TWO_IMAGES, 1.0),
        ("通过\n理由：图片_0符合", TWO_IMAGES, 0.0),
        ("通过\n理由：图片_99999999999999符合", TWO_IMAGES, 0.0),
        # distinct references: 图片_1 twice and 图片_9 once is one valid, one invalid
        ("通过\n理由：图片_1符合，图片_1完整，图片_9正常", TWO_IMAGES, 0.5),
        # the number of images from a JSON string, a list, or unknown
        ("不通过\n理由：图片_2螺丝不符合", json.dumps(TWO_IMAGES, ensure_ascii=False), 1.0),
        ("不通过\n理由：图片_3螺丝不符合", ["a", "b", "c"], 1.0),
        ("不通过\n理由：图片_3螺丝不符合", None, 0.5),
        ("不通过\n理由：图片_3螺丝不符合", "not json", 0.5),
        ("不通过\n理由：图片_1螺丝不符合", {}, 0.0),
        # no valid verdict: the lowest score, so breaking the format never pays
        ("需复核\n理由：图片_1螺丝不符合", TWO_IMAGES, -1.0),
        ("不通过\n\n理由：图片_1螺丝不符合", TWO_IMAGES, -1.0),
        ("不通过", TWO_IMAGES, -1.0),
        (None, TWO_IMAGES, -1.0),
    ],
)
def test_consistency(completion, summaries, expected):
    values = get_reward("verdict.consistency")([completion], group_label=["通过"], summaries=[summaries])
    assert values == [pytest.approx(expected)]


def test_consistency_ignores_the_group_label():
    # Agreement with the label is verdict.label's job.
    text = "不通过\n理由：图片_1螺丝不符合"
    assert run("verdict.consistency", text, label="通过") == run("verdict.consistency", text, label="不通过") == 1.0


def test_consistency_counts_longest_cues():
    ctx = V.VerdictContext("不通过\n理由：图片_1螺丝不符合，图片_2无异常，光纤未见异常，缺少接地线")
    # 不符合, 缺少 fail; 无异常, 未见异常 pass.
    assert ctx.cue_counts == (2, 2)
    assert ctx.image_refs == frozenset({1, 2})


def test_grounding_and_self_consistency_functions():
    assert V.grounding(frozenset(), 3) == 0.0
    assert V.grounding(frozenset({1, 2}), None) == 0.0
    assert V.grounding(frozenset({1, 2, 3, 4}), 3) == 0.5
    assert V.self_consistency("不通过", passing=0, failing=0) == 0.0
    assert V.self_consistency("通过", passing=2, failing=1) == -1.0
    assert V.self_consistency("不通过", passing=2, failing=1) == 1.0


def test_batch_columns_are_read_per_row():
    reward = get_reward("verdict.consistency")
    text = "不通过\n理由：图片_2螺丝不符合"
    assert reward([text, text], group_label=["不通过"] * 2, summaries=[TWO_IMAGES, {"图片_1": "x"}]) == [1.0, 0.0]


def test_verdict_rewards_parse_each_text_once(monkeypatch):
    calls = []
    original = V.VerdictContext.__init__

    def counting(self, text):
        calls.append(text)
        original(self, text)

    monkeypatch.setattr(V.VerdictContext, "__init__", counting)
    texts = ["通过\n理由：图片_1符合", "不通过\n理由：图片_2不符合", "通过\n理由：图片_1符合"]
    for rid in ("verdict.format", "verdict.label", "verdict.consistency"):
        get_reward(rid)(list(texts), group_label=["通过"] * 3, summaries=[TWO_IMAGES] * 3)
    assert sorted(calls) == sorted(set(texts))
