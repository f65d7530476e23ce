"""Property tests: any completion and any metadata give finite floats in range.

Model output is input, not an error: random text, random and hostile JSON
(deep nesting, huge numbers, NaN, duplicate keys), completions of any type
and metadata of any shape must never make a scorer raise. The tests run in
strict mode, so a scorer that raises or leaves its range fails them instead
of being scored 0.0 (test_strict_mode_catches_broken_scorers proves it).
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbuqc.rewards import REGISTRY, RewardError, clear_caches, get_reward, reward_names, reward_spec, strict_rewards
from bbuqc.rewards.base import RewardFunction, RewardSpec


@pytest.fixture(autouse=True, scope="module")
def _strict():
    with strict_rewards():
        yield


def budget(examples: int) -> settings:
    # About 200 examples in all keeps the file to a few seconds; no example
    # database, so test runs leave nothing behind in the tree.
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


ALL_IDS = reward_names()
SUMMARY_IDS = [rid for rid in ALL_IDS if rid.startswith("summary.")]
VERDICT_IDS = [rid for rid in ALL_IDS if rid.startswith("verdict.")]

# Small alphabets so that predictions and references often share facts.
words = st.sampled_from(["华为", "完整", "符合", "不符合", "BBU设备", "标签", " 第26米 ", "007", "", " ", "ＯＤＦ－１"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    words,
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(words | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
counts = st.one_of(st.integers(-2, 5), st.sampled_from(["2", "x", 2.0, 2.5, True, None, "9" * 5000]))
attr_values = st.one_of(st.dictionaries(words, counts, max_size=3), st.lists(words | scalars, max_size=3), scalars)
entries = st.one_of(
    st.dictionaries(
        st.sampled_from(["类别", "品牌", "文本", "组", "站点距离", "异常", " 可见性 ", ""]),
        attr_values,
        max_size=4,
    ).map(lambda d: {"类别": "标签", **d} if d.get("类别") is None else d),
    json_values,
)
summaries = st.fixed_dictionaries(
    {},
    optional={
        "dataset": st.sampled_from(["BBU", "RRU", " bbu ", "", None, 3]),
        "objects_total": st.one_of(counts, st.integers(0, 10**40), st.floats()),
        "统计": st.lists(entries, max_size=4) | json_values,
        "备注": st.lists(words | scalars, max_size=3) | json_values,
        "分组统计": st.dictionaries(words, counts, max_size=3) | json_values,
        "异常": json_values,
    },
)


def dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


hostile_lines = st.one_of(
    st.integers(1, 100_000).map(lambda n: "[" * n),
    st.integers(1, 5_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(300, 3_000).map(lambda n: "[" * n + "]" * n),
    st.integers(4_000, 6_000).map(lambda n: "9" * n),
    st.integers(4_000, 6_000).map(lambda n: '{"dataset":"BBU","objects_total":' + "9" * n + "}"),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "null", "[]", "{}", '"x"', "{bad"]),
    st.sampled_from(
        ['{"objects_total":NaN}', '{"objects_total":1e400}', '{"a":1,"a":2}', '{"统计":[{"类别":"x","类别":"y"}]}']
    ),
    st.integers(1, 5).map(lambda n: '{"统计":[' + ",".join(['{"类别":"标签","文本":{"A":1e308}}'] * n) + "]}"),
)
headers = st.sampled_from(
    ["<DOMAIN=BBU>, <TASK=SUMMARY>", "<DOMAIN=RRU>, <TASK=SUMMARY>", "<DOMAIN=bbu>, <TASK=SUMMARY>", "", "无关图片"]
)
texts = st.one_of(
    st.text(max_size=60),
    st.tuples(headers, summaries.map(dump)).map("\n".join),
    st.tuples(headers, json_values.map(dump)).map("\n".join),
    st.tuples(headers, hostile_lines).map("\n".join),
    hostile_lines,
    st.sampled_from(["无关图片", "无关图片<|im_end|>", "<|endoftext|>", "\n\n", "通过\n理由：图片_1不符合"]),
)
completions = st.one_of(
    texts,
    st.lists(
        st.one_of(texts, st.fixed_dictionaries({"type": st.just("text"), "text": texts}), json_values), max_size=3
    ),
    st.fixed_dictionaries({"text": texts}),
    json_values,
    st.builds(object),
    st.binary(max_size=8),
)
refs = st.one_of(st.none(), summaries.map(dump), json_values.map(dump), hostile_lines, st.just("无关图片"), scalars)
metadata_rows = st.one_of(
    st.fixed_dictionaries(
        {
            "domain": st.sampled_from(["BBU", "RRU", None, "", "bbu", 3]),
            "irrelevant": st.sampled_from([True, False, 1, 0, 1.0, "yes", None, []]),
            "summary_ref": refs,
        }
    ),
    st.fixed_dictionaries({"domain": st.sampled_from(["BBU", "RRU"])}).map(lambda d: json.dumps(d)),
    json_values,
)
metadata_columns = st.one_of(st.lists(metadata_rows, max_size=6), st.none(), json_values)


def check(rid: str, values, n: int) -> None:
    spec = reward_spec(rid)
    assert isinstance(values, list) and len(values) == n, rid
    for value in values:
        assert type(value) is float, (rid, value)
        assert math.isfinite(value) and spec.lo <= value <= spec.hi, (rid, value)


@budget(80)
@given(st.lists(completions, max_size=5), metadata_columns)
def test_summary_rewards_never_raise_and_stay_in_range(batch, metadata):
    results = {}
    for rid in SUMMARY_IDS:
        results[rid] = get_reward(rid)(batch, metadata=metadata, extra_column=[1])
        check(rid, results[rid], len(batch))
    # The cache is transparent: a cold recomputation gives the same values.
    clear_caches()
    for rid in SUMMARY_IDS:
        assert get_reward(rid)(list(batch), metadata=metadata) == results[rid], rid


@budget(50)
@given(
    st.lists(completions, max_size=5),
    st.one_of(st.lists(scalars, max_size=6), scalars),
    st.one_of(
        st.lists(
            st.one_of(
                st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4),
                json_values.map(dump),
                json_values,
            ),
            max_size=6,
        ),
        json_values,
    ),
)
def test_verdict_rewards_never_raise_and_stay_in_range(batch, labels, summaries):
    for rid in VERDICT_IDS:
        check(rid, get_reward(rid)(batch, group_label=labels, summaries=summaries, metadata=[None]), len(batch))


@budget(40)
@given(summaries, st.sampled_from(["BBU", "RRU"]))
def test_a_prediction_equal_to_its_reference_scores_full_content(obj, domain):
    if domain == "RRU":
        obj.pop("备注", None)
    else:
        obj.pop("分组统计", None)
    ref = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # Serialised differently (ASCII escapes also keep characters such as \x85,
    # which splitlines() breaks on, off the line), so it is parsed on its own.
    completion = f"<DOMAIN={domain}>, <TASK=SUMMARY>\n" + json.dumps(obj)
    metadata = [{"domain": domain, "irrelevant": False, "summary_ref": ref}]
    score = {rid: get_reward(rid)([completion], metadata=metadata)[0] for rid in SUMMARY_IDS}
    for rid in ("summary.content_eq", "summary.content_f1", "summary.category_recall", "summary.category_f1"):
        assert score[rid] == 1.0, rid
    assert score["summary.content_structured_tversky"] == 1.0
    assert score["summary.text_bbu"] in (0.0, 1.0)
    assert score["summary.notes_bbu"] in (0.0, 1.0)
    assert score["summary.parse"] == score["summary.strict"] == score["summary.no_dup_keys"] == 0.0
    assert score["summary.header"] == 1.0


@budget(30)
@given(st.lists(st.tuples(texts, metadata_rows), min_size=1, max_size=6))
def test_batch_composition_does_not_change_values(rows):
    batch = [text for text, _ in rows]
    metadata = [row for _, row in rows]
    for rid in ("summary.header", "summary.content_structured_tversky", "summary.text_bbu", "summary.no_dup_keys"):
        together = get_reward(rid)(batch, metadata=metadata)
        clear_caches()
        alone = [get_reward(rid)([text], metadata=[row])[0] for text, row in rows]
        assert together == alone, rid


HOSTILE = [
    None,
    0,
    -1.5,
    b"bytes",
    object(),
    {"text": None},
    [None, 3, {"type": "text"}],
    "[" * 100_000,
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + "[" * 100_000,
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"a":' * 100_000,
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + "[" * 900 + "]" * 900,
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"统计":[{"类别":"x","品牌":' + "[" * 900 + "]" * 900 + "}]}",
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + "9" * 5000,
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"objects_total":' + "9" * 4000 + "}",
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"objects_total":1e400,"统计":[{"类别":"x","a":{"v":1e400}}]}',
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"objects_total":NaN,"统计":[{"类别":NaN,"a":{"v":NaN}}]}',
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"统计":[{"类别":"x","a":{"v":"' + "9" * 5000 + '"}}]}',
    "<DOMAIN=RRU>, <TASK=SUMMARY>\n" + '{"分组统计":{"' + "1" * 5000 + '":"' + "2" * 4000 + '"}}',
    "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + '{"统计":[{"类别":"标签","文本":{"A":' + "9" * 400 + "}}]}",
    "\u2028\x0b\r\n",
]
HOSTILE_METADATA = [
    None,
    [None],
    [{"domain": "BBU", "irrelevant": False, "summary_ref": '{"objects_total":' + "9" * 400 + "}"}],
    [
        {
            "domain": "BBU",
            "irrelevant": False,
            "summary_ref": '{"统计":[{"类别":"标签","文本":{"A":' + "9" * 400 + "}}]}",
        }
    ],
    [{"domain": "RRU", "irrelevant": False, "summary_ref": "[" * 100_000}],
    [{"domain": "BBU", "irrelevant": True, "summary_ref": "无关图片"}],
    [{"domain": ["BBU"], "irrelevant": [], "summary_ref": {"a": 1}}],
]


def test_hostile_inputs():
    for metadata in HOSTILE_METADATA:
        for rid in SUMMARY_IDS:
            column = metadata * len(HOSTILE) if metadata is not None else None
            check(rid, get_reward(rid)(HOSTILE, metadata=column), len(HOSTILE))
    for rid in VERDICT_IDS:
        check(rid, get_reward(rid)(HOSTILE, group_label=["通过"] * 3, summaries=HOSTILE), len(HOSTILE))
    for rid in ALL_IDS:  # not even a list
        check(rid, get_reward(rid)(None), 0)
        check(rid, get_reward(rid)("one completion", metadata={"domain": "BBU"}), 1)


def _broken(rid: str, score) -> RewardFunction:
    real = REGISTRY[rid]
    return RewardFunction(RewardSpec(rid, real.spec.lo, real.spec.hi, "broken"), real._prepare, score)


def _raises(row):
    raise ValueError("scorer bug")


@pytest.mark.parametrize(
    "rid, score",
    [
        ("summary.header", _raises),
        ("summary.header", lambda row: 7.5),
        ("summary.text_bbu", lambda row: float("nan")),
        ("verdict.consistency", _raises),
        ("verdict.format", lambda row: 7.5),
    ],
)
def test_strict_mode_catches_broken_scorers(monkeypatch, rid, score):
    """The property tests fail on a scorer that raises or returns 7.5 (they passed before strict mode)."""
    monkeypatch.setitem(REGISTRY, rid, _broken(rid, score))
    test = (
        test_summary_rewards_never_raise_and_stay_in_range
        if rid.startswith("summary.")
        else test_verdict_rewards_never_raise_and_stay_in_range
    )
    with pytest.raises(RewardError, match=rid):
        test()
    with pytest.raises(RewardError, match=rid):
        test_hostile_inputs()
