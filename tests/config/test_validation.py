"""Bad overrides fail before anything heavy loads: one line naming the field, exit 2, no run folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import run_cli

REPO = Path(__file__).resolve().parents[2]

BAD = [
    (["+reward.weights.summary.fmt=1"], "reward.weights.summary.fmt", "unknown reward id"),
    (["+reward.weights.summary_format=1"], "reward.weights.summary_format", "'summary.format'"),
    (["reward.weights.summary.header=abc"], "reward.weights.summary.header", "finite number"),
    (["reward.weights.summary.header=nan"], "reward.weights.summary.header", "finite number"),
    # reward.params (tests/config/test_reward_params.py has every kind in-process)
    (["task=verdict", "reward=verdict_cost", "reward.params.verdict.cost.false_pass=-4"],
     "reward.params.verdict.cost.false_pass=-4", "expected a finite number >= 0"),
    (["task=verdict", "reward=verdict_cost", "reward.params.verdict.cost.false_fail=high"],
     "reward.params.verdict.cost.false_fail='high'", "expected a finite number >= 0"),
    (["task=verdict", "reward=verdict_cost", "+reward.params.verdict.cost.cost=1"],
     "reward.params.verdict.cost.cost", "declares no parameter 'cost'"),
    (["task=verdict", "reward=verdict_cost", "+reward.params.verdict.price.false_pass=1"],
     "reward.params.verdict.price", "unknown reward id 'verdict.price'"),
    (["train.generation_batch_size=5"], "train.generation_batch_size=5", "train.num_generations"),
    (["train.num_generations=1"], "train.num_generations=1", "at least 2"),
    (["chord=on", "chord.mu_peak=null"], "chord.mu_peak", "required when chord=on"),
    (["chord=on", "chord.mu_valley=0.95"], "chord.mu_valley=0.95", "mu_valley <= mu_peak"),
    (["chord=on", "chord.sft_batch_size=0"], "chord.sft_batch_size=0", ">= 1"),
    (["lora.last_k=0"], "lora.last_k=0", ">= 1"),
    (["lora.last_k=5"], "lora.last_k=5", "only 4 LLM blocks"),
    (["task=verdict", "reward=summary_full"], "reward=summary_full", "task=verdict"),
    (["algo=sft", "chord=on"], "chord=on", "algo=grpo"),
    (["algo.name=nope"], "algo.name='nope'", "expected one of grpo, sft"),
    # every closed set is an Enum field: Hydra refuses the value while composing, the entry point names
    # the field and what it takes
    (["compute.device=gpu"], "compute.device='gpu'", "expected one of cpu, cuda"),
    (["compute.precision=fp8"], "compute.precision='fp8'", "expected one of fp32, bf16, fp16"),
    (["compute.rollout=vllm"], "compute.rollout='vllm'", "expected one of hf, vllm_colocate, vllm_server"),
    (["compute.deepspeed=zero1"], "compute.deepspeed='zero1'", "expected one of null, zero2, zero3"),
    (["logger.backend=tensorboard"], "logger.backend='tensorboard'", "expected one of wandb, none"),
    (["logger.mode=disabled"], "logger.mode='disabled'", "expected one of offline, online"),
    (["data.source=hub"], "data.source='hub'", "expected one of synthetic, files"),
    (["task.name=caption"], "task.name='caption'", "expected one of summary, verdict"),
    (["task=verdict", "train.select_by=val/nope"], "train.select_by=val/nope", "val/false_pass_rate"),
    (["task=verdict", "train.select_constraint='false pass < 5%'"], "train.select_constraint='false pass < 5%'",
     "expected <val/ metric><op><number>"),
    (["task=verdict", "train.select_constraint='val/nope<=0.05'"], "train.select_constraint='val/nope<=0.05'",
     "does not produce val/nope"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5", "0 <= val_fraction < 1"),
    (["train.eval_steps=2"], "train.eval_steps=2", "data.val_fraction"),
    (["train.early_stop_patience=2"], "train.early_stop_patience", "train.eval_steps"),
    (["model=tiny_text"], "model=tiny_text", "VL model"),
    (["model.adapter=/nonexistent/checkpoint-2"], "model.adapter=/nonexistent/checkpoint-2", "no such checkpoint"),
    (["model=qwen2_5_vl_7b"], "model.path", "required"),
    (["model=qwen2_5_vl_7b", "model.path=/nonexistent/ckpt"], "model.path=/nonexistent/ckpt", "no such folder"),
    (["data.stage_a_jsonl=[/nonexistent/a.jsonl]", "task=verdict", "reward=verdict"], "data.stage_a_jsonl[0]", "no such file"),
    (["compute.rollout=vllm_colocate"], "compute.rollout=vllm_colocate", "compute.device=cuda"),
    (["train.resume_from=/nonexistent/checkpoint-2"], "train.resume_from", "no such checkpoint"),
]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return run_cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}", python=["-X", "importtime"])


@pytest.mark.parametrize("overrides,field,expected", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_override_fails_naming_the_field(overrides, field, expected, tmp_path):
    proc = _run(overrides, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert field in errors[0] and expected in errors[0], errors[0]
    # validation runs before Hydra makes the run folder and before any heavy import
    assert not (tmp_path / "run").exists()
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "transformers", "swift", "datasets"}


@pytest.mark.parametrize(
    "overrides,key",
    [(["mission=nope"], "mission/nope"), (["lora.last_k=abc"], "lora.last_k"), (["lora.nope=1"], "lora.nope")],
)
def test_hydra_rejects_unknown_options_and_types(overrides, key, tmp_path):
    proc = _run(overrides, tmp_path)
    assert proc.returncode != 0
    assert key in proc.stderr
    assert not (tmp_path / "run").exists()


def test_choice_values_compose_as_the_strings_users_type():
    """An Enum member is its string: code comparing with "cpu" and configs written as text keep working."""
    from omegaconf import OmegaConf
    from support import compose

    from bbuqc.config.schema import Device, Rollout, choice_names

    cfg = compose("train", ["compute=gpu_vllm", "infer.backend=vllm"])
    assert cfg.compute.device is Device.cuda and cfg.compute.device == "cuda" and f"{cfg.compute.device}" == "cuda"
    assert cfg.compute.rollout == Rollout.vllm_colocate and cfg.infer.backend == "vllm"
    assert "device: cuda" in OmegaConf.to_yaml(cfg)
    assert OmegaConf.to_container(cfg.compute, enum_to_str=True)["device"] == "cuda"
    assert choice_names("compute.deepspeed") == ["null", "zero2", "zero3"]
    assert choice_names("compute.nproc_per_node") is None and choice_names("nope.x") is None


def test_infer_and_evaluate_name_a_bad_choice_too(tmp_path):
    for command, override, line in (("infer", "infer.backend=onnx", "error: infer.backend='onnx': expected one of hf, vllm"),
                                     ("evaluate", "compute.device=tpu", "error: compute.device='tpu': expected one of cpu, cuda")):
        proc = run_cli(command, override, f"hydra.run.dir={tmp_path / command}")
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [line], proc.stderr[-2000:]
