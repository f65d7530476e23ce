"""A mission of your own, from a temporary config folder and nothing in the package: Stage-A on its images,
verdict training (2 steps) on those records, and evaluation, each the real command on the tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_catalogue import LABEL, write_mission

REPO = Path(__file__).resolve().parents[2]


def command(name: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"bbuqc.{name}", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def image_tree(root: Path) -> Path:
    """``<root>/BBU标签检查/<审核通过|审核不通过>/<group>/``: two groups of one photo each."""
    import numpy as np
    from PIL import Image

    for seed, (label, group) in enumerate([("审核通过", "QC-LBL-20260101-1"), ("审核不通过", "QC-LBL-20260101-2")]):
        folder = root / LABEL["name"] / label / group
        folder.mkdir(parents=True)
        pixels = (np.random.RandomState(seed).rand(64, 64, 3) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{group}_1.jpg")
    return root


@pytest.mark.slow
def test_your_mission_runs_stage_a_training_and_evaluation(session_cache, tmp_path):
    conf = tmp_path / "my_conf"
    write_mission(conf)
    images = image_tree(tmp_path / "images")
    stage_a = tmp_path / "stage_a" / "bbu_label.jsonl"
    search = f"hydra.searchpath=[file://{conf}]"

    # Stage-A with --config-dir, the other two with hydra.searchpath: both are documented
    command("infer", f"--config-dir={conf}", "mission=bbu_label", "data.source=files", f"data.root={images}",
            f"infer.output={stage_a}", "infer.max_new_tokens=4", "infer.progress=false", "logger=none",
            f"hydra.run.dir={tmp_path / 'infer'}")
    records = [json.loads(line) for line in stage_a.read_text(encoding="utf-8").splitlines()]
    assert [(r["mission"], r["label"]) for r in records] == [("BBU标签检查", "pass"), ("BBU标签检查", "fail")]

    train = tmp_path / "train"
    command("train", search, "task=verdict", "data.source=files", f"data.stage_a_jsonl=[{stage_a}]",
            "train.max_steps=2", "lora.last_k=1", "logger=none", f"hydra.run.dir={train}")
    rows = [json.loads(line) for line in (train / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["mission"] for r in rows} == {"bbu_label"}
    prompt = rows[0]["messages"][-1]["content"]
    assert f"判定规则：{LABEL['decision']}" in prompt and "2. BBU设备必须有可读的标签" in prompt
    assert (train / "checkpoint-2" / "adapter_model.safetensors").is_file()

    evaluation = tmp_path / "evaluate"
    command("evaluate", search, "data.source=files", f"data.stage_a_jsonl=[{stage_a}]",
            f"model.adapter={train / 'checkpoint-2'}", "evaluate.max_new_tokens=8", "logger=none",
            f"hydra.run.dir={evaluation}")
    metrics = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["per_mission"]) == ["bbu_label"] and metrics["per_mission"]["bbu_label"]["n"] == 2
    # no pass/fail rules for your mission: a wrong verdict's source is not claimed
    assert metrics["overall"]["attribution"]["rules"]["unjudgeable"] == 2
