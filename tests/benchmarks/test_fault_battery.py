"""docs/errors.md and the fault battery list the same bad inputs: each table row's id is a case the
battery runs (`python -m benchmarks.fault_battery`), and each case is a row; and the battery's probes as
tests (`pytest -m faults`: all of them; `make test`: the quick set)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from benchmarks import fault_battery
from benchmarks.fault_battery import CASES, COMMANDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(rf"^\| `((?:{'|'.join(COMMANDS)})\.[a-z0-9-]+)` \|")


def doc_rows() -> dict[str, str]:
    """id -> the command whose section (`## bbuqc-<command>`) holds the row."""
    rows, section = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            found = re.search(r"bbuqc-(\w+)", line)
            section = found.group(1) if found else None
        m = ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"docs/errors.md lists {m.group(1)} twice"
            rows[m.group(1)] = section
    return rows


def test_every_row_of_the_doc_is_tried_and_every_case_is_documented():
    rows = doc_rows()
    assert sorted(set(rows) - set(CASES)) == [], "rows of docs/errors.md the battery does not try"
    assert sorted(set(CASES) - set(rows)) == [], "battery cases docs/errors.md does not list"


def test_each_row_sits_in_its_command_section():
    assert {i: s for i, s in doc_rows().items() if s != CASES[i].command} == {}



# ------------------------------------------------------------------------ the battery's probes as tests
# `pytest -m faults` runs every probe of the battery (the same Case builders and run_case check as
# `make faults`); `make test` runs QUICK: one probe per distinct code path that needs no model run (Hydra's
# composition message, a typed field, validation, an unwritable run folder, the Stage-A reader, discovery,
# your own missions, reward parameters, two error lines, the report), about 10 short subprocesses. The rest,
# and the kill trials (random moments, then a resume compared byte for byte), are slow.

QUICK = ("train.unknown-option", "infer.wrong-type", "train.bad-value", "evaluate.run-dir-read-only",
         "train.stage-a-torn", "infer.root-missing", "infer.mission-duplicate-id", "train.reward-param-unknown-id",
         "export.nothing-given", "report.no-finished-job")


@pytest.fixture(scope="module")
def battery_work(session_cache, tmp_path_factory):
    """The battery's work folder (``WORK``: worlds, cases) in this session's tmp, not outputs/bench/."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fault_battery, "WORK", tmp_path_factory.mktemp("faults-work"))
        yield fault_battery.WORK


@pytest.fixture(scope="module")
def small_world(battery_work) -> fault_battery.World:
    """Only the small synthetic world (what QUICK's probes read); no reference runs, no adapter."""
    small = battery_work / "world-small"
    done = fault_battery.run([fault_battery.PY, "-m", "bbuqc.synth", "--out", str(small), "--seed", "7",
                              "--groups-per-mission", "2"])
    assert done.returncode == 0, done.stderr[-2000:]
    return fault_battery.World(small=small, big=None, stage_a_ref=None, eval_ref=None, stage_a_window=0.0,
                               eval_window=0.0)


@pytest.fixture(scope="module")
def full_world(battery_work) -> fault_battery.World:
    """Everything `make faults` builds: both worlds, the uninterrupted references, a real LoRA checkpoint."""
    return fault_battery.build_world(need_adapter=True)


def test_the_quick_probes_are_battery_cases():
    assert [i for i in QUICK if i not in CASES] == []


@pytest.mark.faults
@pytest.mark.parametrize("case_id", [i if i in QUICK else pytest.param(i, marks=pytest.mark.slow) for i in CASES])
def test_bad_input_is_handled_as_documented(case_id, request):
    """Exit code, the documented line(s) naming the culprit, no traceback, nothing written, nothing lost."""
    world = request.getfixturevalue("small_world" if case_id in QUICK else "full_world")
    result = fault_battery.run_case(CASES[case_id], world)
    assert result["problems"] == [], result["stderr_tail"]


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("label", ["stage_a", "evaluate"])
def test_sigkill_at_random_moments_then_resume_is_byte_identical(label, full_world):
    w, work = full_world, fault_battery.WORK
    if label == "stage_a":
        trials = fault_battery.kill_trials(
            "stage_a", 2, w.stage_a_window, random.Random(0),
            lambda d: fault_battery.cmd("infer", *fault_battery.infer_args(w.big / "images", d / "out.jsonl",
                                                                           d / "run")),
            lambda d: d / "out.jsonl", fault_battery.STAGE_A_FILES, w.stage_a_ref)
    else:
        trials = fault_battery.kill_trials(
            "evaluate", 1, w.eval_window, random.Random(0),
            lambda d: fault_battery.cmd("evaluate", *fault_battery.eval_args(fault_battery.eval_inputs(w.big),
                                                                             d / "eval", d / "run")),
            lambda d: d / "eval" / "predictions.jsonl", fault_battery.EVAL_FILES, w.eval_ref)
    assert trials["kills"] >= 1 and trials["identical"] == trials["kills"], (trials, work)
