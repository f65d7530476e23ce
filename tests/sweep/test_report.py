"""`python -m bbuqc.report`: fabricated job folders -> report.md, report.csv and PNG plots."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from bbuqc.report import main as report_main
from bbuqc.sweep.comparison import REPORT_CSV, REPORT_MD, collect_jobs
from bbuqc.tracking.wandb_records import read_run

IDS = ["summary.format", "summary.header"]


def make_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    rewards: list[float] | None,
    *,
    status: str | None = None,
    error: str | None = None,
    finished: bool = True,
) -> Path:
    """A job folder as a sweep leaves it: .hydra/overrides.yaml, logging.jsonl, the callback's records."""
    job = sweep / f"{num}_{','.join(overrides)}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if rewards is not None:
        lines = []
        for step, reward in enumerate(rewards, 1):
            row = {"loss": 0.1, "reward": reward, "reward_std": 0.0, "global_step/max_steps": f"{step}/{len(rewards)}"}
            for i, rid in enumerate(IDS):
                row[f"rewards/{rid}/mean"] = reward / (i + 2)
                row[f"rewards/{rid}/std"] = 0.0
            lines.append(json.dumps(row))
        if finished:
            lines.append(json.dumps({"train_runtime": 1.0, "global_step/max_steps": f"{len(rewards)}/{len(rewards)}"}))
        (job / "logging.jsonl").write_text("\n".join(lines) + "\n")
    if error:
        (job / "error.txt").write_text(f"{error}\n\nTraceback (most recent call last):\n  ...\n{error}\n")
    if status:
        record = {"status": status, "num": num, "overrides": overrides, "return": None, "error": error}
        (job / "job_status.json").write_text(json.dumps(record))
    return job


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "2026-01-31" / "12-00-00"
    make_job(root, 0, ["reward.weights.summary.header=1", "lora.last_k=2"], [0.0, 1.0, 0.5], status="completed")
    make_job(root, 1, ["reward.weights.summary.header=1", "lora.last_k=4"], [0.5, 2.0], status="completed")
    make_job(root, 2, ["reward.weights.summary.header=4", "lora.last_k=2"], [1.0, 3.0, 4.0], status="completed")
    make_job(
        root, 3, ["reward.weights.summary.header=4", "lora.last_k=4"], None,
        status="failed", error="ConfigError: lora.last_k=4: model=tiny has only 3 LLM blocks",
    )
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        img.verify()
        return img.format == "PNG"


def test_report_rows_csv_and_plots(sweep, capsys):
    assert report_main([str(sweep)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(sweep / REPORT_MD)

    rows = list(csv.DictReader((sweep / REPORT_CSV).open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["status"] for r in rows] == ["completed"] * 3 + ["failed"]
    assert [r["final_reward"] for r in rows] == ["0.5", "2.0", "4.0", ""]
    assert [r["best_reward"] for r in rows] == ["1.0", "2.0", "4.0", ""]
    assert [r["steps"] for r in rows] == ["3", "2", "3", ""]
    assert rows[2]["summary.format"] == "2.0" and rows[2]["summary.header"] == str(4.0 / 3)
    assert rows[0]["reward.weights.summary.header"] == "1" and rows[1]["lora.last_k"] == "4"
    assert "only 3 LLM blocks" in rows[3]["error"]

    md = (sweep / REPORT_MD).read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    assert len(table) == 4
    assert "**failed**" in table[3] and "only 3 LLM blocks" in table[3]
    assert "`lora.last_k=2`" in table[0]
    header = next(line for line in md.splitlines() if line.startswith("| job"))
    for column in ("final reward", "best reward", *IDS):
        assert column in header
    assert "## Failed jobs" in md and "error.txt" in md
    assert "Best final reward: 4" in md

    plots = ["reward_curves.png", "final_reward_vs_reward.weights.summary.header.png", "final_reward_vs_lora.last_k.png"]
    for name in plots:
        assert _is_png(sweep / name), name
        assert f"]({name})" in md
    # only swept parameters get a plot
    assert sorted(p.name for p in sweep.glob("*.png")) == sorted(plots)


def test_a_job_with_a_cut_log_and_no_status_is_incomplete(tmp_path):
    root = tmp_path / "sweep"
    job = make_job(root, 0, ["train.max_steps=9"], [1.0, 2.0], finished=False)
    with (job / "logging.jsonl").open("a") as f:
        f.write('{"reward": 5.0, "global_st')  # killed mid-write
    make_job(root, 1, ["train.max_steps=3"], [1.0])
    (j0, j1) = collect_jobs(root)
    assert (j0.status, j0.final_reward, j0.steps) == ("incomplete", 2.0, [1, 2])
    assert j1.status == "completed"


# An offline run written by the real `wandb` client, in a process of its own: wandb-core
# flushes the run file when its service stream closes, which is when that process exits.
_WANDB_WRITER = """
import json, sys, wandb
folder, spec = sys.argv[1], json.loads(sys.argv[2])
run = wandb.init(mode="offline", dir=folder, project="bbuqc", id=spec["id"], name=spec["name"],
                 group=spec["group"], job_type=spec["job_type"], config=spec["config"])
for row in spec["history"]:
    run.log(row)
run.finish(exit_code=0)
"""


def _write_wandb_run(folder: Path, **spec) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", _WANDB_WRITER, str(folder), json.dumps(spec)], check=True, env=env)


def _history(step: int, reward: float) -> dict:
    return {"train/reward": reward, "train/global_step": step, "train/rewards/summary.header/mean": reward / 2,
            "train/rewards/summary.format/mean": 1.0}


def test_metrics_fall_back_to_the_offline_wandb_run(tmp_path):
    root = tmp_path / "sweep"
    job = make_job(root, 0, ["lora.last_k=1"], None, status="completed")
    weights = {"weights": {"summary": {"format": 1.0, "header": 2.0}}}
    _write_wandb_run(job, id="abc", name="lora.last_k=1", group="sweep-x", job_type="train-summary",
                     config={"reward": weights}, history=[_history(1, 1.0), _history(2, 3.0)])

    (path,) = job.glob("wandb/offline-run-*-abc/run-abc.wandb")
    wb = read_run(path)
    assert (wb.run_id, wb.name, wb.group, wb.job_type, wb.project) == (
        "abc", "lora.last_k=1", "sweep-x", "train-summary", "bbuqc")
    assert wb.exit_code == 0
    assert wb.config["reward"] == weights
    assert [(h["train/global_step"], h["train/reward"]) for h in wb.history] == [(1, 1), (2, 3)]
    (parsed,) = collect_jobs(root)
    assert parsed.metrics_source == "wandb"
    assert (parsed.steps, parsed.reward) == ([1, 2], [1.0, 3.0])
    assert list(parsed.reward_ids) == ["summary.format", "summary.header"]  # the reward set's order
    assert parsed.reward_ids["summary.header"] == 1.5
    assert report_main([str(root)]) == 0
    assert "`sweep-x`" in (root / REPORT_MD).read_text()


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(tmp_path, capsys, make):
    target = tmp_path / "multirun"
    if make == "empty":
        (target / "2026-01-31").mkdir(parents=True)
    elif make == "file":
        target.write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    assert report_main([str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(target) in err[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_report_cli_runs_as_a_module(sweep):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-m", "bbuqc.report"]
    proc = subprocess.run([*run, str(sweep / "nope")], capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stdout == ""
    proc = subprocess.run([*run, str(sweep)], capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert (sweep / REPORT_MD).is_file()


def test_a_report_that_cannot_be_written_is_one_error_line(sweep, capsys):
    (sweep / REPORT_MD).mkdir()  # a folder where report.md goes
    assert report_main([str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {sweep / REPORT_MD}: cannot write the report: Is a directory"]
