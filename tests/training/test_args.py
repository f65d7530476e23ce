"""The config tree -> ms-swift argument mapping, field by field, for every preset (GPU ones too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.training.args import RunInputs, swift_kwargs

INPUTS = RunInputs(
    run_dir=Path("/runs/r1"), model_dir="/models/m", model_type="qwen2_5_vl", template="qwen2_5_vl",
    dataset=Path("/runs/r1/data/train.jsonl"), lora_regex="^x$", chord_sft_dataset=Path("/runs/r1/data/chord_sft.jsonl"),
)


def kwargs(*overrides: str) -> dict:
    cfg = compose("train", overrides)
    assert problems(cfg, "train") == [], problems(cfg, "train")
    return swift_kwargs(cfg, INPUTS)


def test_default_cpu_mapping():
    kw = kwargs("train.max_steps=7", "lora.rank=4", "lora.alpha=8", "lora.dropout=0.1", "train.beta=0.0")
    assert kw == {
        "rlhf_type": "grpo", "model": "/models/m", "model_type": "qwen2_5_vl", "template": "qwen2_5_vl",
        "check_model": False, "use_hf": True, "torch_dtype": "float32",
        "tuner_type": "lora", "target_regex": "^x$", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "freeze_vit": True, "freeze_aligner": True, "modules_to_save": [],
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
        # GRPO settings and the optimiser schedule: ms-swift's own defaults unless overridden
        "lr_scheduler_type": "cosine", "warmup_ratio": 0.0, "warmup_steps": 0, "weight_decay": 0.1,
        "max_grad_norm": 1.0, "loss_type": "grpo", "epsilon": 0.2, "epsilon_high": None, "num_iterations": 1,
        "scale_rewards": None, "advantage_estimator": "grpo", "top_p": 1.0, "top_k": -1,
        "repetition_penalty": 1.0, "dynamic_sample": False, "max_resample_times": 3, "log_completions": False,
        "importance_sampling_level": "token",
    }


def test_reward_weights_follow_overrides_in_order():
    kw = kwargs("task=verdict", "reward=verdict", "reward.weights.verdict.label=4", "reward.weights.verdict.consistency=0")
    assert kw["reward_funcs"] == ["verdict.format", "verdict.label", "verdict.consistency"]
    assert kw["reward_weights"] == [1.0, 4.0, 0.0]  # weight 0: still computed and logged


def test_logger_none_reports_nowhere_and_resume_maps(tmp_path):
    from test_checkpoints import complete_checkpoint

    complete_checkpoint(tmp_path)
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

    cfg = compose("train", ["task=verdict"])
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


# --- GRPO settings, train.extra, resume completeness (issue 13 items 3 and 5, issue 16.3) ---


def test_every_grpo_setting_maps_to_its_ms_swift_argument():
    kw = kwargs("train.loss_type=dapo", "train.epsilon=0.2", "train.epsilon_high=0.28", "train.num_iterations=2",
                "train.scale_rewards=batch", "train.advantage_estimator=rloo", "train.top_p=0.9", "train.top_k=20",
                "train.repetition_penalty=1.1", "train.dynamic_sample=true", "train.max_resample_times=5",
                "train.lr_scheduler_type=constant_with_warmup", "train.warmup_ratio=0.1", "train.warmup_steps=3",
                "train.weight_decay=0.0", "train.max_grad_norm=0.5", "train.save_total_limit=2",
                "train.log_completions_steps=2")
    assert {k: kw[k] for k in (
        "loss_type", "epsilon", "epsilon_high", "num_iterations", "scale_rewards", "advantage_estimator", "top_p",
        "top_k", "repetition_penalty", "dynamic_sample", "max_resample_times", "lr_scheduler_type", "warmup_ratio",
        "warmup_steps", "weight_decay", "max_grad_norm", "save_total_limit", "log_completions")} == {
        "loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "num_iterations": 2, "scale_rewards": "batch",
        "advantage_estimator": "rloo", "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1, "dynamic_sample": True,
        "max_resample_times": 5, "lr_scheduler_type": "constant_with_warmup", "warmup_ratio": 0.1, "warmup_steps": 3,
        "weight_decay": 0.0, "max_grad_norm": 0.5, "save_total_limit": 2, "log_completions": True}


def test_the_optimiser_schedule_reaches_sft_too():
    kw = kwargs("algo=sft", "task=verdict", "train.lr_scheduler_type=linear", "train.warmup_steps=2",
                "train.weight_decay=0.01", "train.max_grad_norm=2.0")
    assert (kw["lr_scheduler_type"], kw["warmup_steps"], kw["weight_decay"], kw["max_grad_norm"]) == ("linear", 2, 0.01, 2.0)
    assert "loss_type" not in kw and "log_completions" not in kw


def test_extra_passes_any_other_ms_swift_argument_through():
    kw = kwargs("+train.extra.log_entropy=true", "+train.extra.overlong_filter=true")
    assert kw["log_entropy"] is True and kw["overlong_filter"] is True


def test_every_argument_bbuqc_sets_names_its_bbuqc_field():
    """OWNED is what lets train.extra refuse a key with the field to use: it must cover every emitted key."""
    from bbuqc.training.args import OWNED

    for overrides in (["chord=on"], ["algo=sft", "task=verdict"], *([f"compute={p}"] for p in GPU)):
        assert set(kwargs(*overrides)) <= set(OWNED), overrides
    cfg = compose("train", ["task=verdict"])
    from dataclasses import replace

    assert set(swift_kwargs(cfg, replace(INPUTS, adapter="/a"))) <= set(OWNED)


def test_modules_to_save_reach_ms_swift_and_bad_names_are_refused():
    assert kwargs("lora.modules_to_save=[embed_tokens,lm_head]")["modules_to_save"] == ["embed_tokens", "lm_head"]
    for bad in ("[visual]", "[lm_head,lm_head]"):
        found = _problems(f"lora.modules_to_save={bad}")
        assert len(found) == 1 and found[0].startswith("lora.modules_to_save=") and \
            found[0].endswith("expected distinct names among embed_tokens, lm_head"), found


def test_vision_options_reach_ms_swift_and_are_refused_where_they_cannot_train():
    assert (kwargs()["freeze_vit"], kwargs()["freeze_aligner"]) == (True, True)  # the seeds: LLM-only LoRA
    kw = kwargs("lora.vision=true", "lora.aligner=true")
    assert (kw["freeze_vit"], kw["freeze_aligner"]) == (False, False)
    assert _problems("model=tiny_text", "task=verdict", "reward=verdict", "lora.vision=true") == [
        "lora.vision=true: model=tiny_text is a text-only model (model.multimodal=false); it has no vision tower "
        "or aligner to train"]
    (line,) = _problems("compute=gpu_vllm", "lora.aligner=true", "+train.extra.vllm_enable_lora=true")
    assert line.startswith("train.extra.vllm_enable_lora=true: vLLM applies a LoRA to the LLM only") and \
        "lora.aligner=true" in line


def _problems(*overrides: str) -> list[str]:
    cfg = compose("train", overrides)
    return problems(cfg, "train")


@pytest.mark.parametrize("overrides, line", [
    (["train.epsilon_high=0.1"], "train.epsilon_high=0.1: expected >= train.epsilon=0.2 (or null: epsilon)"),
    (["train.top_p=0"], "train.top_p=0.0: expected 0 < top_p <= 1"),
    (["train.top_p=1.5"], "train.top_p=1.5: expected 0 < top_p <= 1"),
    (["train.log_completions_steps=3", "train.logging_steps=2"],
     "train.log_completions_steps=3: expected a multiple of train.logging_steps=2"),
    (["+train.extra.log_entropyy=true"],
     "train.extra.log_entropyy: not an ms-swift RLHFArguments argument (ms-swift 4.6.0); did you mean log_entropy"),
    (["+train.extra.learning_rate=0.1"], "train.extra.learning_rate: bbuqc sets learning_rate; use train.learning_rate instead"),
    (["+train.extra.epsilon_high=0.3"], "train.extra.epsilon_high: bbuqc sets epsilon_high; use train.epsilon_high instead"),
])
def test_bad_grpo_settings_fail_before_weights_load_naming_the_field(overrides, line):
    found = _problems(*overrides)
    assert len(found) == 1 and found[0].startswith(line), found


@pytest.mark.parametrize("override, line", [
    ("train.loss_type=ppo", "train.loss_type='ppo': expected one of bnpo, cispo, dapo, dr_grpo, fipo, grpo, real, sapo"),
    ("train.advantage_estimator=ppo", "train.advantage_estimator='ppo': expected one of grpo, rloo, reinforce_plus_plus"),
    ("train.scale_rewards=std", "train.scale_rewards='std': expected one of null, group, batch, none, gdpo"),
    ("train.lr_scheduler_type=cosin", "train.lr_scheduler_type='cosin': expected one of linear, cosine,"),
])
def test_ms_swift_choices_are_refused_while_composing_naming_the_field(override, line):
    """ms-swift's own closed sets are Enum fields (generated from ms-swift): Hydra refuses a bad value."""
    from hydra.errors import HydraException

    from bbuqc.cli import compose_error_lines

    with pytest.raises(HydraException) as err:
        compose("train", [override])
    (found,) = compose_error_lines(err.value)
    assert found.startswith(line), found


def test_an_incomplete_resume_checkpoint_is_refused_naming_what_is_missing(tmp_path):
    from test_checkpoints import complete_checkpoint

    ckpt = complete_checkpoint(tmp_path / "checkpoint-4")
    (ckpt / "optimizer.pt").unlink()
    (ckpt / "scheduler.pt").unlink()
    (found,) = _problems(f"train.resume_from={ckpt}")
    assert found.startswith(f"train.resume_from={ckpt}: missing optimizer.pt, scheduler.pt")
    assert _problems("train.resume_from=auto") == []  # auto never fails: no checkpoint -> start fresh
