"""Held-out validation while training: the split, the val/ metrics, the best checkpoint, early stopping."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import compose, run_cli

from bbuqc.tracking.wandb_records import find_run_files, read_run
from bbuqc.training.data import group_of, split_by_group
from bbuqc.training.selection import BestTracker, greater_is_better, validation_metric_names

REPO = Path(__file__).resolve().parents[2]


def _rows(n_groups: int, per_group: int = 2) -> list[dict]:
    return [{"mission": "bbu_wind", "group_id": f"G{g:03d}", "i": i} for g in range(n_groups) for i in range(per_group)]


def test_split_by_group_is_deterministic_disjoint_and_order_free():
    rows = _rows(40)
    train, val = split_by_group(rows, 0.25)
    assert len({group_of(rows[i]) for i in val}) == 10  # a quarter of the groups, whole
    assert not {group_of(rows[i]) for i in train} & {group_of(rows[i]) for i in val}
    assert sorted(train + val) == list(range(len(rows)))
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    _, val2 = split_by_group(shuffled, 0.25)
    assert {group_of(shuffled[i]) for i in val2} == {group_of(rows[i]) for i in val}


def test_summary_rows_are_grouped_by_their_group_folder():
    a = {"mission": "m", "images": ["/w/images/任务/审核通过/G1/1.jpg"]}
    b = {"mission": "m", "images": ["/w/images/任务/审核通过/G1/2.jpg"]}
    c = {"mission": "m", "images": ["/w/images/任务/审核通过/G2/1.jpg"]}
    assert group_of(a) == group_of(b) != group_of(c)


def test_best_tracker_follows_the_direction_and_counts_patience():
    up = BestTracker("val/accuracy", greater_is_better("val/accuracy"))
    assert [up.update(s, v) for s, v in [(1, 0.5), (2, 0.7), (3, 0.6), (4, None), (5, 0.7)]] == [
        True, True, False, False, False]
    assert (up.best_step, up.best_value, up.since_best) == (2, 0.7, 3)
    down = BestTracker("val/false_pass_rate", greater_is_better("val/false_pass_rate"))
    assert [down.update(s, v) for s, v in [(1, 0.3), (2, 0.1), (3, 0.2)]] == [True, True, False]
    assert greater_is_better("val/invalid_rate") is False and greater_is_better("val/invalid_rate", True) is True


def _figures(accuracy, false_pass):
    return {"val/accuracy": accuracy, "val/false_pass_rate": false_pass}


def test_constrained_selection_takes_the_best_of_those_that_meet_it():
    from bbuqc.training.selection import parse_constraint

    tracker = BestTracker("val/accuracy", True, parse_constraint("val/false_pass_rate<=0.05"))
    script = [(1, _figures(0.70, 0.20)), (2, _figures(0.90, 0.30)), (3, _figures(0.80, 0.04)),
              (4, _figures(0.95, 0.10)), (5, _figures(0.85, 0.05)), (6, _figures(0.84, 0.00))]
    new_best = [tracker.update(step, f["val/accuracy"], f) for step, f in script]
    # step 2 is more accurate than 1 but further from the constraint; 3 is the first to meet it; 4 is the most
    # accurate of all but passes 10% of the failed groups; 5 meets it (at the limit) and beats 3
    assert new_best == [True, False, True, False, True, False]
    assert (tracker.best_step, tracker.best_value, tracker.best_meets) == (5, 0.85, True)
    assert tracker.since_best == 1


def test_when_none_meets_it_the_closest_is_best_and_flagged():
    from bbuqc.training.selection import parse_constraint

    tracker = BestTracker("val/accuracy", True, parse_constraint("val/false_pass_rate<=0.05"))
    for step, f in [(1, _figures(0.9, 0.30)), (2, _figures(0.6, 0.10)), (3, _figures(0.7, 0.10)), (4, _figures(0.99, 0.2))]:
        tracker.update(step, f["val/accuracy"], f)
    assert (tracker.best_step, tracker.best_meets, tracker.best_constrained_value) == (3, False, 0.10)


@pytest.mark.parametrize("text, parsed", [
    ("val/false_pass_rate<=0.05", ("val/false_pass_rate", "<=", 0.05)),
    (" val/accuracy >= .9 ", ("val/accuracy", ">=", 0.9)),
    ("val/false_pass_rate_hi<5e-2", ("val/false_pass_rate_hi", "<", 0.05)),
])
def test_constraints_parse(text, parsed):
    from bbuqc.training.selection import parse_constraint

    c = parse_constraint(text)
    assert (c.metric, c.op, c.limit) == parsed


@pytest.mark.parametrize("text", ["val/false_pass_rate", "false pass < 5%", "val/accuracy == 1", "<=0.05", ""])
def test_a_constraint_that_does_not_parse_is_refused(text):
    from bbuqc.training.selection import parse_constraint

    with pytest.raises(ValueError, match="expected <val/ metric><op><number>"):
        parse_constraint(text)


def test_validation_metric_names_cover_the_business_figures_and_every_reward():
    names = validation_metric_names("verdict")
    assert names[:4] == ["val/accuracy", "val/false_pass_rate", "val/false_fail_rate", "val/invalid_rate"]
    assert {"val/verdict.format", "val/verdict.label", "val/verdict.consistency"} <= set(names)
    summary = validation_metric_names("summary")
    assert "val/summary.format" in summary and "val/summary.parse" in summary
    assert not [n for n in summary if "verdict" in n]


# A real ms-swift run whose validation answers are scripted (accuracy 0, 1, 0, 0, ... by validation),
# so the best checkpoint, pruning and early stopping can be checked exactly.
SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    from hydra import compose, initialize_config_dir
    import bbuqc.config.store
    from bbuqc.runtime.paths import CONF_DIR
    from bbuqc.checks import validate
    from bbuqc.training import runner
    from bbuqc.training.validation import ValidationCallback
    from bbuqc.tracking.runs import wandb_run

    run_dir = Path(sys.argv[1])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=sys.argv[2:])
    validate(cfg, "train")
    RIGHT = [c == "1" for c in os.environ.get("SCRIPTED_RIGHT", "010000")]  # each validation's answers, in turn
    calls = []

    def scripted(self):
        right = RIGHT[len(calls)]
        calls.append(right)
        flip = {"通过": "不通过", "不通过": "通过"}
        return [(r["group_label"] if right else flip[r["group_label"]]) + "\\n理由: 图片_1检测到BBU设备" for r in self.rows]

    ValidationCallback._answers = scripted
    inputs = runner.prepare(cfg, run_dir)
    with wandb_run(cfg, run_dir, job_type="train-verdict") as wb:
        runner.train(cfg, inputs, wandb=wb)
    """
)


@pytest.fixture(scope="module")
def scripted_run(session_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("validated") / "run"
    overrides = ["task=verdict", "algo=sft", "data.val_fraction=0.25", "train.eval_steps=1", "train.max_steps=6",
                 "train.save_steps=100", "train.save_total_limit=1", "train.early_stop_patience=2",
                 "train.learning_rate=1e-5", "logger=wandb"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), *overrides], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir


def test_validation_metrics_are_logged_every_eval_steps(scripted_run):
    history = [json.loads(line) for line in (scripted_run / "validation.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4]  # early stopping after step 4 (see below)
    assert [h["val/accuracy"] for h in history] == [0.0, 1.0, 0.0, 0.0]
    # a fully wrong answer on a human-failed group is a false pass
    assert history[0]["val/false_pass_rate"] == 1.0 and history[1]["val/false_pass_rate"] == 0.0
    assert all(h["val/invalid_rate"] == 0.0 and h["val/verdict.format"] == 1.0 for h in history)
    logged = [json.loads(line) for line in (scripted_run / "logging.jsonl").read_text().splitlines()]
    per_step = [r for r in logged if "val/accuracy" in r]
    assert [r["val/accuracy"] for r in per_step] == [0.0, 1.0, 0.0, 0.0]
    assert all("loss" in r for r in per_step)  # the validation figures sit in the step's own log line
    (run_file,) = find_run_files(scripted_run)
    wandb_history = [row for row in read_run(run_file).history if "val/accuracy" in row]
    assert [row["val/accuracy"] for row in wandb_history] == [0.0, 1.0, 0.0, 0.0]


def test_each_validation_keeps_its_answers(scripted_run):
    kept = [json.loads(line) for line in (scripted_run / "validation_answers.jsonl").read_text().splitlines()]
    steps = sorted({k["step"] for k in kept})
    assert steps == [1, 2, 3, 4]
    by_step = {s: [k for k in kept if k["step"] == s] for s in steps}
    # the same rows each time (bounded by train.val_answers), each with its label, answer and how it was read
    assert len({tuple(k["group_id"] for k in rows) for rows in by_step.values()}) == 1
    assert all(k["verdict"] != k["label"] and not k["correct"] for k in by_step[1])  # the scripted wrong answers
    assert all(k["verdict"] == k["label"] and k["correct"] for k in by_step[2])
    assert all(k["answer"].startswith(k["verdict"]) for k in kept)


def test_the_best_checkpoint_is_recorded_and_survives_pruning(scripted_run):
    best = json.loads((scripted_run / "best_checkpoint.json").read_text())
    assert (best["step"], best["metric"], best["value"]) == (2, "val/accuracy", 1.0)
    link = scripted_run / "best-checkpoint"
    assert link.is_symlink() and os.readlink(link) == "checkpoint-2"
    assert (link / "adapter_model.safetensors").is_file()
    kept = sorted(p.name for p in scripted_run.glob("checkpoint-*"))
    assert "checkpoint-2" in kept and "checkpoint-1" not in kept and "checkpoint-3" not in kept
    assert len(kept) <= 2  # save_total_limit=1 keeps the newest, plus the best


def test_early_stopping_stops_after_patience_validations(scripted_run):
    steps = [r["global_step/max_steps"] for r in map(json.loads, (scripted_run / "logging.jsonl").read_text().splitlines())
             if "global_step/max_steps" in r]
    assert steps[-1] == "4/6"  # max_steps=6, stopped after two validations without a new best
    state = json.loads((scripted_run / "best-checkpoint" / "trainer_state.json").read_text())
    assert state["best_global_step"] == 2 and state["best_metric"] == 1.0


def test_the_starting_model_is_validated_as_a_reference_never_the_best(session_cache, tmp_path):
    # train.val_on_start: the start answers right, step 1 wrong, step 2 right, step 3 wrong
    run_dir = tmp_path / "run"
    overrides = ["task=verdict", "algo=sft", "data.val_fraction=0.25", "train.eval_steps=1", "train.max_steps=3",
                 "train.save_steps=100", "train.val_on_start=true", "logger=wandb"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), *overrides], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "WANDB_MODE": "offline", "SCRIPTED_RIGHT": "1010"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = [json.loads(line) for line in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert [(h["step"], h["val/accuracy"]) for h in history] == [(0, 1.0), (1, 0.0), (2, 1.0), (3, 0.0)]
    # the best of the run's own steps (the start has no checkpoint), though the start scored as high
    best = json.loads((run_dir / "best_checkpoint.json").read_text())
    assert (best["step"], best["value"]) == (2, 1.0) and (run_dir / "best-checkpoint").resolve().name == "checkpoint-2"
    # step 1's log line carries step 1's figures, not a mean with the start's
    logged = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    assert [r["val/accuracy"] for r in logged if "val/accuracy" in r] == [0.0, 1.0, 0.0]
    (run_file,) = find_run_files(run_dir)
    wandb_history = [row for row in read_run(run_file).history if "val/accuracy" in row]
    assert [(row["train/global_step"], row["val/accuracy"]) for row in wandb_history] == [
        (0, 1.0), (1, 0.0), (2, 1.0), (3, 0.0)]


def test_validating_the_start_needs_validation():
    import bbuqc.config.store  # noqa: F401
    from bbuqc.checks import problems

    assert problems(compose("train", ["train.val_on_start=true"]), "train") == [
        "train.val_on_start: needs train.eval_steps (it validates as every validation does)"]
    assert problems(compose("train", ["train.val_on_start=true", "train.eval_steps=5", "data.val_fraction=0.1"]), "train") == []


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli("train", *overrides, "logger=none", f"hydra.run.dir={tmp_path / 'run'}")


def test_explicit_validation_files_must_be_held_out(session_cache, tmp_path):
    from bbuqc.data.synth import ensure_synthetic
    from bbuqc.runtime.paths import cache_dir

    world = ensure_synthetic(cache_dir() / "synth" / "seed0-g6", seed=0, groups_per_mission=6)
    shared = world / "stage_a" / "bbu_wind.jsonl"
    proc = _train(tmp_path, "task=verdict", f"data.val_stage_a_jsonl=[{shared}]", "train.eval_steps=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "data.val_stage_a_jsonl" in line and "also in the training data" in line


def test_a_val_fraction_that_leaves_nothing_to_train_is_refused(session_cache, tmp_path):
    proc = _train(tmp_path, "task=verdict", "data.max_rows=1", "data.val_fraction=0.5")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "data.val_fraction=0.5" in line and "nothing is left to train on" in line


def test_kept_answers_are_bounded_and_read_as_evaluation_reads_them():
    from bbuqc.training.validation import answer_records

    rows = [{"group_label": "通过", "group_id": f"G{i}", "mission": "m"} for i in range(5)]
    answers = ["通过\n理由: 图片_1正常", "不通过\n理由: 缺少", "需复核", "通过\n理由: x", "通过\n理由: y"]
    kept = answer_records("verdict", rows, answers, 3)
    assert [(k["row"], k["group_id"], k["verdict"], k["correct"]) for k in kept] == [
        (0, "G0", "通过", True), (1, "G1", "不通过", False), (2, "G2", "invalid", False)]
    assert answer_records("verdict", rows, answers, 0) == []
