"""The config tree -> ms-swift argument mapping, field by field, for every preset (GPU ones too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import bbuqc.config.store  # noqa: F401
from bbuqc.cli import CONF_DIR
from bbuqc.config.validate import problems
from bbuqc.training.args import RunInputs, swift_kwargs

INPUTS = RunInputs(
    run_dir=Path("/runs/r1"), model_dir="/models/m", model_type="qwen2_5_vl", template="qwen2_5_vl",
    dataset=Path("/runs/r1/data/train.jsonl"), lora_regex="^x$", chord_sft_dataset=Path("/runs/r1/data/chord_sft.jsonl"),
)


def kwargs(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    assert problems(cfg, "train") == [], problems(cfg, "train")
    return swift_kwargs(cfg, INPUTS)


def test_default_cpu_mapping():
    kw = kwargs("train.max_steps=7", "lora.rank=4", "lora.alpha=8", "lora.dropout=0.1", "train.beta=0.0")
    assert kw == {
        "rlhf_type": "grpo", "model": "/models/m", "model_type": "qwen2_5_vl", "template": "qwen2_5_vl",
        "check_model": False, "use_hf": True, "torch_dtype": "float32",
        "tuner_type": "lora", "target_regex": "^x$", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "freeze_vit": True, "freeze_aligner": True,
        "dataset": ["/runs/r1/data/train.jsonl"], "split_dataset_ratio": 0.0, "remove_unused_columns": False,
        "dataset_num_proc": 1, "dataloader_num_workers": 0, "max_length": 2048,
        "reward_funcs": [
            "summary.format", "summary.header", "summary.strict", "summary.parse", "summary.no_dup_keys",
            "summary.dataset", "summary.objects_total_lb", "summary.category_recall",
            "summary.content_structured_tversky", "summary.text_bbu", "summary.notes_bbu",
            "summary.group_stats_presence",
        ],
        "reward_weights": [1.0, 2.0, 2.0, 1.5, 2.0, 0.5, 1.0, 0.5, 1.8, 0.8, 0.3, 0.2],
        "num_generations": 2, "generation_batch_size": 4, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1, "max_completion_length": 48, "temperature": 1.0, "beta": 0.0,
        "learning_rate": 1e-4, "max_steps": 7, "seed": 42, "data_seed": 42,
        "output_dir": "/runs/r1", "add_version": False, "save_strategy": "steps", "save_steps": 2, "save_total_limit": None,
        "save_only_model": False, "logging_steps": 1, "report_to": ["wandb"], "resume_from_checkpoint": None,
        "eval_strategy": "no",
        "bf16": False, "fp16": False, "use_cpu": True, "gradient_checkpointing": False,
    }


def test_reward_weights_follow_overrides_in_order():
    kw = kwargs("task=verdict", "reward=verdict", "reward.weights.verdict.label=4", "reward.weights.verdict.consistency=0")
    assert kw["reward_funcs"] == ["verdict.format", "verdict.label", "verdict.consistency"]
    assert kw["reward_weights"] == [1.0, 4.0, 0.0]  # weight 0: still computed and logged


def test_logger_none_reports_nowhere_and_resume_maps(tmp_path):
    kw = kwargs("logger=none", f"train.resume_from={tmp_path}")
    assert kw["report_to"] == [] and kw["resume_from_checkpoint"] == str(tmp_path)


def test_chord_mapping():
    kw = kwargs("chord=on", "chord.mu_peak=0.7", "chord.mu_valley=0.1", "chord.mu_warmup_steps=3",
                "chord.mu_decay_steps=9", "chord.sft_batch_size=2", "chord.phi=true")
    assert {k: v for k, v in kw.items() if k.startswith("chord_")} == {
        "chord_sft_dataset": ["/runs/r1/data/chord_sft.jsonl"], "chord_sft_per_device_train_batch_size": 2,
        "chord_enable_phi_function": True, "chord_mu_warmup_steps": 3, "chord_mu_decay_steps": 9,
        "chord_mu_peak": 0.7, "chord_mu_valley": 0.1,
    }
    assert not [k for k in kwargs("chord=off") if k.startswith("chord_")]


GPU = {
    "gpu": {"torch_dtype": "bfloat16", "bf16": True, "fp16": False, "use_cpu": False, "gradient_checkpointing": True},
    "gpu_vllm": {"torch_dtype": "bfloat16", "bf16": True, "use_cpu": False, "use_vllm": True, "vllm_mode": "colocate",
                 "vllm_gpu_memory_utilization": 0.4, "sleep_level": 1},
    "gpu_vllm_server": {"torch_dtype": "bfloat16", "bf16": True, "use_vllm": True, "vllm_mode": "server",
                        "vllm_server_host": ["127.0.0.1"], "vllm_server_port": [8000]},
    "gpu_zero2": {"torch_dtype": "bfloat16", "deepspeed": "zero2", "use_vllm": True, "vllm_mode": "colocate",
                  "generation_batch_size": 32},
    "gpu_zero3": {"torch_dtype": "bfloat16", "deepspeed": "zero3", "use_vllm": True, "vllm_mode": "colocate",
                  "vllm_gpu_memory_utilization": 0.3, "generation_batch_size": 32},
}


@pytest.mark.parametrize("preset", GPU)
def test_gpu_presets(preset):
    kw = kwargs(f"compute={preset}")
    assert {k: kw.get(k) for k in GPU[preset]} == GPU[preset]
    if "vllm" not in preset and "zero" not in preset:
        assert "use_vllm" not in kw and "deepspeed" not in kw


def test_ms_swift_accepts_the_mapping():
    """The names are real RLHFArguments fields (a typo would be silently dropped elsewhere)."""
    import dataclasses

    from swift import RLHFArguments

    fields = {f.name for f in dataclasses.fields(RLHFArguments)}
    for preset in ["cpu", *GPU]:
        assert set(kwargs(f"compute={preset}", "chord=on")) <= fields


def test_sft_maps_to_train_arguments_without_grpo_fields():
    from dataclasses import fields

    from swift import SftArguments

    kw = kwargs("algo=sft", "task=verdict")
    assert "rlhf_type" not in kw and not [k for k in kw if k.startswith(("reward", "num_generations", "chord_"))]
    # the same LoRA, data, outputs and optimiser as GRPO
    grpo = kwargs("task=verdict")
    shared = ("target_regex", "lora_rank", "freeze_vit", "freeze_aligner", "dataset", "output_dir", "save_steps",
              "learning_rate", "max_steps", "resume_from_checkpoint")
    assert {k: kw[k] for k in shared} == {k: grpo[k] for k in shared}
    # every key is an ms-swift SFT argument
    assert set(kw) <= {f.name for f in fields(SftArguments)}


def test_an_adapter_is_continued_not_merged(tmp_path):
    from dataclasses import replace

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["task=verdict"])
    kw = swift_kwargs(cfg, replace(INPUTS, adapter="/runs/sft/checkpoint-8"))
    assert kw["adapters"] == ["/runs/sft/checkpoint-8"]
    assert "adapters" not in swift_kwargs(cfg, INPUTS)


@pytest.mark.parametrize("compute", ["cpu", "gpu", "gpu_vllm", "gpu_vllm_server", "gpu_zero2", "gpu_zero3"])
def test_sft_mapping_of_every_compute_preset_is_ms_swift_arguments(compute):
    from dataclasses import fields

    from swift import SftArguments

    overrides = ["algo=sft", "task=verdict", f"compute={compute}"]
    assert set(kwargs(*overrides)) <= {f.name for f in fields(SftArguments)}


def test_sft_on_a_vllm_preset_trains_without_rollout_arguments():
    kw = kwargs("algo=sft", "compute=gpu_vllm")
    assert kw["bf16"] is True and not [k for k in kw if k.startswith(("use_vllm", "vllm_", "sleep_level"))]
