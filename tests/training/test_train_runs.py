"""`python -m bbuqc.train` end to end: real ms-swift GRPO on the tiny models, offline on CPU."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open
from support import run_cli

from bbuqc.tracking.wandb_records import find_run_files, read_run

REPO = Path(__file__).resolve().parents[2]
SUMMARY_FULL = [
    "summary.format", "summary.header", "summary.strict", "summary.parse", "summary.no_dup_keys", "summary.dataset",
    "summary.objects_total_lb", "summary.category_recall", "summary.content_structured_tversky", "summary.text_bbu",
    "summary.notes_bbu", "summary.group_stats_presence",
]
VERDICT = ["verdict.format", "verdict.label", "verdict.consistency"]


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = run_cli("train", *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def log_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]


def step_logs(run_dir: Path) -> list[dict]:
    return [r for r in log_lines(run_dir) if "global_step/max_steps" in r and "loss" in r]


def adapter_blocks(checkpoint: Path) -> tuple[set[int], list[str]]:
    with safe_open(str(checkpoint / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    blocks = {int(m.group(1)) for k in keys if (m := re.search(r"\blayers\.(\d+)\.", k))}
    return blocks, keys


@pytest.fixture(scope="module")
def summary_run(session_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("summary") / "run"
    train(run_dir, "task=summary", "reward=summary_full", "lora.last_k=2", "train.max_steps=2")
    return run_dir


def test_summary_run_saves_last_k_adapter_only(summary_run):
    blocks, keys = adapter_blocks(summary_run / "checkpoint-2")
    assert blocks == {2, 3}  # the tiny VL model has 4 LLM blocks
    assert keys and all(".language_model.layers." in k for k in keys)
    assert not [k for k in keys if "visual" in k or "merger" in k]
    trainable = json.loads((summary_run / "trainable_parameters.json").read_text())
    assert trainable["trainable"] > 0
    assert all(re.search(r"language_model\.layers\.[23]\..*lora_", n) for n in trainable["names"])


def test_summary_run_logs_every_reward_id(summary_run):
    logs = step_logs(summary_run)
    assert [r["global_step/max_steps"] for r in logs] == ["1/2", "2/2"]
    for rid in SUMMARY_FULL:
        assert all(f"rewards/{rid}/mean" in r for r in logs), rid
    (wandb_file,) = find_run_files(summary_run)
    run = read_run(wandb_file)
    assert run.name == "task=summary,reward=summary_full,lora.last_k=2,train.max_steps=2"
    assert run.job_type == "train-summary" and run.exit_code == 0
    assert run.config["lora"]["last_k"] == 2 and run.config["reward"]["name"] == "summary_full"
    assert run.summary["params/trainable"] > 0
    logged = set().union(*run.history)
    for rid in SUMMARY_FULL:
        assert f"train/rewards/{rid}/mean" in logged, rid


# an explicit checkpoint path; the same resume (and the auto-discovered one) runs in the fast suite in
# test_resume_runs.py, so this one is in make test-full
@pytest.mark.slow
def test_resume_continues_from_the_checkpoint_step(summary_run, tmp_path):
    run_dir = tmp_path / "resumed"
    train(run_dir, "task=summary", "lora.last_k=2", "train.max_steps=4", "logger=none",
          f"train.resume_from={summary_run / 'checkpoint-2'}")
    assert [r["global_step/max_steps"] for r in step_logs(run_dir)] == ["3/4", "4/4"]
    assert (run_dir / "checkpoint-4").is_dir() and not (run_dir / "checkpoint-2").exists()


def test_vision_lora_trains_the_tower_only_and_the_loader_applies_it(session_cache, tmp_path):
    """lora.vision=true (aligner frozen): the adapter carries LoRA on the vision tower's blocks and none on the
    merger; trainable_parameters.json says so; the one loader (infer / evaluate / export) applies it."""
    import torch

    from bbuqc.models.adapters import read_adapter
    from bbuqc.models.loading import load_model_and_processor
    from bbuqc.models.tiny import ensure_tiny_model

    run_dir = tmp_path / "run"
    train(run_dir, "task=summary", "algo=sft", "lora.vision=true", "train.max_steps=2", "train.learning_rate=1e-2")
    _, keys = adapter_blocks(run_dir / "checkpoint-2")
    assert [k for k in keys if ".visual.blocks." in k] and not [k for k in keys if "merger" in k]
    info = read_adapter(run_dir / "checkpoint-2")
    assert (info.vision, info.aligner) == (True, False) and info.blocks == (2, 3)
    names = json.loads((run_dir / "trainable_parameters.json").read_text())["names"]
    assert any(".visual.blocks." in n for n in names) and not any("merger" in n for n in names)
    assert all("lora_" in n for n in names)  # LoRA only: the tower's own weights stay frozen

    base, _ = load_model_and_processor(ensure_tiny_model("vl"), multimodal=True)
    tuned, _ = load_model_and_processor(ensure_tiny_model("vl"), multimodal=True, adapter=run_dir / "checkpoint-2")
    weights, tuned_weights = base.state_dict(), tuned.state_dict()
    qkv = next(k for k in weights if "visual.blocks.0.attn.qkv.weight" in k)
    merger = [k for k in weights if "visual.merger" in k]
    assert not torch.equal(weights[qkv], tuned_weights[qkv])  # the tower's LoRA merged in
    assert merger and all(torch.equal(weights[k], tuned_weights[k]) for k in merger)


def test_verdict_run(session_cache, tmp_path):
    run_dir = tmp_path / "run"
    train(run_dir, "task=verdict", "reward=verdict", "lora.last_k=1", "train.max_steps=2")
    blocks, keys = adapter_blocks(run_dir / "checkpoint-2")
    assert blocks == {3} and all(k.startswith("base_model.model.model.layers.3.") for k in keys)
    logs = step_logs(run_dir)
    assert len(logs) == 2
    for rid in VERDICT:
        assert all(f"rewards/{rid}/mean" in r for r in logs), rid
    rows = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert rows and {r["group_label"] for r in rows} == {"通过", "不通过"}
    run = read_run(find_run_files(run_dir)[0])
    assert run.job_type == "train-verdict"
    # the untrained tiny model answers nothing valid: every completion of a prompt gets the same reward, and
    # the run says so at its end instead of ending as if all were well
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["no_signal_step_share"] == 1.0
    assert any(w.startswith("no learning signal in 100% of the GRPO steps") for w in summary["warnings"])
    assert {f"train/rewards/{rid}/mean" for rid in VERDICT} <= set().union(*run.history)


def test_chord_run_logs_mu_every_step(session_cache, tmp_path):
    run_dir = tmp_path / "run"
    train(run_dir, "task=verdict", "reward=verdict", "chord=on", "chord.mu_warmup_steps=2", "chord.mu_peak=0.8",
          "train.max_steps=3", "logger=none")
    mus = [r["chord/mu"] for r in step_logs(run_dir)]
    # ms-swift's schedule at global steps 0, 1, 2: linear warm-up to the peak over 2 steps
    assert mus == pytest.approx([0.0, 0.4, 0.8])
    sft = [json.loads(line) for line in (run_dir / "data" / "chord_sft.jsonl").read_text().splitlines()]
    assert sft and all(row["messages"][-1]["role"] == "assistant" for row in sft)
    assert (run_dir / "checkpoint-3").is_dir()


def test_bad_stage_a_line_fails_before_anything_is_written(session_cache, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"group_id": "g1", "mission": "挡风板安装检查", "label": "pass"\n')
    run_dir = tmp_path / "run"
    proc = run_cli("train", "task=verdict", "reward=verdict", f"data.stage_a_jsonl=[{bad}]", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:1:")
    # only what Hydra itself writes: no data, no W&B run, no checkpoint
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "cli.log"]


def test_wandb_run_is_finished_when_training_fails(session_cache, tmp_path):
    from bbuqc.models.tiny import ensure_tiny_model

    broken = tmp_path / "broken-model"
    broken.mkdir()
    for f in ensure_tiny_model("text").iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:100] if f.suffix == ".safetensors" else f.read_bytes())
    run_dir = tmp_path / "run"
    proc = run_cli("train", "task=verdict", "reward=verdict", f"model.path={broken}", "model.model_type=qwen2",
                   "model.template=qwen", f"hydra.run.dir={run_dir}")
    assert proc.returncode != 0
    (wandb_file,) = find_run_files(run_dir)
    assert read_run(wandb_file).exit_code == 1


def test_reward_errors_are_counted_per_reward_every_step(summary_run):
    for record in step_logs(summary_run):
        assert {f"rewards/{rid}/errors" for rid in SUMMARY_FULL} <= set(record)
        # the tiny model's output is nonsense, but no scorer fails on it
        assert all(record[f"rewards/{rid}/errors"] == 0 for rid in SUMMARY_FULL)
