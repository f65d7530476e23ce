"""bbuqc.io.run_folder: the one reader of each file a training run writes, and the writers name them from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bbuqc.io import run_folder as rf

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path, rows: list, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_the_logs_are_read_past_a_torn_line(tmp_path):
    _lines(tmp_path / rf.LOGGING, [{"loss": 1.0, rf.STEP_KEY: "1/3"}, {"loss": 0.5, rf.STEP_KEY: "2/3"}],
           tail='{"loss": 0.2, "global_st')  # the job was killed mid-line
    with (tmp_path / rf.LOGGING).open("a") as f:  # ... and a resumed job appended after it
        f.write('\n{"loss": 0.1, "global_step/max_steps": "3/3"}\n{"train_runtime": 9.0}\n[1, 2]\n')
    rows = rf.log_rows(tmp_path)
    assert [rf.logged_step(r) for r in rf.step_rows(rows)] == [1, 2, 3]
    assert rf.training_finished(tmp_path)
    assert rf.log_rows(tmp_path / "missing") == [] and not rf.training_finished(tmp_path / "missing")


@pytest.mark.parametrize("row, step", [
    ({rf.STEP_KEY: "12/40"}, 12), ({rf.STEP_KEY: " 3 / 4"}, 3), ({"step": 5}, 5), ({"global_step": 6.0}, 6),
    ({rf.STEP_KEY: "n/a"}, None), ({"step": True}, None), ({"loss": 1.0}, None),
])
def test_one_reading_of_a_logged_step(row, step):
    assert rf.logged_step(row) == step


def test_the_best_checkpoint_and_its_figures(tmp_path):
    assert rf.read_best(tmp_path) is None and rf.best_figures(tmp_path) == (None, {})
    _lines(tmp_path / rf.VALIDATION, [{"step": 2, "val/accuracy": 0.5}, {"step": 4, "val/accuracy": 0.7},
                                      {"step": 4, "val/accuracy": 0.8, "val/false_pass_rate": 0.1},
                                      {"step": "x"}])
    (tmp_path / rf.BEST_JSON).write_text(json.dumps({"step": 4, "metric": "val/accuracy", "value": 0.8,
                                                     "checkpoint": str(tmp_path / "checkpoint-4")}))
    assert [r["step"] for r in rf.read_validations(tmp_path)] == [2, 4, 4]  # a line without an int step is not one
    assert rf.best_figures(tmp_path) == (4, {"val/accuracy": 0.8, "val/false_pass_rate": 0.1})  # the last line wins
    (tmp_path / rf.BEST_JSON).write_text('{"step": 4, "metr')  # cut short
    assert rf.read_best(tmp_path) is None


def test_the_checkpoint_a_run_hands_on(tmp_path):
    assert rf.chosen_checkpoint(tmp_path) is None
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / rf.BEST_LINK).symlink_to("checkpoint-2")  # a link is not a checkpoint of its own
    assert list(rf.checkpoints(tmp_path)) == [2, 10]
    assert rf.chosen_checkpoint(tmp_path) == (tmp_path / "checkpoint-10").resolve()  # the highest
    (tmp_path / rf.LAST_LINK).symlink_to("checkpoint-2")
    assert rf.chosen_checkpoint(tmp_path) == (tmp_path / "checkpoint-2").resolve()  # ms-swift's last
    (tmp_path / rf.BEST_JSON).write_text(json.dumps({"step": 10, "checkpoint": str(tmp_path / "checkpoint-10")}))
    assert rf.chosen_checkpoint(tmp_path) == (tmp_path / "checkpoint-10").resolve()  # the best by validation
    # the step: trainer_state.json's, else the folder's name
    assert rf.checkpoint_step(tmp_path / "checkpoint-10") == 10
    (tmp_path / "checkpoint-10" / rf.TRAINER_STATE).write_text(json.dumps({"global_step": 9}))
    assert rf.checkpoint_step(tmp_path / "checkpoint-10") == 9
    (tmp_path / "checkpoint-2" / rf.TRAINER_STATE).write_text("{")
    assert rf.trainer_state(tmp_path / "checkpoint-2") is None and rf.checkpoint_step(tmp_path / "checkpoint-2") == 2


def test_what_the_writers_write_the_readers_read(tmp_path):
    pytest.importorskip("transformers")
    from bbuqc.training.diagnosis import write_summary
    from bbuqc.training.validation import record_best

    (tmp_path / "checkpoint-3").mkdir()
    record_best(tmp_path, tmp_path / "checkpoint-3", 3, "val/accuracy", 0.75,
                {"expr": "val/false_pass_rate<=0.05", "value": 0.2, "met": False})
    assert rf.read_best(tmp_path)["step"] == 3 and (tmp_path / rf.BEST_LINK).resolve() == tmp_path / "checkpoint-3"
    _lines(tmp_path / rf.LOGGING, [{"loss": 0.0, "reward": 1.0, "frac_reward_zero_std": 1.0, rf.STEP_KEY: "1/1"}])
    written = write_summary(tmp_path)
    assert rf.read_summary(tmp_path) == json.loads(json.dumps(written))
    assert any("select_constraint" in w for w in rf.read_summary(tmp_path)["warnings"])


FILES = ("LOGGING", "COMPLETIONS", "ANSWERS", "BEST_JSON", "BEST_LINK", "LAST_LINK", "SUMMARY", "TRAINABLE",
         "WANDB_ID", "ARTIFACTS_JSON", "TRAINER_STATE", "STEP_KEY")


def test_no_other_module_spells_a_run_folder_file_name():
    """The names live in bbuqc/io/run_folder.py only: a quoted one elsewhere is a second definition."""
    names = "|".join(re.escape(getattr(rf, n)) for n in FILES)
    spelled = re.compile(rf"""["']({names})["']""")
    found = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "bbuqc").rglob("*.py")) if p.name != "run_folder.py"
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if spelled.search(line)]
    assert found == []
