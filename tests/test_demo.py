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

STAGES = ("summary_sft", "stage_a", "verdict_sft", "verdict_grpo",
          *(f"evaluate_{m}_{s}" for m in ("base", "sft", "grpo") for s in ("perfect", "end_to_end")))


@pytest.mark.slow
def test_quick_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "bbuqc.demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "| verdict model |" in proc.stdout  # the table is printed

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("summary_checkpoint", "verdict_checkpoint"):
        path = Path(metrics[key])
        assert path.is_absolute() and (path / "adapter_config.json").is_file(), key
    # the final verdict model is the GRPO run's, continued from the SFT run's checkpoint
    assert Path(metrics["verdict_checkpoint"]).parent == Path(metrics["run_dirs"]["verdict_grpo"])
    assert set(metrics["run_dirs"]) == set(STAGES)
    assert all(Path(p).is_dir() for p in metrics["run_dirs"].values())
    assert set(metrics["timings_s"]) == {*STAGES, "total"}
    for model in ("base", "sft", "grpo"):
        for source in ("perfect", "end_to_end"):
            figures = metrics["verdict"][model][source]
            assert figures["groups"] > 0
            assert 0.0 <= figures["accuracy"] <= 1.0 and 0.0 <= figures["invalid_rate"] <= 1.0
    assert {"summary.format", "summary.parse_ok"} <= set(metrics["summary"])
    assert metrics["stage_a"]["groups"] > 0  # step b wrote records for the test world
    assert {"grpo.perfect.accuracy", "grpo.perfect.false_pass_rate", "grpo.perfect.invalid_rate",
            "summary.format", "summary.parse_ok"} <= set(metrics["targets"])
    # the test world shares no group with either training world
    def group_ids(world: str) -> set[str]:
        rows = (Path(metrics["worlds"][world]) / "verdict_rows.jsonl").read_text(encoding="utf-8").splitlines()
        return {json.loads(line)["group_id"] for line in rows}

    test = group_ids("test")
    for world in ("summary_train", "verdict_train"):
        train = group_ids(world)
        assert train and test and not train & test, world

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| grpo | perfect |" in summary and "| grpo | end to end |" in summary
    for run in ("summary_sft", "verdict_sft", "verdict_grpo"):
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
