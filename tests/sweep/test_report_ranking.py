"""The sweep report ranks by the rule that chose each job's checkpoint (train.select_constraint), shows every
rate with its Wilson 95% interval, and carries the runs' end-of-run warnings (run_summary.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from bbuqc.report import main as report_main
from bbuqc.stage_b.metrics import wilson
from bbuqc.sweep.comparison import REPORT_CSV, REPORT_MD
from bbuqc.training.selection import BestTracker, parse_constraint

RULE = "val/false_pass_rate<=0.05"
FAIL_GROUPS = 42  # the validation set's human-failed groups: the false-pass rate's denominator
# job -> (accuracy, false passes of the 42): job 0 is accurate but passes too much, jobs 1 and 2 meet the rule,
# job 3 is the most accurate and the closest of those that miss it
JOBS = {0: (0.90, 8), 1: (0.80, 2), 2: (0.70, 0), 3: (0.95, 3)}


def _figures(acc: float, false_passes: int) -> dict:
    figures = {"val/accuracy": acc, "val/false_pass_rate": false_passes / FAIL_GROUPS, "val/n": 100.0}
    lo, hi = wilson(false_passes, FAIL_GROUPS)
    figures["val/false_pass_rate_lo"], figures["val/false_pass_rate_hi"] = lo, hi
    lo, hi = wilson(round(acc * 100), 100)
    figures["val/accuracy_lo"], figures["val/accuracy_hi"] = lo, hi
    return figures


def make_sweep(root: Path, jobs: dict[int, tuple[float, int]], constraint: str | None = RULE,
               warnings: dict[int, list[str]] | None = None) -> Path:
    """Job folders as bbuqc-train leaves them: .hydra/, validation.jsonl, best_checkpoint.json (with the
    constraint), run_summary.json, the sweep callback's job_status.json."""
    for num, (acc, false_passes) in jobs.items():
        overrides = [f"train.learning_rate=1e-{num + 3}"]
        job = root / f"{num}_{overrides[0]}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        config = {"task": {"name": "verdict"},
                  "train": {"select_by": None, "objectives": [], "select_constraint": constraint}}
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        figures = _figures(acc, false_passes)
        (job / "validation.jsonl").write_text(json.dumps({"step": 2, **figures}) + "\n")
        (job / "checkpoint-2").mkdir()
        best = {"step": 2, "metric": "val/accuracy", "value": acc, "checkpoint": str(job / "checkpoint-2")}
        if constraint:
            rule = parse_constraint(constraint)
            value = figures[rule.metric]
            best["constraint"] = {"expr": constraint, "value": value, "met": rule.met(value)}
        (job / "best_checkpoint.json").write_text(json.dumps(best))
        (job / "run_summary.json").write_text(json.dumps(
            {"run_dir": str(job), "steps": 2, "best_checkpoint": best, "warnings": (warnings or {}).get(num, [])}))
        (job / "logging.jsonl").write_text(json.dumps({"loss": 1.0, "global_step/max_steps": "2/2"}) + "\n"
                                           + json.dumps({"train_runtime": 1.0, "global_step/max_steps": "2/2"}) + "\n")
        (job / "job_status.json").write_text(json.dumps({"status": "completed", "num": num, "overrides": overrides,
                                                         "return": acc, "error": None}))
    return root


def _table(root: Path) -> list[dict]:
    return list(csv.DictReader((root / REPORT_CSV).open()))


def _ranked_lines(md: str) -> list[str]:
    section = md.split("## Ranked by the held-out objective", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| rank")]


def test_the_jobs_that_meet_the_constraint_come_first_as_in_checkpoint_selection(tmp_path):
    root = make_sweep(tmp_path / "sweep", JOBS)
    assert report_main([str(root)]) == 0
    table = _table(root)
    # meeting val/false_pass_rate<=0.05: 1 (0.80), 2 (0.70); then the closest: 3 (0.071), 0 (0.19)
    assert [r["job"] for r in table] == ["1", "2", "3", "0"]
    assert [r["meets_constraint"] for r in table] == ["True", "True", "False", "False"]
    assert [r["rank"] for r in table] == ["1", "2", "3", "4"]

    # the rule is the one that picks a run's best checkpoint: the same candidates as one run's validations
    tracker = BestTracker("val/accuracy", True, parse_constraint(RULE))
    for num, (acc, false_passes) in JOBS.items():
        tracker.update(num, acc, _figures(acc, false_passes))
    assert tracker.best_step == int(table[0]["job"])

    md = (root / REPORT_MD).read_text()
    assert f"under `{RULE}` (`train.select_constraint`" in md and "the 2 of 4 jobs that meet it first" in md
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert f"meets {RULE}" in header
    assert [line.split("|")[1].strip() + ":" + line.split("|")[2].strip() for line in _ranked_lines(md)] == [
        "1:1", "2:2", "3:3", "4:0"]
    assert "| **no** |" in _ranked_lines(md)[2] and "| yes |" in _ranked_lines(md)[0]
    assert "no job meets" not in md

    # --constraint none ranks by the metric alone; --constraint names another rule
    assert report_main([str(root), "--constraint", "none"]) == 0
    assert [r["job"] for r in _table(root)] == ["3", "0", "1", "2"] and "meets_constraint" not in _table(root)[0]
    assert report_main([str(root), "--constraint", "val/false_pass_rate<=0.1"]) == 0
    assert [r["job"] for r in _table(root)] == ["3", "1", "2", "0"]


def test_when_no_job_meets_the_constraint_the_closest_is_first_with_a_warning(tmp_path):
    root = make_sweep(tmp_path / "sweep", {0: (0.90, 8), 1: (0.95, 3), 2: (0.60, 5)})
    assert report_main([str(root)]) == 0
    assert [r["job"] for r in _table(root)] == ["1", "2", "0"]  # 3/42, 5/42, 8/42: closest first
    md = (root / REPORT_MD).read_text()
    assert f"**Warning: no job meets `{RULE}`**: the first is the closest to it (val/false_pass_rate = 0.07143)" in md


def test_every_rate_is_shown_with_its_wilson_interval(tmp_path):
    root = make_sweep(tmp_path / "sweep", JOBS)
    assert report_main([str(root)]) == 0
    md = (root / REPORT_MD).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert "false_pass_rate_lo" not in header and "accuracy_hi" not in header  # folded into their rate's cell
    first = _ranked_lines(md)[0]  # job 1: 2 of 42 false passes, accuracy 80 of 100
    lo, hi = wilson(2, FAIL_GROUPS)
    assert f"| {2 / 42:.4g} ({lo:.4g}–{hi:.4g}) |" in first
    assert f"{2 / 42:.4g} ({lo:.4g}–{hi:.4g})" == "0.04762 (0.01316–0.1579)"  # the 2 of 42: [0.013, 0.158]
    lo, hi = wilson(80, 100)
    assert f"| **0.8 ({lo:.4g}–{hi:.4g})** |" in first  # the ranking metric, bold, with its interval
    assert "Wilson 95% interval" in md
    row = _table(root)[0]
    assert float(row["val/false_pass_rate_lo"]) == pytest.approx(wilson(2, FAIL_GROUPS)[0])  # the CSV keeps the ends


def test_the_runs_end_of_run_warnings_are_in_the_report(tmp_path):
    warning = ("no learning signal in 100% of the GRPO steps (frac_reward_zero_std >= 0.9: every completion of a "
               "prompt got the same reward, so its advantage and gradient are 0)")
    root = make_sweep(tmp_path / "sweep", JOBS, warnings={3: [warning, "reward verdict.cost raised on 2 rows"]})
    assert report_main([str(root)]) == 0
    md = (root / REPORT_MD).read_text()
    section = md.split("## Training warnings", 1)[1].split("\n## ", 1)[0]
    assert "1 job ended with warnings" in section and "`run_summary.json`" in section
    assert "- job 3 (`train.learning_rate=1e-6`):" in section
    assert f"  - {warning}" in section and "  - reward verdict.cost raised on 2 rows" in section
    warned = {r["job"]: r["warnings"] for r in _table(root)}
    assert warned["3"] == f"{warning} | reward verdict.cost raised on 2 rows" and warned["1"] == ""
    # a sweep without warnings has no such section
    quiet = make_sweep(tmp_path / "quiet", JOBS)
    assert report_main([str(quiet)]) == 0
    assert "## Training warnings" not in (quiet / REPORT_MD).read_text()


@pytest.mark.parametrize("constraint, expected", [
    ("val/false_pass_rate<<0.05", "error: --constraint val/false_pass_rate<<0.05: expected <val/ metric><op><number>"),
    ("val/recall>=0.9", "error: --constraint val/recall>=0.9: no job in {root} logged val/recall; held-out metrics "
                        "logged: val/accuracy"),
])
def test_a_bad_constraint_is_one_error_line_and_nothing_written(tmp_path, capsys, constraint, expected):
    root = make_sweep(tmp_path / "sweep", JOBS)
    before = sorted(root.rglob("*"))
    assert report_main([str(root), "--constraint", constraint]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(expected.format(root=root))
    assert sorted(root.rglob("*")) == before


def test_without_a_best_record_the_start_validation_is_never_the_best_step(tmp_path):
    """A folder without best_checkpoint.json (W&B-only) gets its best step from its validations; the starting
    model's (step 0, train.val_on_start) is a reference with no checkpoint, even when it scored highest."""
    from bbuqc.sweep.jobs import Job, _read_held_out

    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(v) + "\n" for v in [
        {"step": 0, "val/accuracy": 0.9}, {"step": 20, "val/accuracy": 0.7}, {"step": 40, "val/accuracy": 0.8}]))
    job = Job(dir=tmp_path, label="0", num=0, overrides=[], status="completed",
              config={"task": {"name": "verdict"}, "train": {"select_by": None}})
    _read_held_out(job, [])
    assert job.best_step == 40 and job.held_out == {"val/accuracy": 0.8}
    assert [v["step"] for v in job.validations] == [0, 20, 40]  # the curve keeps the start
