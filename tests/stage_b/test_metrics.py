"""Stage-B metric formulas, checked exactly with a scripted fake model (no torch).

The fake answers each prompt from a table, so every group's votes are chosen by hand:
ties, invalid answers, false passes and false fails, split over two missions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.data.records import StageARecord, write_stage_a_jsonl
from bbuqc.data.rows import verdict_row
from bbuqc.rewards import get_reward
from bbuqc.stage_b.metrics import (
    FALSE_PASS,
    compute_metrics,
    group_stats,
    outcome,
    vote,
    worst_examples,
)
from bbuqc.stage_b.outputs import read_predictions
from bbuqc.stage_b.runner import evaluate

P = "通过\n理由: 图片_1中挡风板安装符合要求"  # a valid 通过
F = "不通过\n理由: 图片_1缺少挡风板"  # a valid 不通过
I1 = "需复核\n理由: 证据不足"  # a third-state word is never a verdict
I2 = "通过\n\n理由: 图片_1符合要求"  # a blank line makes three lines; line 1 still says 通过
I3 = ""  # nothing at all
I4 = "不通过 理由: 缺少挡风板"  # one line

WIND, CABLE = "挡风板安装检查", "RRU线缆"
# (mission, group id, label, the three answers)
TABLE = [
    (WIND, "QC-T-20260101-0001", "pass", [P, P, F]),  # 通过, correct
    (WIND, "QC-T-20260101-0002", "pass", [P, F, I1]),  # three-way tie -> 不通过: a false fail
    (WIND, "QC-T-20260101-0003", "fail", [P, P, I2]),  # 通过: a false pass
    (WIND, "QC-T-20260101-0004", "fail", [I3, I4, F]),  # invalid (business: 不通过)
    (CABLE, "QC-T-20260101-0005", "fail", [F, F, F]),  # correct
    (CABLE, "QC-T-20260101-0006", "pass", [I1, I2, I3]),  # invalid: a false fail
    (CABLE, "QC-T-20260101-0007", "fail", [F, F, P]),  # correct
    (CABLE, "QC-T-20260101-0008", "pass", [P, I4, I1]),  # invalid: a false fail
]


def _record(mission: str, gid: str, label: str) -> StageARecord:
    # each group's summary is distinct, so each prompt is distinct
    summary = json.dumps({"dataset": "X", "objects_total": 1, "备注": [gid]}, ensure_ascii=False)
    return StageARecord(gid, mission, label, [f"{gid}_1.jpg", f"{gid}_2.jpg"], {"图片_1": summary, "图片_2": "无关图片"})


class TableModel:
    """A scripted VerdictModel: the answers of a prompt come from a table keyed by its user message."""

    def __init__(self, answers_by_prompt: dict[str, list[str]], fail_on_call: int | None = None):
        self.answers_by_prompt = answers_by_prompt
        self.fail_on_call = fail_on_call
        self.asked: list[str] = []
        self.calls = 0

    def answer(self, batch_of_messages, n_samples):
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise RuntimeError("scripted crash")
        out = []
        for messages in batch_of_messages:
            prompt = messages[-1]["content"]
            self.asked.append(prompt)
            answers = self.answers_by_prompt[prompt]
            assert len(answers) == n_samples
            out.append(list(answers))
        return out


def make_inputs(folder: Path, table=TABLE) -> tuple[list[Path], dict[str, list[str]]]:
    """Two Stage-A files (one per mission) and the fake model's table."""
    folder.mkdir(parents=True, exist_ok=True)
    by_mission: dict[str, list[StageARecord]] = {}
    answers = {}
    for mission, gid, label, texts in table:
        rec = _record(mission, gid, label)
        by_mission.setdefault(mission, []).append(rec)
        answers[verdict_row(rec)["messages"][-1]["content"]] = texts
    files = []
    for i, recs in enumerate(by_mission.values()):
        path = folder / f"stage_a_{i}.jsonl"
        write_stage_a_jsonl(path, recs)
        files.append(path)
    return files, answers


def compose_cfg(files: list[Path], out_dir: Path, *extra: str):
    cfg = compose("evaluate", [
        f"data.stage_a_jsonl=[{','.join(str(f) for f in files)}]",
        f"evaluate.output_dir={out_dir}",
        "evaluate.samples_per_group=3",
        "evaluate.temperature=0.7",
        "evaluate.batch_size=3",
        "evaluate.progress=false",
        "logger=none",
        *extra,
    ])
    assert problems(cfg, "evaluate") == []
    return cfg


@pytest.fixture
def scripted(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    return files, answers, tmp_path / "out"


# ----------------------------------------------------------------------------- the vote


@pytest.mark.parametrize(
    "answers, verdict, tie, reason",
    [
        ([P], "通过", False, "图片_1中挡风板安装符合要求"),
        ([F], "不通过", False, "图片_1缺少挡风板"),
        ([I1], "invalid", False, None),
        ([P, P, F], "通过", False, "图片_1中挡风板安装符合要求"),
        ([P, F], "不通过", True, "图片_1缺少挡风板"),  # 1-1 tie
        ([P, I1], "不通过", True, None),  # a tie with invalid is 不通过, with no reason to quote
        ([F, I1], "不通过", True, "图片_1缺少挡风板"),
        ([P, F, I1], "不通过", True, "图片_1缺少挡风板"),
        ([I1, I2, P], "invalid", False, None),
        ([I2, I2, P, P], "不通过", True, None),
        ([P, P, I1, I1, F], "不通过", True, "图片_1缺少挡风板"),
    ],
)
def test_majority_vote_tie_is_fail(answers, verdict, tie, reason):
    v = vote(answers)
    assert (v.verdict, v.tie, v.reason) == (verdict, tie, reason)
    assert sum(v.votes.values()) == len(answers)
    assert v.valid == (verdict != "invalid")


def test_vote_counts_each_outcome():
    assert vote([P, I2, I3, F, F]).votes == {"通过": 1, "不通过": 2, "invalid": 2}
    with pytest.raises(ValueError):
        vote([])


def test_outcomes_treat_invalid_as_fail_for_the_business():
    assert outcome("不通过", "通过") == FALSE_PASS
    assert outcome("通过", "invalid") == "false_fail"
    assert outcome("通过", "不通过") == "false_fail"
    assert outcome("不通过", "invalid") == "invalid"
    assert outcome("不通过", "不通过") == outcome("通过", "通过") == "correct"


# ----------------------------------------------------------------------------- the formulas


def test_metrics_of_the_scripted_table_are_exact(scripted):
    files, answers, out = scripted
    model = TableModel(answers)
    metrics = evaluate(compose_cfg(files, out), model=model)
    assert len(model.asked) == len(TABLE) and model.calls == 3  # 8 groups in batches of 3

    o = metrics["overall"]
    assert o["confusion"] == {
        "通过": {"通过": 1, "不通过": 1, "invalid": 2},
        "不通过": {"通过": 1, "不通过": 2, "invalid": 1},
    }
    assert (o["n"], o["n_answers"], o["human_pass"], o["human_fail"]) == (8, 24, 4, 4)
    assert (o["correct"], o["accuracy"]) == (3, 3 / 8)
    assert (o["false_pass"], o["false_pass_rate"], o["false_pass_ok"]) == (1, 1 / 4, False)
    assert (o["false_fail"], o["false_fail_rate"]) == (3, 3 / 4)
    assert (o["invalid_answers"], o["invalid_rate"]) == (9, 9 / 24)
    assert (o["invalid_groups"], o["invalid_group_rate"], o["ties"]) == (3, 3 / 8, 1)
    assert o["rewards"]["verdict.format"] == pytest.approx(15 / 24)
    # line 1 equals the label: I2 under a 通过 label counts although the answer is invalid
    assert o["rewards"]["verdict.label"] == pytest.approx(11 / 24)

    assert list(metrics["per_mission"]) == ["bbu_wind", "rru_cable"]
    wind, cable = metrics["per_mission"]["bbu_wind"], metrics["per_mission"]["rru_cable"]
    assert wind["mission"] == WIND and cable["mission"] == CABLE
    assert wind["confusion"] == {"通过": {"通过": 1, "不通过": 1, "invalid": 0}, "不通过": {"通过": 1, "不通过": 0, "invalid": 1}}
    assert (wind["n"], wind["correct"], wind["accuracy"]) == (4, 1, 1 / 4)
    assert (wind["false_pass_rate"], wind["false_pass_ok"], wind["false_fail_rate"]) == (1 / 2, False, 1 / 2)
    assert (wind["invalid_answers"], wind["invalid_rate"], wind["invalid_groups"], wind["ties"]) == (4, 4 / 12, 1, 1)
    assert wind["rewards"]["verdict.format"] == pytest.approx(8 / 12)
    assert wind["rewards"]["verdict.label"] == pytest.approx(4 / 12)
    assert (cable["n"], cable["correct"], cable["accuracy"]) == (4, 2, 2 / 4)
    assert (cable["false_pass_rate"], cable["false_pass_ok"], cable["false_fail_rate"]) == (0.0, True, 1.0)
    assert (cable["invalid_answers"], cable["invalid_rate"], cable["invalid_groups"], cable["ties"]) == (5, 5 / 12, 2, 0)
    assert cable["rewards"]["verdict.format"] == pytest.approx(7 / 12)
    assert cable["rewards"]["verdict.label"] == pytest.approx(7 / 12)

    # every reward mean is the mean over all answers of what the registry's reward gives
    for rid in ("verdict.format", "verdict.label", "verdict.consistency"):
        values = []
        for mission, gid, label, texts in TABLE:
            row = verdict_row(_record(mission, gid, label))
            values += get_reward(rid)(texts, group_label=[row["group_label"]] * 3, summaries=[row["summaries"]] * 3)
        assert o["rewards"][rid] == pytest.approx(sum(values) / len(values))


def test_predictions_file_holds_votes_verdicts_and_reasons(scripted):
    files, answers, out = scripted
    evaluate(compose_cfg(files, out), model=TableModel(answers))
    records = read_predictions(out / "predictions.jsonl")
    assert [r["group_id"] for r in records] == [gid for _, gid, _, _ in TABLE]
    by_id = {r["group_id"]: r for r in records}
    g1, g2, g3, g4 = (by_id[f"QC-T-20260101-000{i}"] for i in range(1, 5))
    assert (g1["verdict"], g1["reason"], g1["valid"], g1["label"]) == ("通过", "图片_1中挡风板安装符合要求", True, "通过")
    assert (g2["verdict"], g2["tie"], g2["reason"]) == ("不通过", True, "图片_1缺少挡风板")
    assert g2["votes"] == {"通过": 1, "不通过": 1, "invalid": 1}
    assert (g3["verdict"], g3["label"]) == ("通过", "不通过")
    assert (g4["verdict"], g4["valid"], g4["reason"]) == ("invalid", False, None)
    assert g4["answers"] == [I3, I4, F]  # raw texts, as the model wrote them
    for r in records:
        assert r["source"] in {str(f.resolve()) for f in files}
        assert set(r["rewards"]) >= {"verdict.format", "verdict.label", "verdict.consistency"}
        assert all(len(v) == 3 for v in r["rewards"].values())


def test_metrics_json_is_recomputed_from_predictions(scripted):
    files, answers, out = scripted
    returned = evaluate(compose_cfg(files, out), model=TableModel(answers))
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(returned, ensure_ascii=False))
    recomputed = compute_metrics(read_predictions(out / "predictions.jsonl"))
    for key in ("overall", "per_mission", "false_pass_limit"):
        assert on_disk[key] == json.loads(json.dumps(recomputed[key], ensure_ascii=False))
    assert on_disk["settings"]["samples_per_group"] == 3


def test_report_shows_the_tables_and_the_raw_invalid_answers(scripted):
    files, answers, out = scripted
    evaluate(compose_cfg(files, out), model=TableModel(answers))
    report = (out / "report.md").read_text()
    for heading in ("## Overall", "## Per mission", "## Confusion matrix", "## Worst examples", "## Invalid answers"):
        assert heading in report
    assert "| accuracy (verdict = human label) | 37.5% (3/8; 95% CI 13.7%–69.4%) |" in report
    assert "25.0% (1/4; 95% CI 4.6%–69.9%) — limit < 5.0%: **over the limit**" in report
    assert "| 通过 | 1 | 1 | 2 | 4 |" in report and "| 不通过 | 1 | 2 | 1 | 4 |" in report
    assert "9 of 24 answers break the two-line protocol" in report
    assert json.dumps(I1, ensure_ascii=False) in report  # raw, JSON-escaped
    assert json.dumps(I4, ensure_ascii=False) in report
    worst = report.split("## Worst examples")[1].split("## Invalid answers")[0]
    first_row = [line for line in worst.splitlines() if line.startswith("| 1 |")][0]
    assert "false_pass" in first_row and "QC-T-20260101-0003" in first_row
    assert "QC-T-20260101-0001" not in worst and "QC-T-20260101-0005" not in worst  # correct groups


def test_worst_examples_order():
    recs = [
        {"group_id": "a", "label": "通过", "answers": [I1]},  # false fail (invalid)
        {"group_id": "b", "label": "不通过", "answers": [P, P, F]},  # false pass, 2 of 3 wrong
        {"group_id": "c", "label": "不通过", "answers": [I1]},  # invalid on a human fail
        {"group_id": "d", "label": "不通过", "answers": [P]},  # false pass, all wrong
        {"group_id": "e", "label": "通过", "answers": [P]},  # correct
    ]
    assert [(kind, r["group_id"]) for kind, r, _ in worst_examples(recs)] == [
        ("false_pass", "d"), ("false_pass", "b"), ("false_fail", "a"), ("invalid", "c"),
    ]


def test_empty_denominators_are_none():
    stats = group_stats([{"label": "通过", "answers": [P]}])
    assert stats["false_pass_rate"] is None and stats["false_pass_ok"] is None
    assert stats["false_fail_rate"] == 0.0 and stats["accuracy"] == 1.0
    assert stats["rewards"] == {}
    with pytest.raises(ValueError, match="label"):
        compute_metrics([{"group_id": "x", "label": "pass", "answers": [P]}])


@pytest.mark.parametrize("k, n, interval", [
    (2, 42, (0.0132, 0.1579)),  # the demo's false-pass: 0.048 pins down little
    (0, 10, (0.0, 0.2775)),  # no failure seen is not a rate of 0
    (10, 10, (0.7225, 1.0)),
    (3, 8, (0.1368, 0.6943)),
    (50, 100, (0.4038, 0.5962)),
])
def test_wilson_intervals_against_known_values(k, n, interval):
    from bbuqc.stage_b.metrics import wilson

    lo, hi = wilson(k, n)
    assert (round(lo, 4), round(hi, 4)) == interval
    assert wilson(0, 0) is None
