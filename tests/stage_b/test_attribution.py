"""Error attribution (issue 28.5): a wrong verdict comes from Stage-A when the mission's rules on
the group's summaries already give the wrong label, from the verdict model when they give the
human label, and is unknown when the rules cannot judge the group. Scripted model, no torch."""

from __future__ import annotations

import json

import pytest

# pytest puts this folder on sys.path (rootdir-relative imports, no __init__.py)
from test_metrics import I1, F, P, TableModel, compose_cfg

from bbuqc.data.records import StageARecord, write_stage_a_jsonl
from bbuqc.data.rows import verdict_row
from bbuqc.missions.rules import judge_group, rules_label
from bbuqc.stage_b.metrics import attribution, compute_metrics, rules_verdict
from bbuqc.stage_b.outputs import read_predictions
from bbuqc.stage_b.runner import EvaluationInputError, evaluate, flat_metrics

INSTALL, CABLE = "BBU安装方式检查（正装）", "RRU线缆"


def _summary(*entries: dict, note: str = "") -> str:
    obj = {"dataset": "BBU", "objects_total": len(entries), "统计": list(entries)}
    if note:
        obj["备注"] = [note]
    return json.dumps(obj, ensure_ascii=False)


BBU = {"类别": "BBU设备", "品牌": {"华为": 1}, "可见性": {"完整": 1}}
SCREW_OK = {"类别": "BBU安装螺丝", "符合性": {"符合": 1}}
SCREW_BAD = {"类别": "BBU安装螺丝", "符合性": {"不符合": 1}}
FIBRE_OK = {"类别": "尾纤", "套管保护": {"有套管": 1}}
FIBRE_BAD = {"类别": "尾纤", "套管保护": {"无套管": 1}}

# (mission, group id, human label, per-image summaries, the model's three answers,
#  expected rules verdict, expected error source)
GROUPS = [
    # correct: the rules and the model both give the human label
    (INSTALL, "QC-A-20260101-0001", "pass", [_summary(BBU), _summary(SCREW_OK)], [P, P, F], "通过", None),
    # Stage-A error: the human failed the screws, the summaries say they conform, the model follows them
    (INSTALL, "QC-A-20260101-0002", "fail", [_summary(BBU, SCREW_OK), "无关图片"], [P, P, P], "通过", "stage_a"),
    # verdict-model error: the summaries show a bad screw, the model passes anyway
    (INSTALL, "QC-A-20260101-0003", "fail", [_summary(BBU, SCREW_BAD)], [P, F, P], "不通过", "verdict_model"),
    # unjudgeable: one summary is free text, not a JSON object
    (INSTALL, "QC-A-20260101-0004", "pass", [_summary(BBU, SCREW_OK), "BBU设备安装正常"], [F, F, F], None, "unknown"),
    # correct against the rules: the summaries miss the BBU (rules: 不通过), the model passes as the human did
    (INSTALL, "QC-A-20260101-0005", "pass", [_summary(SCREW_OK)], [P, P, P], "不通过", None),
    # verdict-model error, invalid verdict on a human-failed group: the summaries support 不通过
    (CABLE, "QC-A-20260101-0006", "fail", [_summary(FIBRE_BAD, note="x")], [I1, I1, F], "不通过", "verdict_model"),
    (CABLE, "QC-A-20260101-0007", "pass", [_summary(FIBRE_OK), "无关图片"], [P, P, P], "通过", None),
]


def _stage_a(mission, gid, label, summaries) -> StageARecord:
    images = [f"{gid}_{i}.jpg" for i in range(1, len(summaries) + 1)]
    per_image = {f"图片_{i}": s for i, s in enumerate(summaries, 1)}
    return StageARecord(gid, mission, label, images, per_image)


@pytest.fixture
def run(tmp_path, session_cache):
    files, answers, by_mission = [], {}, {}
    for mission, gid, label, summaries, texts, *_ in GROUPS:
        rec = _stage_a(mission, gid, label, summaries)
        by_mission.setdefault(mission, []).append(rec)
        answers[verdict_row(rec)["messages"][-1]["content"]] = texts
    for i, recs in enumerate(by_mission.values()):
        files.append(tmp_path / "in" / f"stage_a_{i}.jsonl")
        files[-1].parent.mkdir(exist_ok=True)
        write_stage_a_jsonl(files[-1], recs)
    out = tmp_path / "out"
    metrics = evaluate(compose_cfg(files, out), model=TableModel(answers))
    return files, answers, out, metrics


def test_the_hand_made_groups_are_what_their_comments_say():
    for mission, gid, _label, summaries, _, rules, _ in GROUPS:
        got, why = rules_label(mission, dict(zip((f"图片_{i}" for i in range(1, 9)), summaries)))
        assert {None: None, "pass": "通过", "fail": "不通过"}[got] == rules, (gid, why)


def test_each_group_gets_its_error_source(run):
    _, _, out, _ = run
    records = read_predictions(out / "predictions.jsonl")
    assert [r["group_id"] for r in records] == [g[1] for g in GROUPS]
    for r, (_, gid, _, summaries, _, rules, source) in zip(records, GROUPS):
        assert (r["rules_verdict"], r["error_source"]) == (rules, source), gid
        assert attribution(r) == (rules, source)
        assert list(r["summaries"].values()) == summaries  # what the verdict model saw


def test_totals_and_the_rules_reference(run, capsys):
    _, _, out, metrics = run
    a = metrics["overall"]["attribution"]
    assert metrics["overall"]["correct"] == 3
    assert (a["wrong"], a["stage_a"], a["verdict_model"], a["unknown"]) == (4, 1, 2, 1)
    assert (a["stage_a_share"], a["verdict_model_share"], a["unknown_share"]) == (1 / 4, 2 / 4, 1 / 4)
    assert a["correct_against_rules"] == 1
    assert a["rules"] == {
        "judged": 6, "unjudgeable": 1, "human_pass": 3, "human_fail": 3,
        "correct": 4, "accuracy": 4 / 6,
        "false_pass": 1, "false_pass_rate": 1 / 3, "false_fail": 1, "false_fail_rate": 1 / 3,
        "model_correct": 3, "model_accuracy": 3 / 6,
    }
    install, cable = metrics["per_mission"]["bbu_install"]["attribution"], metrics["per_mission"]["rru_cable"]["attribution"]
    assert (install["wrong"], install["stage_a"], install["verdict_model"], install["unknown"]) == (3, 1, 1, 1)
    assert (install["rules"]["judged"], install["rules"]["correct"], install["rules"]["false_pass"]) == (4, 2, 1)
    assert (cable["wrong"], cable["stage_a"], cable["verdict_model"], cable["unknown"]) == (1, 0, 1, 0)
    assert (cable["verdict_model_share"], cable["rules"]["accuracy"], cable["rules"]["unjudgeable"]) == (1.0, 1.0, 0)
    # metrics.json carries it, and recomputing from predictions.jsonl gives the same block
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["overall"]["attribution"] == json.loads(json.dumps(a))
    assert compute_metrics(read_predictions(out / "predictions.jsonl"))["overall"]["attribution"] == a
    # W&B keys (flat_metrics is what the runner logs)
    flat = flat_metrics(metrics)
    assert flat["evaluate/overall/attribution/stage_a"] == 1
    assert flat["evaluate/overall/attribution/verdict_model_share"] == 0.5
    assert flat["evaluate/overall/attribution/rules/accuracy"] == 4 / 6
    assert flat["evaluate/rru_cable/attribution/rules/false_pass_rate"] == 0.0
    assert flat["evaluate/overall/attribution/false_pass_by_kind/stated/false_pass"] == 1
    assert "evaluate/overall/attribution/false_pass_by_kind/missing/false_pass_rate" not in flat  # None: no group


def test_report_shows_the_attribution_section(run):
    _, _, out, _ = run
    report = (out / "report.md").read_text()
    section = report.split("## Error attribution")[1].split("## Worst examples")[0]
    assert ("Rules on these summaries: accuracy 66.7% (4/6; 95% CI 30.0%–90.3%), false-pass 33.3% (1/3; 95% CI "
            "6.1%–79.2%), false-fail 33.3% (1/3; 95% CI 6.1%–79.2%); the model on the same 6 groups: 50.0% (3/6; 95% CI "
            "18.8%–81.2%); 1 group(s) the rules cannot judge are left out.") in section
    assert "| Stage-A (the summaries do not support the human label) | 1 | 25.0% |" in section
    assert "| verdict model (the summaries support it; the model missed it) | 2 | 50.0% |" in section
    assert "| unknown (the rules cannot judge the group) | 1 | 25.0% |" in section
    assert "| total | 4 | 100.0% |" in section
    assert "| bbu_install | 3 | 1 | 1 | 1 | 50.0% (2/4; 95% CI 15.0%–85.0%) | 50.0% (1/2; 95% CI 9.5%–90.5%) |" in section
    assert "| rru_cable | 1 | 0 | 1 | 0 | 100.0% (2/2; 95% CI 34.2%–100.0%) | 0.0% (0/1; 95% CI 0.0%–79.3%) |" in section
    assert "by what fails: a required item no image shows — (0/0); a failure a summary states 50.0% (1/2;" in section
    worst = report.split("## Worst examples")[1]
    row = next(line for line in worst.splitlines() if "QC-A-20260101-0002" in line)
    assert "| 通过 | stage_a |" in row  # the rules' verdict and the source


def test_old_predictions_without_the_new_fields_resume(run, caplog):
    """A predictions.jsonl written before attribution (no summaries, rules_verdict, error_source)
    resumes; its records take their summaries from the inputs, so the numbers are the same."""
    files, answers, out, metrics = run
    path = out / "predictions.jsonl"
    old = []
    for r in read_predictions(path):
        for key in ("summaries", "rules_verdict", "error_source"):
            del r[key]
        old.append(r)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in old))
    # alone, the old records cannot be judged: every wrong verdict is unknown
    alone = compute_metrics(old)["overall"]["attribution"]
    assert (alone["unknown"], alone["stage_a"], alone["verdict_model"], alone["rules"]["judged"]) == (4, 0, 0, 0)
    model = TableModel(answers)
    again = evaluate(compose_cfg(files, out), model=model)
    assert model.asked == []  # nothing answered again
    assert again["overall"] == metrics["overall"] and again["per_mission"] == metrics["per_mission"]
    assert path.read_text() == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in old)  # not rewritten


def test_stored_fields_are_not_trusted():
    gid_row = GROUPS[1]
    rec = {"group_id": gid_row[1], "mission": INSTALL, "mission_id": "bbu_install", "label": "不通过",
           "answers": [P], "summaries": {"图片_1": gid_row[3][0], "图片_2": "无关图片"},
           "rules_verdict": "不通过", "error_source": "verdict_model"}  # stale or edited by hand
    assert attribution(rec) == ("通过", "stage_a")
    assert compute_metrics([rec])["overall"]["attribution"]["stage_a"] == 1


def test_groups_the_rules_cannot_judge():
    good = _summary(BBU, SCREW_OK)
    assert rules_label("bbu_install", {"图片_1": good}) == judge_group("bbu_install", {"图片_1": good})
    assert rules_label("bbu_install", {"图片_1": "```json\n" + good + "\n```"})[0] == "pass"  # header/fences as judge_group
    for summaries, why in [
        ({"图片_1": good, "图片_2": "BBU设备安装正常"}, "图片_2: summary is not JSON"),
        ({"图片_1": good, "图片_2": "[1, 2]"}, "图片_2: summary is not a JSON object"),
        ({"图片_1": ""}, "图片_1: summary is empty"),
        ({}, "no summaries"),
        (None, "no summaries"),
    ]:
        assert rules_label("bbu_install", summaries) == (None, why)
    assert rules_label("不存在的任务", {"图片_1": good}) == (None, "unknown mission '不存在的任务'")
    # a record without summaries, or of a mission the catalogue does not know: unknown
    assert rules_verdict({"mission": "bbu_install", "label": "通过", "answers": [F]}) is None
    rec = {"mission": "x", "mission_id": "other", "label": "通过", "answers": [F], "summaries": {"图片_1": good}}
    assert attribution(rec) == (None, "unknown")
    assert attribution({**rec, "answers": [P]}) == (None, None)  # correct: no error to attribute


def test_a_bad_summaries_field_in_predictions_is_one_error(run):
    files, answers, out, _ = run
    path = out / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["summaries"] = ["not", "an", "object"]
    path.write_text(lines[0] + json.dumps(bad, ensure_ascii=False) + "\n" + "".join(lines[2:]))
    with pytest.raises(EvaluationInputError, match=rf"^{path}:2: summaries: expected an object"):
        evaluate(compose_cfg(files, out), model=TableModel(answers))


RRU = {"类别": "RRU设备", "品牌": {"华为": 1}, "可见性": {"完整": 1}}
FASTENER = {"类别": "紧固件", "安装状态": {"合格": 1}}


def _at_point(point: str, *entries: dict) -> str:
    obj = {"dataset": "RRU", "objects_total": len(entries), "统计": list(entries), "分组统计": {point: len(entries)}}
    return json.dumps(obj, ensure_ascii=False)


@pytest.mark.parametrize("mission, summaries, kinds", [
    ("bbu_install", [_summary(BBU, SCREW_OK)], set()),
    ("bbu_install", [_summary(SCREW_OK)], {"missing"}),  # no image shows the BBU
    ("bbu_install", [_summary(BBU, SCREW_BAD)], {"stated"}),  # a summary says a screw does not conform
    ("bbu_install", [_summary(SCREW_BAD)], {"missing", "stated"}),
    # per install point: point 2 has its fastener but no RRU
    ("rru_install", [_at_point("1", RRU, FASTENER), _at_point("2", FASTENER)], {"missing"}),
    ("rru_install", [_at_point("1", RRU, FASTENER), _at_point("2", RRU, FASTENER)], set()),
    # the BBU is seen, but no image tells whether a wind shield is needed
    ("bbu_wind", [_summary(BBU)], {"missing"}),
])
def test_the_rules_name_what_kind_of_failure_they_found(mission, summaries, kinds):
    from bbuqc.missions.rules import assess_group

    label, reason, got = assess_group(mission, summaries)
    assert got == kinds and label == ("fail" if kinds else "pass"), reason
    assert judge_group(mission, summaries) == (label, reason)


def test_false_passes_are_counted_by_what_the_summaries_show():
    """On groups a human fails and the rules fail too, the model's false passes by kind: what the model
    misses (an absence, a stated failure) is what to train against."""
    from bbuqc.stage_b.outputs import false_pass_kinds_line

    def rec(label, summaries, answer):
        return {"mission_id": "bbu_install", "mission": INSTALL, "label": label, "answers": [answer],
                "summaries": {f"图片_{i}": s for i, s in enumerate(summaries, 1)}}

    missing, stated, both = [_summary(SCREW_OK)], [_summary(BBU, SCREW_BAD)], [_summary(SCREW_BAD)]
    records = [
        rec("不通过", missing, P), rec("不通过", missing, P), rec("不通过", missing, F),
        rec("不通过", stated, F), rec("不通过", stated, I1),  # invalid on a failed group: not a false pass
        rec("不通过", both, P),
        rec("不通过", [_summary(BBU, SCREW_OK)], P),  # the rules pass it: Stage-A's error, not counted here
        rec("通过", missing, P),  # a human pass is no false pass
    ]
    a = compute_metrics(records)["overall"]["attribution"]
    assert a["false_pass_by_kind"] == {
        "missing": {"groups": 3, "false_pass": 2, "false_pass_rate": 2 / 3},
        "stated": {"groups": 2, "false_pass": 0, "false_pass_rate": 0.0},
        "both": {"groups": 1, "false_pass": 1, "false_pass_rate": 1.0},
    }
    assert false_pass_kinds_line(a) == (
        "The model's false passes where the summaries show the failure, by what fails: a required item no image "
        "shows 66.7% (2/3; 95% CI 20.8%–93.9%); a failure a summary states 0.0% (0/2; 95% CI 0.0%–65.8%); "
        "both 100.0% (1/1; 95% CI 20.7%–100.0%).")
