"""The one place where the config tree becomes ms-swift arguments.

Every ms-swift argument name bbuqc uses lives in this module. `swift_kwargs` is pure (no
ms-swift import) so the mapping of every preset, GPU ones included, is testable on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bbuqc.config.validate import effective_generation_batch_size, reward_weights

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class RunInputs:
    """What the runner prepared before the arguments can be built."""

    run_dir: Path
    model_dir: str
    model_type: str
    template: str
    dataset: Path  # training rows (JSONL): GRPO prompts + reward columns, or SFT conversations
    lora_regex: str
    chord_sft_dataset: Path | None = None
    adapter: str | None = None  # a LoRA checkpoint to continue (model.adapter)
    validation: Path | None = None  # held-out rows, read by bbuqc's validation callback


def swift_kwargs(cfg: DictConfig, inputs: RunInputs) -> dict[str, Any]:
    """The ms-swift arguments of the run: `RLHFArguments` for algo=grpo, `TrainArguments` for algo=sft."""
    kw = _common_kwargs(cfg, inputs)
    kw.update(_grpo_kwargs(cfg, inputs) if cfg.algo.name == "grpo" else _sft_kwargs(cfg))
    # compute.rollout is GRPO's (SFT generates nothing), so an SFT run on a vLLM preset just trains
    kw.update(_compute_kwargs(cfg.compute, rollouts=cfg.algo.name == "grpo"))
    # train.extra last: validation (training/checks.py extra_arguments) already refused every key set above
    kw.update(OmegaConf.to_container(cfg.train.extra, resolve=True) or {})
    return kw


# Every ms-swift argument bbuqc sets, and the bbuqc field (or config node) that decides it: train.extra
# refuses these keys and names the field instead, so one setting never has two spellings.
# tests/training/test_args.py proves every key swift_kwargs emits, on every preset, is listed here.
OWNED = {
    "model": "model.path / model=<preset>", "model_type": "model=<preset>", "template": "model=<preset>",
    "check_model": "(bbuqc: offline)", "use_hf": "(bbuqc: offline)", "torch_dtype": "compute.precision",
    "tuner_type": "(bbuqc: LoRA)", "target_regex": "lora.last_k", "lora_rank": "lora.rank",
    "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout", "freeze_vit": "lora.vision",
    "freeze_aligner": "lora.aligner", "adapters": "model.adapter", "modules_to_save": "lora.modules_to_save",
    "dataset": "data.*", "split_dataset_ratio": "data.val_fraction", "remove_unused_columns": "(bbuqc: reward columns)",
    "dataset_num_proc": "(bbuqc)", "dataloader_num_workers": "train.dataloader_num_workers",
    "max_length": "train.max_length", "per_device_train_batch_size": "train.per_device_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps", "learning_rate": "train.learning_rate",
    "max_steps": "train.max_steps", "seed": "train.seed", "data_seed": "train.seed",
    "output_dir": "hydra.run.dir", "add_version": "hydra.run.dir", "save_strategy": "train.save_steps",
    "save_steps": "train.save_steps", "save_total_limit": "train.save_total_limit",
    "save_only_model": "(bbuqc: full checkpoints for resume)", "logging_steps": "train.logging_steps",
    "report_to": "logger=<backend>", "resume_from_checkpoint": "train.resume_from",
    "eval_strategy": "train.eval_steps", "lr_scheduler_type": "train.lr_scheduler_type",
    "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_steps",
    "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
    "rlhf_type": "algo=<name>", "task_type": "algo=<name>", "reward_funcs": "reward=<set> / reward.weights",
    "reward_weights": "reward.weights", "num_generations": "train.num_generations",
    "generation_batch_size": "train.generation_batch_size", "max_completion_length": "train.max_completion_length",
    "temperature": "train.temperature", "beta": "train.beta", "loss_type": "train.loss_type",
    "epsilon": "train.epsilon", "epsilon_high": "train.epsilon_high", "num_iterations": "train.num_iterations",
    "scale_rewards": "train.scale_rewards", "advantage_estimator": "train.advantage_estimator",
    "top_p": "train.top_p", "top_k": "train.top_k", "repetition_penalty": "train.repetition_penalty",
    "dynamic_sample": "train.dynamic_sample", "max_resample_times": "train.max_resample_times",
    "log_completions": "train.log_completions_steps",
    "chord_sft_dataset": "chord=on", "chord_sft_per_device_train_batch_size": "chord.sft_batch_size",
    "chord_enable_phi_function": "chord.phi", "chord_mu_warmup_steps": "chord.mu_warmup_steps",
    "chord_mu_decay_steps": "chord.mu_decay_steps", "chord_mu_peak": "chord.mu_peak",
    "chord_mu_valley": "chord.mu_valley",
    "bf16": "compute.precision", "fp16": "compute.precision", "use_cpu": "compute.device",
    "gradient_checkpointing": "compute.device", "use_vllm": "compute.rollout", "vllm_mode": "compute.rollout",
    "vllm_gpu_memory_utilization": "compute.vllm_gpu_memory_utilization", "sleep_level": "compute.sleep_level",
    "vllm_tensor_parallel_size": "compute.vllm_tensor_parallel_size", "vllm_max_model_len": "compute.vllm_max_model_len",
    "offload_model": "compute.offload_model", "offload_optimizer": "compute.offload_optimizer",
    "steps_per_generation": "train.steps_per_generation", "importance_sampling_level": "train.importance_sampling_level",
    "vllm_server_host": "compute.vllm_server_host", "vllm_server_port": "compute.vllm_server_port",
    "deepspeed": "compute.deepspeed",
}


def _common_kwargs(cfg: DictConfig, inputs: RunInputs) -> dict[str, Any]:
    """What SFT and GRPO share: model, LoRA, data, optimiser, outputs."""
    t, lora = cfg.train, cfg.lora
    kw: dict[str, Any] = {
        # model: a local folder, never the hub
        "model": inputs.model_dir,
        "model_type": inputs.model_type,
        "template": inputs.template,
        "check_model": False,
        "use_hf": True,
        "torch_dtype": DTYPES[cfg.compute.precision],
        # LoRA on the last K LLM blocks (+ the vision tower / aligner when lora.vision / lora.aligner): the regex
        # alone decides; freeze_vit / freeze_aligner say the same to ms-swift
        "tuner_type": "lora",
        "target_regex": inputs.lora_regex,
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "freeze_vit": not lora.vision,
        "freeze_aligner": not lora.aligner,
        "modules_to_save": list(lora.modules_to_save),
        # data: rows prepared by bbuqc.training.data, kept whole so rewards get their columns
        "dataset": [str(inputs.dataset)],
        "split_dataset_ratio": 0.0,
        "remove_unused_columns": False,
        "dataset_num_proc": 1,
        "dataloader_num_workers": t.dataloader_num_workers,
        "max_length": t.max_length,
        "per_device_train_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "max_steps": t.max_steps,
        "seed": t.seed,
        "data_seed": t.seed,
        # outputs: checkpoints and logging.jsonl straight in the Hydra run folder
        "output_dir": str(inputs.run_dir),
        "add_version": False,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "save_only_model": False,  # optimizer + RNG state: a resumed run continues exactly
        "logging_steps": t.logging_steps,
        # optimiser schedule
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_ratio": t.warmup_ratio,
        "warmup_steps": t.warmup_steps,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "report_to": ["wandb"] if cfg.logger.backend == "wandb" else [],
        "resume_from_checkpoint": t.resume_from,
        # validation is bbuqc's own callback (generation + business metrics), not the trainer's eval loop
        "eval_strategy": "no",
    }
    if inputs.adapter:
        # ms-swift loads it with PEFT as trainable: training continues this LoRA (its rank and target
        # modules), it is not merged first. lora.* must agree with it (checked before weights load).
        kw["adapters"] = [inputs.adapter]
    return kw


def _grpo_kwargs(cfg: DictConfig, inputs: RunInputs) -> dict[str, Any]:
    t, chord = cfg.train, cfg.chord
    weights = reward_weights(cfg)
    kw: dict[str, Any] = {
        "rlhf_type": "grpo",
        "reward_funcs": list(weights),
        "reward_weights": [float(w) for w in weights.values()],
        "num_generations": t.num_generations,
        "generation_batch_size": effective_generation_batch_size(cfg),
        "max_completion_length": t.max_completion_length,
        "temperature": t.temperature,
        "beta": t.beta,
        # the algorithm (docs/training.md "GRPO settings"); ms-swift's names, so its docs apply as written
        "loss_type": t.loss_type,
        "epsilon": t.epsilon,
        "epsilon_high": t.epsilon_high,
        "num_iterations": t.num_iterations,
        "scale_rewards": t.scale_rewards,
        "advantage_estimator": t.advantage_estimator,
        "top_p": t.top_p,
        "top_k": -1 if t.top_k is None else t.top_k,  # ms-swift's "off"
        "repetition_penalty": t.repetition_penalty,
        "dynamic_sample": t.dynamic_sample,
        "max_resample_times": t.max_resample_times,
        "importance_sampling_level": t.importance_sampling_level,
        # ms-swift writes the table at every log; bbuqc's CompletionsCallback turns it on only every
        # log_completions_steps steps
        "log_completions": t.log_completions_steps is not None,
    }
    if t.steps_per_generation is not None:
        # with the generation_batch_size it implies (effective_generation_batch_size), which ms-swift checks equal
        kw["steps_per_generation"] = t.steps_per_generation
    if chord.enabled:
        kw.update(
            {
                "chord_sft_dataset": [str(inputs.chord_sft_dataset)],
                "chord_sft_per_device_train_batch_size": chord.sft_batch_size,
                "chord_enable_phi_function": chord.phi,
                "chord_mu_warmup_steps": chord.mu_warmup_steps,
                "chord_mu_decay_steps": chord.mu_decay_steps,
                "chord_mu_peak": chord.mu_peak,
                "chord_mu_valley": chord.mu_valley,
            }
        )
    return kw


def _sft_kwargs(cfg: DictConfig) -> dict[str, Any]:
    # the loss is on the assistant turn only (ms-swift's default loss_scale for SFT), its verdict line
    # weighted train.verdict_line_weight (validated: task=verdict)
    kw: dict[str, Any] = {"task_type": "causal_lm"}
    if cfg.train.verdict_line_weight != 1:
        from bbuqc.training import loss_scale

        kw["loss_scale"] = loss_scale.register(cfg.train.verdict_line_weight)
    return kw


def _compute_kwargs(c: DictConfig, rollouts: bool = True) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "bf16": c.precision == "bf16",
        "fp16": c.precision == "fp16",
        "use_cpu": c.device == "cpu",
        "gradient_checkpointing": c.device == "cuda",
    }
    if rollouts and c.rollout == "vllm_colocate":
        kw.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=c.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=c.vllm_tensor_parallel_size,
            sleep_level=c.sleep_level,
            offload_model=c.offload_model,
            offload_optimizer=c.offload_optimizer,
        )
        if c.vllm_max_model_len is not None:
            kw["vllm_max_model_len"] = c.vllm_max_model_len
    elif rollouts and c.rollout == "vllm_server":
        kw.update(
            use_vllm=True,
            vllm_mode="server",
            vllm_server_host=[c.vllm_server_host],
            vllm_server_port=[c.vllm_server_port],
        )
    if c.deepspeed:
        kw["deepspeed"] = c.deepspeed  # ms-swift resolves zero2/zero3 to its bundled JSON configs
    return kw
