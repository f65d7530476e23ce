"""The summary rewards, row by row of REWARDS.md, with the edge cases it names."""

import json
import math

import pytest

from bbuqc.rewards import clear_caches, get_reward
from bbuqc.rewards.summary import facts as F
from bbuqc.rewards.summary import parsing

BBU_HEADER = "<DOMAIN=BBU>, <TASK=SUMMARY>"
RRU_HEADER = "<DOMAIN=RRU>, <TASK=SUMMARY>"


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


BBU_REF = {
    "dataset": "BBU",
    "objects_total": 4,
    "统计": [
        {"类别": "BBU设备", "品牌": {"华为": 1}, "可见性": {"完整": 1}},
        {"类别": "标签", "文本": {"ODF-3-12": 1, "BBU-1": 1}},
    ],
    "备注": ["无法判断品牌"],
}
RRU_REF = {
    "dataset": "RRU",
    "objects_total": 3,
    "统计": [
        {"类别": "RRU设备", "品牌": {"华为": 1}},
        {"类别": "标签", "文本": {"RRU-A1": 1}, "组": {"1": 1}},
    ],
    "分组统计": {"1": 2},
}


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


def meta(domain="BBU", irrelevant=False, ref=BBU_REF):
    if isinstance(ref, dict):
        ref = dumps(ref)
    return {"domain": domain, "irrelevant": irrelevant, "summary_ref": ref}


def score(rid, completion, **kwargs):
    values = get_reward(rid)([completion], metadata=[meta(**kwargs)])
    assert len(values) == 1 and isinstance(values[0], float)
    return values[0]


def bbu(obj, header=BBU_HEADER) -> str:
    return f"{header}\n{obj if isinstance(obj, str) else dumps(obj)}"


def rru(obj) -> str:
    return f"{RRU_HEADER}\n{obj if isinstance(obj, str) else dumps(obj)}"


def rru_score(rid, completion, ref=RRU_REF, **kwargs):
    return score(rid, completion, domain="RRU", ref=ref, **kwargs)


CONTENT_IDS = [
    "summary.dataset",
    "summary.objects_total",
    "summary.objects_total_lb",
    "summary.category_recall",
    "summary.category_f1",
    "summary.content_eq",
    "summary.content_f1",
    "summary.content_structured_tversky",
    "summary.text_bbu",
    "summary.notes_bbu",
    "summary.notes_presence",
    "summary.group_stats_presence",
]


# --- parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, text",
    [
        ("  abc \n", "abc"),
        ("abc<|im_end|>", "abc"),
        ("<|endoftext|>a<|eot_id|>b <|im_end|>\n", "ab"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "ab"),
        (["a", {"type": "text", "text": "b"}, "c"], "abc"),
        ([{"type": "image", "image": "x.png"}, {"type": "text", "text": "b"}], "b"),
        ({"text": " a "}, "a"),
        ({"content": "a"}, ""),
        (None, ""),
        (42, ""),
        ([1, None, {"text": 3}], ""),
    ],
)
def test_completion_text(completion, text):
    assert parsing.completion_text(completion) == text


def test_loads_is_json_loads_or_invalid():
    assert parsing.loads("NaN") != parsing.loads("NaN")  # a real NaN, as json.loads gives
    assert parsing.loads("Infinity") == math.inf
    assert parsing.loads("null") is None
    assert parsing.loads("[" * 100_000) is parsing.INVALID
    assert parsing.loads("1" * 5000) is parsing.INVALID  # past int's digit limit
    assert parsing.loads("{bad") is parsing.INVALID


# Texts where json.loads's own steps matter: JSON whitespace around the
# document (and Python-only whitespace, which is not JSON's), a BOM, extra data.
EDGE_TEXTS = ["", " ", "{}", " \t{} \r\n", "\ufeff{}", "{} x", "1 2", "[1,2] \n", '"a"', "\u3000{}", "{}\u3000", "nul"]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_parsers_follow_json_loads_on_edge_texts(text):
    # The parsers call the C scanner directly; they must accept exactly what json.loads accepts.
    try:
        expected = json.loads(text)
    except ValueError:
        expected = parsing.INVALID
    assert parsing.loads(text) == expected
    value, duplicates = parsing.loads_with_duplicates(text)
    assert value == expected and duplicates is False


def test_duplicate_keys_detected_at_any_depth():
    assert parsing.loads_with_duplicates('{"a":1,"a":2}') == ({"a": 2}, True)
    assert parsing.loads_with_duplicates('{"a":[{"b":1,"c":{"d":1,"d":1}}]}')[1] is True
    assert parsing.loads_with_duplicates('{"a":{"a":1}}')[1] is False
    assert parsing.loads_with_duplicates("{bad") == (parsing.INVALID, False)


def test_canonical_form():
    a = {"统计": [{"类别": "x", "b": 1, "异常": 1}, {"类别": "y"}], "备注": ["n2", "n1"], "l": [1, 2]}
    b = {"l": [1, 2], "备注": ["n1", "n2"], "统计": [{"类别": "y"}, {"b": 1, "类别": "x"}]}
    assert parsing.canonical(a) == parsing.canonical(b)
    assert parsing.canonical({"l": [1, 2]}) != parsing.canonical({"l": [2, 1]})


# --- summary.format ----------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("无关图片", 1.0),
        ("  无关图片<|im_end|>\n", 1.0),
        ("无关图片。", 0.0),
        (BBU_HEADER + "\n无关图片", 0.0),
        ("", 0.0),
    ],
)
def test_format_irrelevant(completion, expected):
    assert score("summary.format", completion, irrelevant=True, ref="无关图片") == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        (bbu(BBU_REF), 1.0),
        (bbu("{not json but ends}"), 1.0),  # format only looks at the shape
        (bbu(BBU_REF, header=RRU_HEADER), 1.0),  # any upper-case domain and task
        (bbu(BBU_REF, header="<DOMAIN=bbu>, <TASK=SUMMARY>"), 0.0),
        (bbu(BBU_REF, header="<DOMAIN=BBU>,<TASK=SUMMARY>"), 0.0),
        (bbu(BBU_REF, header=BBU_HEADER + " "), 0.0),  # line 1 itself is matched
        (bbu(dumps(BBU_REF) + "  "), 1.0),  # line 2 is stripped
        (bbu(dumps(BBU_REF)[:-1]), 0.0),
        (BBU_HEADER + "\n\n" + dumps(BBU_REF), 0.0),  # blank middle line: 3 lines
        (bbu(BBU_REF) + "\nmore", 0.0),
        (dumps(BBU_REF), 0.0),
        ("无关图片", 0.0),
    ],
)
def test_format_relevant(completion, expected):
    assert score("summary.format", completion) == expected


# --- summary.header ----------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("无关图片", 0.0),
        (BBU_HEADER, -1.0),
        ("<DOMAIN=x", -1.0),
        ("无关图片 <TASK=SUMMARY>", -1.0),
        ("无关图片\n<TASK=", -1.0),
        ("", 0.0),
    ],
)
def test_header_irrelevant(completion, expected):
    assert score("summary.header", completion, irrelevant=True, ref="无关图片") == expected


def test_header_relevant():
    assert score("summary.header", bbu(BBU_REF)) == 1.0
    assert score("summary.header", BBU_HEADER) == 1.0  # one line is enough
    assert score("summary.header", " " + BBU_HEADER + "  \n{}") == 1.0
    assert score("summary.header", bbu(BBU_REF) + "\nextra") == 1.0
    assert score("summary.header", bbu(BBU_REF, header=RRU_HEADER)) == 0.0
    assert score("summary.header", "") == 0.0
    assert score("summary.header", bbu(BBU_REF), domain=None) == 0.0
    assert score("summary.header", rru(RRU_REF), domain="RRU") == 1.0


# --- summary.strict ----------------------------------------------------------


def test_strict():
    assert score("summary.strict", bbu(BBU_REF)) == 0.0
    assert score("summary.strict", bbu("not json")) == 0.0  # strict is about lines and header
    assert score("summary.strict", BBU_HEADER) == -1.0
    assert score("summary.strict", bbu(BBU_REF) + "\nmore") == -1.0
    assert score("summary.strict", BBU_HEADER + "\n\n" + dumps(BBU_REF)) == -1.0
    assert score("summary.strict", bbu(BBU_REF, header=RRU_HEADER)) == -1.0
    assert score("summary.strict", bbu(BBU_REF), domain=None) == 0.0
    assert score("summary.strict", "a", domain=None) == -1.0  # line count first
    assert score("summary.strict", "无关图片", irrelevant=True) == 0.0
    assert score("summary.strict", bbu(BBU_REF) + "\nx", irrelevant=True) == 0.0


# --- summary.parse -----------------------------------------------------------


def test_parse():
    assert score("summary.parse", bbu(BBU_REF)) == 0.0
    assert score("summary.parse", bbu(BBU_REF, header="junk")) == 0.0  # no header needed
    assert score("summary.parse", bbu(BBU_REF) + "\nmore") == 0.0  # line 2 is what counts
    assert score("summary.parse", bbu("NaN")) == 0.0
    assert score("summary.parse", bbu("null")) == 0.0
    assert score("summary.parse", BBU_HEADER) == -1.0
    assert score("summary.parse", "") == -1.0
    assert score("summary.parse", bbu("{bad json}")) == -1.0
    assert score("summary.parse", bbu("[" * 100_000)) == -1.0
    assert score("summary.parse", bbu("9" * 5000)) == -1.0
    assert score("summary.parse", "x\ny", irrelevant=True) == 0.0


# --- summary.no_dup_keys -----------------------------------------------------


def test_no_dup_keys():
    assert score("summary.no_dup_keys", bbu(BBU_REF)) == 0.0
    assert score("summary.no_dup_keys", bbu('{"dataset":"BBU","dataset":"BBU"}')) == -1.0
    nested = '{"dataset":"BBU","统计":[{"类别":"a","品牌":{"华为":1,"华为":2}}]}'
    assert score("summary.no_dup_keys", bbu(nested)) == -1.0
    # Only the strict JSON line counts: no header, no penalty.
    assert score("summary.no_dup_keys", bbu('{"a":1,"a":1}', header="junk")) == 0.0
    assert score("summary.no_dup_keys", bbu('{"a":1,"a":1')) == 0.0  # invalid JSON
    assert score("summary.no_dup_keys", bbu('{"a":1,"a":1}'), domain=None) == 0.0


def test_no_dup_keys_on_a_verbatim_copy_of_a_reference_with_duplicates():
    ref = '{"dataset":"BBU","objects_total":1,"objects_total":1}'
    assert score("summary.no_dup_keys", bbu(ref), ref=ref) == -1.0


# --- summary.dataset ---------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, expected",
    [("BBU", 1.0), (" bbu ", 1.0), ("RRU", 0.0), ("", 0.0), ("  ", 0.0), (None, 0.0), (1, 0.0)],
)
def test_dataset(dataset, expected):
    assert score("summary.dataset", bbu({**BBU_REF, "dataset": dataset}), ref=None) == expected


def test_dataset_gating():
    assert score("summary.dataset", bbu({k: v for k, v in BBU_REF.items() if k != "dataset"})) == 0.0
    assert score("summary.dataset", bbu(["BBU"])) == 0.0
    assert score("summary.dataset", bbu(BBU_REF), domain=None) == 0.0
    assert score("summary.dataset", bbu(BBU_REF, header="junk")) == 0.0
    assert score("summary.dataset", bbu(BBU_REF), irrelevant=True) == 0.0


# --- summary.objects_total / objects_total_lb ---------------------------------


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        (4, 4, 1.0),
        (5, 4, 0.5),
        (1, 4, 0.25),
        ("4", 4, 1.0),
        (4.0, 4, 1.0),
        (0, 0, 1.0),
        (4.5, 4, 0.0),
        (True, 1, 0.0),
        (-1, 0, 0.0),
        (None, 4, 0.0),
        (10**300, 0, 0.0),
    ],
)
def test_objects_total(pred, ref, expected):
    completion = bbu({**BBU_REF, "objects_total": pred})
    assert score("summary.objects_total", completion, ref={**BBU_REF, "objects_total": ref}) == pytest.approx(
        expected, abs=1e-12
    )


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        (2, 4, math.exp(-2 / 3)),
        (10, 20, math.exp(-10 / 6)),
        (0, 0, 1.0),
        (4, 4, 1.0),
        (6, 4, 1.0),
        (7, 4, math.exp(-1 / 6)),
        (9, 4, math.exp(-3 / 6)),
        (40, 20, math.exp(-18 / 10)),
        (10**300, 0, 0.0),
        (0, 10**300, math.exp(-10 / 3)),  # p = 0 against a huge count: no overflow
    ],
)
def test_objects_total_lb(pred, ref, expected):
    completion = bbu({**BBU_REF, "objects_total": pred})
    value = score("summary.objects_total_lb", completion, ref={**BBU_REF, "objects_total": ref})
    assert value == pytest.approx(expected, abs=1e-12)


def test_objects_total_needs_both():
    assert score("summary.objects_total", bbu(BBU_REF), ref=None) == 0.0
    assert score("summary.objects_total_lb", bbu(BBU_REF), ref="无关图片") == 0.0
    assert score("summary.objects_total_lb", bbu(BBU_REF), ref="{not json") == 0.0


# --- categories ----------------------------------------------------------------


def cats(*names):
    return {"dataset": "BBU", "objects_total": 1, "统计": [{"类别": name} for name in names]}


@pytest.mark.parametrize(
    "pred, ref, recall, f1",
    [
        (["A"], ["A", "B"], 0.5, 2 / 3),
        ([" A ", "B"], ["A", "B"], 1.0, 1.0),
        (["A", "C"], ["A", "B"], 0.5, 0.5),
        ([], [], 1.0, 1.0),
        (["A"], [], 0.0, 0.0),
        ([], ["A"], 0.0, 0.0),
        (["", " ", 7, None], ["A"], 0.0, 0.0),  # only non-empty string names
    ],
)
def test_categories(pred, ref, recall, f1):
    completion = bbu(cats(*pred))
    assert score("summary.category_recall", completion, ref=cats(*ref)) == pytest.approx(recall)
    assert score("summary.category_f1", completion, ref=cats(*ref)) == pytest.approx(f1)


def test_categories_need_domain_valid_objects():
    pred = {**cats("A"), "分组统计": {"1": 1}}  # BBU must not have 分组统计
    assert score("summary.category_recall", bbu(pred), ref=cats("A")) == 0.0
    assert score("summary.category_f1", bbu(cats("A")), ref={**cats("A"), "分组统计": {}}) == 0.0
    rru_pred = {**cats("A"), "备注": []}  # RRU must not have 备注
    assert rru_score("summary.category_recall", rru(rru_pred), ref=cats("A")) == 0.0
    assert rru_score("summary.category_recall", rru(cats("A")), ref=cats("A")) == 1.0


# --- content_eq --------------------------------------------------------------


def test_content_eq():
    shuffled = {
        "备注": list(BBU_REF["备注"]),
        "统计": list(reversed(BBU_REF["统计"])),
        "objects_total": 4,
        "dataset": "BBU",
    }
    assert score("summary.content_eq", bbu(shuffled)) == 1.0
    with_anomaly = {**BBU_REF, "异常": {"x": 1}}
    with_anomaly["统计"] = [{**BBU_REF["统计"][0], "异常": ["y"]}, BBU_REF["统计"][1]]
    assert score("summary.content_eq", bbu(with_anomaly)) == 1.0
    assert score("summary.content_eq", bbu({**BBU_REF, "objects_total": 4.0})) == 1.0
    assert score("summary.content_eq", bbu({**BBU_REF, "objects_total": 5})) == 0.0
    other_list = {"dataset": "BBU", "x": [1, 2]}
    assert score("summary.content_eq", bbu({"dataset": "BBU", "x": [2, 1]}), ref=other_list) == 0.0
    assert score("summary.content_eq", bbu(BBU_REF), ref=None) == 0.0
    assert score("summary.content_eq", bbu({**BBU_REF, "分组统计": {}}), ref={**BBU_REF, "分组统计": {}}) == 0.0


def test_content_eq_deep_structure_is_not_equal_and_does_not_raise():
    deep = "[" * 900 + "]" * 900
    line = '{"dataset":"BBU","x":' + deep + "}"
    assert score("summary.content_eq", bbu(line), ref=line) in (0.0, 1.0)


# --- facts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, positive, non_negative",
    [
        (3, 3, 3),
        (0, None, 0),
        (-2, None, None),
        (2.0, 2, 2),
        (2.5, None, None),
        (math.inf, None, None),
        (math.nan, None, None),
        ("5", 5, 5),
        (" 5 ", 5, 5),
        ("0", None, 0),
        ("x", None, None),
        ("1" * 5000, None, None),
        (True, None, None),
        (False, None, None),
        (None, None, None),
        ([1], None, None),
    ],
)
def test_integers(value, positive, non_negative):
    assert F.positive_int(value) == positive
    assert F.non_negative_int(value) == non_negative


@pytest.mark.parametrize(
    "text, expected", [("第26米", "26"), ("007", "7"), (" 1 2 ", "12"), ("abc", "abc"), ("a 1b2", "1"), ("", "")]
)
def test_digit_string(text, expected):
    assert F.digit_string(text) == expected


def test_digit_string_beyond_int_limit():
    assert F.digit_string("0" + "9" * 5000) == "9" * 5000


def test_ocr_normalise():
    assert F.ocr_normalise(" odf－3－12（a）：b，c／d—e–f−g‐h ") == "ODF-3-12(A):B,C/D-E-F-G-H"


def test_extract_facts():
    obj = {
        "备注": [" 无法 判断 ", "无法判断", "", None, 3],
        "分组统计": {"第2组": 2, "2": "1", "x": 0, " ": 1, "3": "y", "4": True},
        "统计": [
            {"类别": " 标签 ", "文本": {" A 1 ": 2, "": 1}, "组": {"第007组": 1}, "异常": {"z": 1}},
            {"类别": "光纤", "保护": ["有保护", "有保护", " "], "弯曲": "合理", "x": {"v": 0, "w": "2"}},
            {"类别": 7, "品牌": {"华为": 1}},
            {"类别": None, "品牌": {"华为": 1}},
            {"类别": " ", "品牌": {"华为": 1}},
            "not a dict",
        ],
    }
    facts = F.extract_facts(obj).all()
    assert facts == {
        ("备注", "无法判断"): 1,
        ("备注", "3"): 1,
        ("分组统计", "2"): 3,
        ("统计", "标签", "文本", "A1"): 2,
        ("统计", "标签", "组", "7"): 1,
        ("统计", "光纤", "保护", "有保护"): 2,
        ("统计", "光纤", "弯曲", "合理"): 1,
        ("统计", "光纤", "x", "w"): 2,
        ("统计", "7", "品牌", "华为"): 1,
    }


def test_f1_and_tversky_edges():
    assert F.f1_from_counts(0, 0, 0) == 1.0
    assert F.f1_from_counts(0, 3, 0) == 0.0
    assert F.f1_from_counts(0, 3, 3) == 0.0
    assert F.f1_from_counts(1, 2, 2) == 0.5
    assert F.tversky_from_counts(0, 0, 0, 0.3, 1.0) == 1.0
    assert F.tversky_from_counts(0, 2, 0, 0.3, 1.0) == 0.0
    assert F.tversky_from_counts(3, 5, 4, 0.3, 1.0) == pytest.approx(3 / (3 + 0.6 + 1))
    huge = 10**400
    assert F.tversky_from_counts(huge, 2 * huge, huge, 0.3, 1.0) == pytest.approx(1 / 1.3)
    assert F.f1_from_counts(huge, 2 * huge, huge) == pytest.approx(2 / 3)


def test_overlap_of_shared_facts_is_their_total():
    # A verbatim copy of the reference shares its fact dict: the shortcut must equal the loop.
    facts = {("统计", "a", "b", "c"): 2, ("统计", "a", "b", "d"): 3, ("分组统计", "1"): 1}
    assert F.overlap(facts, facts) == F.overlap(facts, dict(facts)) == 6
    assert F.overlap({}, {}) == 0


# --- content_f1 / content_structured_tversky ---------------------------------


def test_content_f1():
    assert score("summary.content_f1", bbu(BBU_REF)) == 1.0
    pred = {
        "dataset": "BBU",
        "统计": [{"类别": "BBU设备", "品牌": {"华为": 1}, "可见性": {"部分": 1}}],
        "备注": [" 无法判断 品牌"],
    }
    # ref facts: 品牌, 可见性, 2 texts, 1 note = 5; pred: 品牌, 可见性(部分), note = 3; common 2.
    assert score("summary.content_f1", bbu(pred)) == pytest.approx(2 * 2 / (3 + 5))
    empty = {"dataset": "BBU", "统计": []}
    assert score("summary.content_f1", bbu(empty), ref=empty) == 1.0
    assert score("summary.content_f1", bbu(empty)) == 0.0
    assert score("summary.content_f1", bbu(BBU_REF), ref=empty) == 0.0


def test_content_f1_counts_are_weighted():
    ref = {"统计": [{"类别": "螺丝", "符合性": {"符合": 4}}]}
    pred = {"统计": [{"类别": "螺丝", "符合性": {"符合": 2}}]}
    assert score("summary.content_f1", bbu(pred), ref=ref) == pytest.approx(2 * 2 / 6)


def test_structured_tversky_bbu_drops_notes_and_text():
    ref = {
        "统计": [{"类别": "螺丝", "符合性": {"符合": 3}, "文本": {"A": 1}}, {"类别": "光纤", "保护": ["有保护"]}],
        "备注": ["n"],
    }
    pred = {
        "统计": [{"类别": "螺丝", "符合性": {"符合": 2}, "品牌": {"华为": 2}, "文本": {"B": 5}}],
        "备注": ["other"],
    }
    # structured ref: 符合 3 + 保护 1 = 4; pred: 符合 2 + 华为 2 = 4; common 2: FP 2, FN 2.
    expected = 2 / (2 + 0.3 * 2 + 1.0 * 2)
    assert score("summary.content_structured_tversky", bbu(pred), ref=ref) == pytest.approx(expected)
    only_text = {"统计": [{"类别": "标签", "文本": {"A": 1}}]}
    assert score("summary.content_structured_tversky", bbu(only_text), ref=only_text) == 1.0  # both empty
    assert score("summary.content_structured_tversky", bbu(pred), ref=only_text) == 0.0  # ref empty


def test_structured_tversky_rru_keeps_text_and_groups():
    ref = {"统计": [{"类别": "标签", "文本": {"RRU-A1": 1}, "组": {"第1组": 1}}], "分组统计": {"1": 2}}
    pred = {"统计": [{"类别": "标签", "文本": {"RRU-A1": 1}, "组": {"1": 1}, "品牌": {"华为": 2}}], "分组统计": {}}
    # ref: 文本 1 + 组 1 + 分组 2 = 4; pred: 文本 1 + 组 1 + 华为 2 = 4; common 2.
    expected = 2 / (2 + 0.6 * 2 + 1.0 * 2)
    assert rru_score("summary.content_structured_tversky", rru(pred), ref=ref) == pytest.approx(expected)


def test_content_rewards_gate_on_irrelevant_and_missing_reference():
    for rid in CONTENT_IDS:
        assert score(rid, bbu(BBU_REF), irrelevant=True) == 0.0, rid
        assert score(rid, "无关图片", irrelevant=True, ref="无关图片") == 0.0, rid
        if rid != "summary.dataset":  # dataset needs no reference
            for ref in (None, "", "  ", "无关图片", "{not json"):
                assert score(rid, bbu(BBU_REF), ref=ref) == 0.0, (rid, ref)


# --- text_bbu -------------------------------------------------------------------


def labels(*texts, category="标签"):
    return {"dataset": "BBU", "统计": [{"类别": category, "文本": list(texts)}]}


def test_text_bbu():
    ref = labels("ODF-3-12", "BBU-1")
    assert score("summary.text_bbu", bbu(labels("odf－3－12")), ref=ref) == pytest.approx(0.5)
    # Texts are pooled across categories and normalised before matching.
    pred = {"dataset": "BBU", "统计": [{"类别": "a", "文本": ["ODF 3-12"]}, {"类别": "b", "文本": {"bbu-1": 1}}]}
    assert score("summary.text_bbu", bbu(pred), ref=labels("ODF3-12", "BBU-1")) == 1.0
    # Three distinct texts beyond (2 + 2) cost 0.3.
    many = labels("ODF-3-12", "BBU-1", "X1", "X2", "X3", "X4", "X5")
    assert score("summary.text_bbu", bbu(many), ref=ref) == pytest.approx(0.7)
    assert score("summary.text_bbu", bbu(labels(*[f"T{i}" for i in range(40)])), ref=ref) == -1.0
    no_text = {"dataset": "BBU", "统计": []}
    # No reference text: nothing to recall, and 4 texts beyond (0 + 2) cost 0.2.
    assert score("summary.text_bbu", bbu(labels("A", "B", "C", "D")), ref=no_text) == pytest.approx(-0.2)
    assert score("summary.text_bbu", bbu(no_text), ref=no_text) == 0.0
    counts = {"dataset": "BBU", "统计": [{"类别": "标签", "文本": {"A": 3}}]}
    assert score("summary.text_bbu", bbu(labels("A")), ref=counts) == pytest.approx(1 / 3)
    assert rru_score("summary.text_bbu", rru(labels("A")), ref=labels("A")) == 0.0


# --- notes --------------------------------------------------------------------------


def notes(*items, extra=None):
    return {"dataset": "BBU", "统计": [], "备注": list(items), **(extra or {})}


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        (notes("无法判断品牌"), notes("无法判断品牌"), 1.0),
        (notes(" 无法 判断品牌 "), notes("无法判断品牌"), 1.0),
        (notes("（备注）：a，b"), notes("(备注):A,B"), 1.0),
        (notes("x"), notes("x", "y"), 0.5),
        (notes(), notes("x"), 0.0),
        (notes("x"), notes(), -1.0),
        (notes("x"), notes(" ", ""), -1.0),
        (notes(), notes(), 0.0),
        ({"dataset": "BBU", "统计": []}, notes(), 0.0),
        # "Both objects", not "both domain-valid": a stray 分组统计 keeps the score.
        (notes("x", extra={"分组统计": {"1": 1}}), notes("x"), 1.0),
    ],
)
def test_notes_bbu(pred, ref, expected):
    assert score("summary.notes_bbu", bbu(pred), ref=ref) == pytest.approx(expected)


def test_notes_bbu_is_bbu_only():
    assert rru_score("summary.notes_bbu", rru(notes("x")), ref=notes()) == 0.0


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        (notes("a"), notes("b"), 1.0),
        (notes(), notes("b"), 0.0),
        (notes(" "), notes("b"), 0.0),
        ({"统计": []}, notes("b"), 0.0),
        (notes("a"), notes(), 0.0),
        (notes("a"), notes(" \t"), 0.0),
        (notes("a"), {"备注": "not a list"}, 0.0),
        (notes("a", extra={"分组统计": {}}), notes("b"), 1.0),
    ],
)
def test_notes_presence(pred, ref, expected):
    assert score("summary.notes_presence", bbu(pred), ref=ref) == expected


def test_notes_presence_needs_bbu_and_a_prediction():
    assert rru_score("summary.notes_presence", rru(notes("a")), ref=notes("b")) == 0.0
    assert score("summary.notes_presence", bbu("{bad"), ref=notes("b")) == 0.0


# --- group_stats_presence ---------------------------------------------------------


@pytest.mark.parametrize(
    "pred_groups, ref_groups, expected",
    [
        ({"1": 1}, {"1": 2}, 1.0),
        ({"9": 0}, {"1": 2}, 1.0),  # presence only
        ({}, {"1": 2}, 0.0),
        ({" ": 1}, {"1": 2}, 0.0),
        (None, {"1": 2}, 0.0),
        ({"1": 1}, {}, 0.0),
        ({"1": 1}, {"  ": 1}, 0.0),
        ({"1": 1}, ["1"], 0.0),
    ],
)
def test_group_stats_presence(pred_groups, ref_groups, expected):
    pred = {"dataset": "RRU", "统计": [], **({} if pred_groups is None else {"分组统计": pred_groups})}
    ref = {"dataset": "RRU", "统计": [], "分组统计": ref_groups}
    assert rru_score("summary.group_stats_presence", rru(pred), ref=ref) == expected


def test_group_stats_presence_is_rru_only():
    obj = {"dataset": "BBU", "分组统计": {"1": 1}}
    assert score("summary.group_stats_presence", bbu(obj), ref=obj) == 0.0


# --- calling convention -------------------------------------------------------------


def test_batch_order_and_length():
    completions = [bbu(BBU_REF), "junk", None, rru(RRU_REF)]
    metadata = [meta(), meta(), meta(), meta("RRU", ref=RRU_REF)]
    assert get_reward("summary.header")(completions, metadata=metadata) == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "metadata",
    [None, [], [None], "text", 5, [{"domain": 3, "irrelevant": "yes", "summary_ref": 7}], [["BBU"]]],
)
def test_odd_metadata_reads_as_defaults(metadata):
    # No domain, not irrelevant, no reference.
    reward = get_reward("summary.strict")
    assert reward([bbu(BBU_REF)], metadata=metadata) == [0.0]
    assert get_reward("summary.parse")([bbu(BBU_REF)], metadata=metadata) == [0.0]
    assert get_reward("summary.content_f1")([bbu(BBU_REF)], metadata=metadata) == [0.0]


def test_metadata_as_json_text_and_short_column():
    row = json.dumps(meta())
    values = get_reward("summary.header")([bbu(BBU_REF), bbu(BBU_REF)], metadata=[row])
    assert values == [1.0, 0.0]


def test_irrelevant_flag_accepts_only_true_values():
    for flag, irrelevant in [(True, True), (1, True), (1.0, True), ("true", False), ("false", False), (None, False)]:
        value = get_reward("summary.format")(["无关图片"], metadata=[{"domain": "BBU", "irrelevant": flag}])
        assert value == [1.0 if irrelevant else 0.0], flag


def test_unknown_keyword_arguments_are_ignored():
    reward = get_reward("summary.format")
    assert reward([bbu(BBU_REF)], metadata=[meta()], images=[["x.png"]], solution=["s"], trainer_state=object()) == [
        1.0
    ]
    assert reward(completions=[bbu(BBU_REF)], metadata=[meta()]) == [1.0]
    assert reward([]) == []


# --- parse once, bounded cache, no stale values ----------------------------------


def _stack_batch():
    """A GRPO-like batch: groups of 4 completions sharing a prompt's metadata."""
    completions, metadata = [], []
    refs = [BBU_REF, {**BBU_REF, "objects_total": 7}, {**BBU_REF, "备注": ["别的"]}]
    for i, ref in enumerate(refs):
        group = [
            bbu(ref),  # a verbatim copy of the reference
            bbu({**ref, "objects_total": i + 10}),
            bbu({**ref, "objects_total": i + 10}),  # a repeat within the group
            bbu(dumps(ref)[:-3]),  # broken JSON
        ]
        completions += group
        metadata += [meta(ref=ref) for _ in group]
    completions += ["无关图片", bbu(RRU_REF, header=RRU_HEADER)]
    metadata += [meta(irrelevant=True, ref="无关图片"), meta("RRU", ref=RRU_REF)]
    return completions, metadata


def _fresh_copies(completions, metadata):
    # New list and new str objects every call, as a trainer might pass them.
    return [(c + ".")[:-1] for c in completions], [dict(m) for m in metadata]


def test_stack_parses_each_completion_once(monkeypatch):
    from bbuqc.config.reward_sets import reward_set
    from bbuqc.rewards.summary import context

    calls = {"strict": [], "plain": [], "facts": [], "contexts": 0}
    strict_parse, plain_parse, extract = parsing.loads_with_duplicates, parsing.loads, F.extract_facts
    init = context.SummaryContext.__init__

    def counting_context(self, *args):
        calls["contexts"] += 1
        init(self, *args)

    monkeypatch.setattr(parsing, "loads_with_duplicates", lambda t: calls["strict"].append(t) or strict_parse(t))
    monkeypatch.setattr(parsing, "loads", lambda t: calls["plain"].append(t) or plain_parse(t))
    monkeypatch.setattr(F, "extract_facts", lambda o: calls["facts"].append(id(o)) or extract(o))
    monkeypatch.setattr(context.SummaryContext, "__init__", counting_context)

    completions, metadata = _stack_batch()
    first = {}
    for rid in reward_set("summary_full"):
        fresh_completions, fresh_metadata = _fresh_copies(completions, metadata)
        first[rid] = get_reward(rid)(fresh_completions, metadata=fresh_metadata)
    assert calls["strict"] and calls["plain"] and calls["facts"]  # the counters are live
    distinct_samples = len({(c, m["summary_ref"], m["domain"], m["irrelevant"]) for c, m in zip(completions, metadata)})
    assert calls["contexts"] == distinct_samples
    # Each distinct strict line is parsed once; a verbatim copy of its
    # reference shares the reference's parse instead.
    assert len(calls["strict"]) == len(set(calls["strict"]))
    assert len(calls["plain"]) == len(set(calls["plain"]))  # references: once each
    assert len(calls["facts"]) == len(set(calls["facts"]))

    # The trainer calls again with new lists of new (equal) objects: no new work.
    before = {key: (len(v) if isinstance(v, list) else v) for key, v in calls.items()}
    for rid in reward_set("summary_full"):
        fresh_completions, fresh_metadata = _fresh_copies(completions, metadata)
        assert get_reward(rid)(fresh_completions, metadata=fresh_metadata) == first[rid]
    # Reordered rows miss the whole-batch snapshot but hit the per-sample cache.
    for rid in reward_set("summary_full"):
        values = get_reward(rid)(completions[::-1], metadata=metadata[::-1])
        assert values == first[rid][::-1]
    after = {key: (len(v) if isinstance(v, list) else v) for key, v in calls.items()}
    assert after == before


def test_cache_is_bounded_and_still_correct():
    from bbuqc.rewards.summary import context

    n = context.CACHE_SIZE + 100  # more distinct samples than the caches hold
    completions = [bbu({**BBU_REF, "objects_total": k}) for k in range(n)]
    metadata = [meta(ref={**BBU_REF, "objects_total": k}) for k in range(n)]
    reward = get_reward("summary.objects_total")
    assert reward(completions, metadata=metadata) == [1.0] * n
    sizes = context.cache_sizes()
    assert sizes["contexts"] == sizes["references"] == context.CACHE_SIZE
    shifted = [meta(ref={**BBU_REF, "objects_total": k + 1}) for k in range(n)]
    for start in (0, n // 2, n - 10):  # evicted entries are rebuilt, not stale
        assert reward(completions[start:], metadata=shifted[start:]) == [0.5] * (n - start)
    assert context.cache_sizes()["contexts"] <= context.CACHE_SIZE


def test_metadata_changed_in_place_is_not_served_stale():
    completions = [bbu(BBU_REF)]
    metadata = [meta()]
    reward = get_reward("summary.content_eq")
    assert reward(completions, metadata=metadata) == [1.0]
    metadata[0]["summary_ref"] = dumps({**BBU_REF, "objects_total": 9})
    assert reward(completions, metadata=metadata) == [0.0]
    metadata[0]["summary_ref"] = dumps(BBU_REF)
    metadata[0]["irrelevant"] = True
    assert reward(completions, metadata=metadata) == [0.0]
    assert get_reward("summary.header")(completions, metadata=metadata) == [-1.0]
    metadata[0]["irrelevant"] = 0.0
    assert get_reward("summary.header")(completions, metadata=metadata) == [1.0]


def test_completion_parts_changed_in_place_are_not_served_stale():
    parts = [{"type": "text", "text": bbu(BBU_REF)}]
    completions = [parts]
    reward = get_reward("summary.content_eq")
    assert reward(completions, metadata=[meta()]) == [1.0]
    parts[0]["text"] = bbu({**BBU_REF, "objects_total": 9})
    assert reward(completions, metadata=[meta()]) == [0.0]
