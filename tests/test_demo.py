"""`make demo` scaled down (`python -m bbuqc.demo --quick`): every stage runs as its real command and the
demo writes what it promises (summary.md with a table and curves, metrics.json with figures, run folders
and the final checkpoints). The figures of a 2-step run mean nothing, so the targets are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCES = ("perfect", "end_to_end", "shifted_perfect", "shifted_end_to_end")
STAGES = ("summary_sft", "summary_grpo", "stage_a_grpo_world", "stage_a_test", "stage_a_shifted", "verdict_sft",
          "verdict_grpo", "evaluate_base_perfect", *(f"evaluate_{m}_{s}" for m in ("sft", "grpo") for s in SOURCES))


@pytest.mark.slow
def test_quick_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "bbuqc.demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "| verdict model |" in proc.stdout  # the table is printed

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("summary_checkpoint", "summary_sft_checkpoint", "summary_grpo_checkpoint", "verdict_sft_checkpoint",
                "verdict_checkpoint"):
        path = Path(metrics[key])
        assert path.is_absolute() and (path / "adapter_config.json").is_file(), key
    # the final verdict model is the GRPO run's, continued from the SFT run's checkpoint; so is the summary GRPO
    assert Path(metrics["verdict_checkpoint"]).parent == Path(metrics["run_dirs"]["verdict_grpo"])
    assert Path(metrics["summary_grpo_checkpoint"]).parent == Path(metrics["run_dirs"]["summary_grpo"])
    assert metrics["summary_checkpoint"] in (metrics["summary_sft_checkpoint"], metrics["summary_grpo_checkpoint"])
    assert set(metrics["run_dirs"]) == set(STAGES)
    # the figures name the CPU kernels and libraries they were measured with
    assert metrics["environment"]["torch_cpu_kernels"] and metrics["environment"]["versions"]["ms-swift"]
    assert all(Path(p).is_dir() for p in metrics["run_dirs"].values())
    assert set(metrics["timings_s"]) == {*STAGES, "total"}
    assert set(metrics["verdict"]) == {"base", "sft", "grpo"} and set(metrics["verdict"]["base"]) == {"perfect"}
    for model in ("sft", "grpo"):
        assert set(metrics["verdict"][model]) == set(SOURCES)
        for source in SOURCES:
            figures = metrics["verdict"][model][source]
            assert figures["groups"] > 0
            assert 0.0 <= figures["accuracy"] <= 1.0 and 0.0 <= figures["invalid_rate"] <= 1.0
    # every evaluation says where its wrong verdicts came from
    assert set(metrics["attribution"]) == {"base.perfect", *(f"{m}.{s}" for m in ("sft", "grpo") for s in SOURCES)}
    for run in ("sft", "grpo"):
        assert {"summary.format", "summary.parse_ok", "summary.content_f1"} <= set(metrics["summary"][run])
    for world in ("test", "shifted"):  # step c wrote records for both test worlds, scored against the reference
        assert metrics["stage_a"][world]["groups"] > 0 and metrics["stage_a"][world]["content_f1"] is not None
    assert {"grpo.end_to_end.accuracy", "grpo.end_to_end.false_pass_rate", "grpo.end_to_end.invalid_rate",
            "grpo.perfect.accuracy", "grpo.perfect.false_pass_rate", "grpo_over_sft.end_to_end",
            "grpo_over_sft.shifted_end_to_end.accuracy_gain", "summary.test_content_f1",
            "summary_grpo_over_sft.content_f1_gain", "summary_sft.summary.format"} <= set(metrics["targets"])
    # the test worlds share no group with a training world, nor with the verdict GRPO's world
    def group_ids(world: str) -> set[str]:
        rows = (Path(metrics["worlds"][world]) / "verdict_rows.jsonl").read_text(encoding="utf-8").splitlines()
        return {json.loads(line)["group_id"] for line in rows}

    for held_out in ("test", "shifted"):
        test = group_ids(held_out)
        for world in ("summary_train", "verdict_train", "grpo"):
            train = group_ids(world)
            assert train and test and not train & test, (held_out, world)
    # the verdict GRPO trained on the summary model's own records of its world, with the human labels
    written = {}
    for path in (Path(metrics["out"]) / "stage_a" / "grpo_world").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            written[(rec["group_id"], {"pass": "通过", "fail": "不通过"}[rec["label"]])] = rec["per_image"]
    rows = [json.loads(line) for line in
            (Path(metrics["run_dirs"]["verdict_grpo"]) / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows and all(json.loads(r["summaries"]) == written[(r["group_id"], r["group_label"])] for r in rows)

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| grpo | perfect |" in summary and "| grpo | end to end |" in summary
    assert "| grpo | shifted end to end |" in summary
    assert f"torch CPU kernels {metrics['environment']['torch_cpu_kernels']}" in summary
    for run in ("summary_sft", "summary_grpo", "verdict_sft", "verdict_grpo"):
        assert f"![{run}.png]({run}.png)" in summary
        assert (out / f"{run}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_stage_stops_the_stage_beside_it_and_is_the_error_reported(tmp_path):
    """The two chains run side by side: when one stage fails, the other is stopped (not left to finish
    for nothing) and both report the first failure."""
    from concurrent.futures import ThreadPoolExecutor

    from bbuqc.demo import QUICK, Demo, DemoError

    finished = tmp_path / "slow-stage-finished"
    fake_python = tmp_path / "python"  # Demo runs `<python> -m <module> ...`: the module decides
    fake_python.write_text(f'#!/bin/sh\nif [ "$2" = fail ]; then sleep 1; exit 3; fi\nsleep 60 && touch {finished}\n')
    fake_python.chmod(0o755)
    demo = Demo(tmp_path / "out", QUICK, python=str(fake_python))
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(demo.command, "slow", "slow", [])
        bad = pool.submit(demo.command, "bad", "fail", [])
        for future in (bad, slow):
            with pytest.raises(DemoError, match=r"stage bad failed \(exit 3\); see .*bad\.log"):
                future.result()
    assert not finished.exists()  # stopped, not waited for
    with pytest.raises(DemoError, match="stage bad failed"):  # nothing starts after a failure
        demo.command("later", "slow", [])


@pytest.mark.parametrize("sft, grpo, met", [
    ((0.90, 0.10), (0.95, 0.10), True),   # accuracy +0.05
    ((0.90, 0.10), (0.90, 0.05), True),   # false-pass halved, accuracy kept
    ((0.90, 0.10), (0.89, 0.05), False),  # false-pass halved at the cost of accuracy
    ((0.90, 0.10), (0.92, 0.06), False),  # neither
    ((0.98, 0.00), (0.98, 0.00), False),  # GRPO giving SFT's answers: halving no false pass is no gain
])
def test_grpo_over_sft_is_met_only_by_an_improvement(sft, grpo, met):
    from bbuqc.demo import check_targets

    def figures(accuracy, false_pass):
        return {"end_to_end": {"accuracy": accuracy, "false_pass_rate": false_pass}}

    targets = check_targets({}, {}, {"sft": figures(*sft), "grpo": figures(*grpo)})
    assert targets["grpo_over_sft.end_to_end"]["met"] is met


@pytest.mark.parametrize("sft, reachable", [
    ((0.90, 0.10), True),   # room for +0.05, and a false-pass to halve
    ((0.98, 0.05), True),   # no room for +0.05, but a false-pass to halve
    ((0.988, 0.00), False),  # neither: no model could meet it from there
])
def test_grpo_over_sft_says_whether_sfts_figures_leave_room_for_it(sft, reachable):
    from bbuqc.demo import check_targets

    def figures(accuracy, false_pass):
        return {"end_to_end": {"accuracy": accuracy, "false_pass_rate": false_pass}}

    targets = check_targets({}, {}, {"sft": figures(*sft), "grpo": figures(*sft)})
    assert targets["grpo_over_sft.end_to_end"]["reachable"] is reachable
    assert targets["grpo_over_sft.end_to_end"]["headroom"] == pytest.approx(1 - sft[0])


def test_a_gain_target_is_out_of_reach_when_sft_leaves_less_than_the_gain():
    """Summary GRPO's +0.05 content F1 from an SFT start at 0.96 cannot be met by any model; from 0.90 it can.
    The report says which, beside the NO."""
    from bbuqc.demo import check_targets

    def summary(sft_f1, grpo_f1):
        return {"sft": {"summary.content_f1": sft_f1}, "grpo": {"summary.content_f1": grpo_f1}}

    high = check_targets(summary(0.961, 0.962), {}, {})["summary_grpo_over_sft.content_f1_gain"]
    assert (high["met"], high["reachable"], high["headroom"]) == (False, False, pytest.approx(0.039))
    low = check_targets(summary(0.90, 0.96), {}, {})["summary_grpo_over_sft.content_f1_gain"]
    assert (low["met"], low["reachable"]) == (True, True)
    # every figure at once, as the demo calls it
    verdict = {model: {"end_to_end": {"accuracy": 0.988, "false_pass_rate": 0.0}, "shifted_end_to_end": {"accuracy": 0.762}}
               for model in ("sft", "grpo")}
    targets = check_targets(summary(0.961, 0.962), {}, verdict)
    gain = targets["grpo_over_sft.shifted_end_to_end.accuracy_gain"]
    assert (gain["met"], gain["reachable"], gain["headroom"]) == (False, True, pytest.approx(0.238))
    assert not targets["grpo_over_sft.end_to_end"]["reachable"]
    assert not targets["summary_grpo_over_sft.content_f1_gain"]["reachable"]
