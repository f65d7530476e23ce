"""The typed GPU tuning fields (issue 31.4): vLLM memory, tensor parallel, context, sleep / offload,
steps_per_generation and GSPO's importance_sampling_level. Each maps to its ms-swift argument, and a value
out of range, or a setting that nothing would read, is refused in one line before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import compose, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.training.args import RunInputs, swift_kwargs

INPUTS = RunInputs(run_dir=Path("/runs/r1"), model_dir="/models/m", model_type="qwen2", template="qwen",
                   dataset=Path("/runs/r1/data/train.jsonl"), lora_regex="^x$")


def _cfg(*overrides: str, command: str = "train"):
    return compose(command, overrides)


def _kwargs(*overrides: str) -> dict:
    cfg = _cfg(*overrides)
    assert problems(cfg, "train") == [], problems(cfg, "train")
    return swift_kwargs(cfg, INPUTS)


def _problems(*overrides: str, command: str = "train") -> list[str]:
    return problems(_cfg(*overrides, command=command), command)


def test_colocated_vllm_fields_map_to_ms_swift_names():
    kw = _kwargs("compute=gpu_vllm", "compute.nproc_per_node=4", "compute.vllm_gpu_memory_utilization=0.25",
                 "compute.vllm_tensor_parallel_size=2", "compute.vllm_max_model_len=4096", "compute.sleep_level=2",
                 "compute.offload_model=true", "compute.offload_optimizer=true")
    assert {k: kw[k] for k in ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "vllm_max_model_len",
                               "sleep_level", "offload_model", "offload_optimizer")} == {
        "vllm_gpu_memory_utilization": 0.25, "vllm_tensor_parallel_size": 2, "vllm_max_model_len": 4096,
        "sleep_level": 2, "offload_model": True, "offload_optimizer": True}


def test_presets_keep_their_sleep_level_and_leave_the_context_to_the_model():
    assert _kwargs("compute=gpu_vllm")["sleep_level"] == 1
    kw = _kwargs("compute=gpu_vllm_server")
    assert not [k for k in kw if k in ("sleep_level", "vllm_tensor_parallel_size", "vllm_max_model_len",
                                       "offload_model", "offload_optimizer")]
    assert "vllm_max_model_len" not in _kwargs("compute=gpu_vllm")  # null: vLLM reads the model's own


def test_steps_per_generation_sets_the_rollout_size_ms_swift_expects():
    kw = _kwargs("compute=gpu", "compute.nproc_per_node=2", "train.per_device_batch_size=2",
                 "train.gradient_accumulation_steps=2", "train.steps_per_generation=4")
    # ms-swift accepts both only when generation_batch_size == per_device x world x steps_per_generation
    assert kw["steps_per_generation"] == 4 and kw["generation_batch_size"] == 2 * 2 * 4
    assert "steps_per_generation" not in _kwargs()


def test_importance_sampling_level_maps_and_gspo_composes():
    assert _kwargs("train.importance_sampling_level=sequence")["importance_sampling_level"] == "sequence"
    assert _kwargs()["importance_sampling_level"] == "token"


@pytest.mark.parametrize(("overrides", "line"), [
    (["compute=gpu_vllm", "compute.vllm_gpu_memory_utilization=0"],
     "compute.vllm_gpu_memory_utilization=0.0: expected a fraction of GPU memory, 0 < x <= 1"),
    (["compute=gpu_vllm", "compute.vllm_gpu_memory_utilization=1.5"],
     "compute.vllm_gpu_memory_utilization=1.5: expected a fraction of GPU memory, 0 < x <= 1"),
    (["compute=gpu_zero2", "compute.vllm_tensor_parallel_size=3"],
     "compute.vllm_tensor_parallel_size=3: must divide compute.nproc_per_node=8 (each vLLM engine spans that "
     "many of the node's training GPUs)"),
    (["compute=gpu_vllm", "compute.vllm_tensor_parallel_size=0"],
     "compute.vllm_tensor_parallel_size=0: expected an integer >= 1"),
    (["compute=gpu_vllm", "compute.vllm_max_model_len=0"],
     "compute.vllm_max_model_len=0: expected an integer >= 1 (or null)"),
    (["compute=gpu_vllm", "compute.sleep_level=3"], "compute.sleep_level=3: expected 0, 1 or 2"),
    (["compute=gpu", "compute.offload_model=true"],
     "compute.offload_model=true: a setting of colocated vLLM rollouts (compute.rollout=vllm_colocate, e.g. "
     "compute=gpu_vllm); compute.rollout=hf: it has no vLLM engine"),
    (["compute=gpu_vllm_server", "compute.sleep_level=1"],
     "compute.sleep_level=1: a setting of colocated vLLM rollouts (compute.rollout=vllm_colocate, e.g. "
     "compute=gpu_vllm); compute.rollout=vllm_server: set it on the `swift rollout` server instead"),
    (["compute=gpu_vllm", "compute.vllm_max_model_len=48"],
     "compute.vllm_max_model_len=48: leaves no room for a prompt before train.max_completion_length=48 "
     "completion tokens"),
    (["train.steps_per_generation=0"], "train.steps_per_generation=0: expected an integer >= 1 (or null)"),
    (["train.steps_per_generation=2", "train.generation_batch_size=8"],
     "train.steps_per_generation=2: set it or train.generation_batch_size=8, not both (the rollout is "
     "per_device_batch_size x GPUs x steps_per_generation)"),
    (["algo=sft", "train.steps_per_generation=2"],
     "train.steps_per_generation: rollouts are GRPO's (algo=grpo); SFT generates none"),
    (["algo=sft", "train.importance_sampling_level=sequence"],
     "train.importance_sampling_level=sequence: an importance ratio is GRPO's (algo=grpo); SFT has none"),
])
def test_refusals_name_the_field(overrides, line):
    assert line in _problems(*overrides)


def test_the_owned_fields_refuse_train_extra_and_name_the_typed_field():
    found = _problems("compute=gpu_vllm", "+train.extra.sleep_level=2", "+train.extra.steps_per_generation=2",
                      "+train.extra.vllm_tensor_parallel_size=1")
    assert "train.extra.sleep_level: bbuqc sets sleep_level; use compute.sleep_level instead" in found
    assert "train.extra.steps_per_generation: bbuqc sets steps_per_generation; use train.steps_per_generation " \
           "instead" in found
    assert "train.extra.vllm_tensor_parallel_size: bbuqc sets vllm_tensor_parallel_size; use " \
           "compute.vllm_tensor_parallel_size instead" in found


def test_stage_a_checks_the_same_memory_fraction():
    assert "compute.vllm_gpu_memory_utilization=2.0: expected a fraction of GPU memory, 0 < x <= 1" in \
        _problems("compute=gpu", "infer.backend=vllm", "compute.vllm_gpu_memory_utilization=2", command="infer")


def test_bad_value_exits_2_in_one_line_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "compute=gpu_vllm", "compute.vllm_gpu_memory_utilization=1.2", f"hydra.run.dir={run_dir}",
                   env={"CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: compute.vllm_gpu_memory_utilization=1.2: expected a fraction of GPU memory, 0 < x <= 1" \
        in proc.stderr.splitlines()
    assert not run_dir.exists()


def test_importance_sampling_levels_are_ms_swifts():
    import typing

    from swift import RLHFArguments

    from bbuqc.config.schema import ImportanceSamplingLevel

    hint = typing.get_type_hints(RLHFArguments)["importance_sampling_level"]
    assert set(typing.get_args(hint)) == {m.value for m in ImportanceSamplingLevel}


def test_every_mapped_name_is_an_ms_swift_argument():
    import dataclasses

    from swift import RLHFArguments

    kw = _kwargs("compute=gpu_vllm", "compute.vllm_max_model_len=4096", "train.steps_per_generation=1",
                 "train.importance_sampling_level=sequence")
    assert set(kw) <= {f.name for f in dataclasses.fields(RLHFArguments)}
