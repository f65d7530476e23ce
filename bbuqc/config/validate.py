"""Validation of a composed config, before any model loads.

Every rule returns problems as one line each, naming the field (the override a user
would type) and the value, so a bad sweep fails in seconds instead of after model load.
Nothing here imports torch, transformers or ms-swift.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bbuqc.config.reward_sets import flatten_weights
from bbuqc.errors import InputError
from bbuqc.rewards import reward_id_problem

CHOICES = {
    "task.name": ("summary", "verdict"),
    "compute.device": ("cpu", "cuda"),
    "compute.precision": ("fp32", "bf16", "fp16"),
    "compute.rollout": ("hf", "vllm_colocate", "vllm_server"),
    "compute.deepspeed": (None, "zero2", "zero3"),
    "logger.backend": ("wandb", "none"),
    "logger.mode": ("offline", "online"),
    "data.source": ("synthetic", "files"),
    "infer.backend": ("hf", "vllm"),
}


class ConfigError(InputError):
    """A config that cannot run; str() is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def __reduce__(self):  # survives the trip back from a Ray worker intact
        return type(self), (self.problems,)


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, throw_on_missing=False)


def _check_choices(cfg: DictConfig) -> list[str]:
    out = []
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            shown = ", ".join("null" if a is None else a for a in allowed)
            out.append(f"{key}={value!r}: expected one of {shown}")
    return out


def reward_weights(cfg: DictConfig) -> dict[str, Any]:
    """The config's reward ids and weights, flattened to {"namespace.name": w}, in order."""
    return flatten_weights(OmegaConf.to_container(cfg.reward.weights, resolve=True) or {})


def _check_rewards(cfg: DictConfig) -> list[str]:
    out = []
    task = cfg.task.name
    flat = reward_weights(cfg)
    if not flat:
        return [f"reward.weights: reward={cfg.reward.name!r} lists no rewards"]
    for rid, weight in flat.items():
        field = f"reward.weights.{rid}"
        problem = reward_id_problem(rid)
        if problem:
            out.append(f"{field}: {problem}")
            continue
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            out.append(f"{field}={weight!r}: expected a finite number")
    foreign = sorted({rid.split(".", 1)[0] for rid in flat if "." in rid} - {task})
    if foreign:
        suggestion = "verdict" if task == "verdict" else "summary_full"
        out.append(
            f"reward={cfg.reward.name}: its {', '.join(n + '.*' for n in foreign)} rewards cannot train "
            f"task={task}; use a {task}.* reward set (e.g. reward={suggestion})"
        )
    if not out and all(w == 0 for w in flat.values()):
        out.append("reward.weights: every weight is 0, so there is nothing to optimise")
    return out


def effective_generation_batch_size(cfg: DictConfig) -> int:
    t = cfg.train
    if t.generation_batch_size is not None:
        return t.generation_batch_size
    return t.per_device_batch_size * cfg.compute.nproc_per_node * t.gradient_accumulation_steps


def _check_train(cfg: DictConfig) -> list[str]:
    t = cfg.train
    out = []
    for key in ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "max_completion_length", "logging_steps", "save_steps"):
        if t[key] < 1:
            out.append(f"train.{key}={t[key]}: expected an integer >= 1")
    world = cfg.compute.nproc_per_node
    step_batch = t.per_device_batch_size * world
    generation_batch = effective_generation_batch_size(cfg)
    if t.num_generations < 2:
        out.append(f"train.num_generations={t.num_generations}: GRPO needs at least 2 generations per prompt")
    elif generation_batch % t.num_generations:
        out.append(
            f"train.generation_batch_size={generation_batch}: must be divisible by "
            f"train.num_generations={t.num_generations}"
        )
    if not out and step_batch >= 1 and generation_batch % step_batch:
        out.append(
            f"train.generation_batch_size={generation_batch}: must be divisible by "
            f"train.per_device_batch_size={t.per_device_batch_size} x compute.nproc_per_node={world}"
        )
    if not t.learning_rate > 0:
        out.append(f"train.learning_rate={t.learning_rate}: expected a number > 0")
    if not t.temperature > 0:
        out.append(f"train.temperature={t.temperature}: expected a number > 0")
    if t.beta < 0:
        out.append(f"train.beta={t.beta}: expected a number >= 0")
    if t.resume_from is not None and not Path(t.resume_from).is_dir():
        out.append(f"train.resume_from={t.resume_from}: no such checkpoint folder")
    return out


def _check_chord(cfg: DictConfig) -> list[str]:
    c = cfg.chord
    if not c.enabled:
        return []
    out = []
    fields = ("mu_peak", "mu_valley", "mu_warmup_steps", "mu_decay_steps", "sft_batch_size")
    missing = [f for f in fields if c[f] is None]
    out += [f"chord.{f}: required when chord=on" for f in missing]
    if not {"mu_peak", "mu_valley"} & set(missing):
        if not 0 <= c.mu_valley <= c.mu_peak <= 1:
            out.append(
                f"chord.mu_valley={c.mu_valley}, chord.mu_peak={c.mu_peak}: "
                "expected 0 <= mu_valley <= mu_peak <= 1"
            )
    for f in ("mu_warmup_steps", "mu_decay_steps"):
        if c[f] is not None and c[f] < 0:
            out.append(f"chord.{f}={c[f]}: expected an integer >= 0")
    if c.sft_batch_size is not None and c.sft_batch_size < 1:
        out.append(f"chord.sft_batch_size={c.sft_batch_size}: expected an integer >= 1")
    return out


def _check_lora(cfg: DictConfig) -> list[str]:
    lora, out = cfg.lora, []
    if lora.rank < 1:
        out.append(f"lora.rank={lora.rank}: expected an integer >= 1")
    if not lora.alpha > 0:
        out.append(f"lora.alpha={lora.alpha}: expected a number > 0")
    if not 0 <= lora.dropout < 1:
        out.append(f"lora.dropout={lora.dropout}: expected 0 <= dropout < 1")
    if lora.last_k < 1:
        out.append(f"lora.last_k={lora.last_k}: expected an integer >= 1")
        return out
    layers = _num_llm_layers(cfg)
    if layers is not None and lora.last_k > layers:
        out.append(f"lora.last_k={lora.last_k}: model={cfg.model.preset} has only {layers} LLM blocks")
    return out


def _num_llm_layers(cfg: DictConfig) -> int | None:
    """The model's LLM depth from its config.json when the checkpoint is at hand, else the preset."""
    path = cfg.model.path
    if path and (Path(path) / "config.json").is_file():
        config = json.loads((Path(path) / "config.json").read_text())
        for node in (config.get("text_config") or {}, config.get("llm_config") or {}, config):
            if isinstance(node.get("num_hidden_layers"), int):
                return node["num_hidden_layers"]
    return cfg.model.num_llm_layers


def _check_paths(cfg: DictConfig) -> list[str]:
    out = []
    m, d = cfg.model, cfg.data
    if m.preset != "tiny":
        if not m.path:
            out.append(f"model.path: required for model={m.preset} (a local checkpoint folder; no hub access)")
        elif not Path(m.path).is_dir():
            out.append(f"model.path={m.path}: no such folder")
    elif m.path and not Path(m.path).is_dir():
        out.append(f"model.path={m.path}: no such folder")
    if d.source == "files":
        if cfg.task.name == "summary" and not d.summary_jsonl:
            out.append("data.summary_jsonl: required for task=summary with data.source=files")
        if cfg.task.name == "verdict" and not d.stage_a_jsonl:
            out.append("data.stage_a_jsonl: required for task=verdict with data.source=files")
    for key in ("root", "summary_jsonl"):
        value = d[key]
        if value and not Path(value).exists():
            out.append(f"data.{key}={value}: no such file or folder")
    for i, value in enumerate(d.stage_a_jsonl):
        if not Path(value).is_file():
            out.append(f"data.stage_a_jsonl[{i}]={value}: no such file")
    if cfg.evaluate.adapter and not Path(cfg.evaluate.adapter).is_dir():
        out.append(f"evaluate.adapter={cfg.evaluate.adapter}: no such checkpoint folder")
    return out


def _check_compute(cfg: DictConfig) -> list[str]:
    c, out = cfg.compute, []
    if c.rollout != "hf" and c.device != "cuda":
        out.append(f"compute.rollout={c.rollout}: vLLM rollouts need compute.device=cuda")
    if c.deepspeed and c.device != "cuda":
        out.append(f"compute.deepspeed={c.deepspeed}: DeepSpeed needs compute.device=cuda")
    if c.nproc_per_node < 1:
        out.append(f"compute.nproc_per_node={c.nproc_per_node}: expected an integer >= 1")
    return out


def _check_infer(cfg: DictConfig) -> list[str]:
    out = []
    for key in ("infer.batch_size", "infer.max_new_tokens", "infer.num_gpus", "evaluate.samples_per_group", "evaluate.batch_size", "evaluate.max_new_tokens"):
        if _get(cfg, key) < 1:
            out.append(f"{key}={_get(cfg, key)}: expected an integer >= 1")
    for key in ("infer.temperature", "evaluate.temperature"):
        if _get(cfg, key) < 0:
            out.append(f"{key}={_get(cfg, key)}: expected a number >= 0")
    adapter = cfg.evaluate.adapter
    if adapter and Path(adapter).is_dir() and not (Path(adapter) / "adapter_config.json").is_file():
        out.append(f"evaluate.adapter={adapter}: no adapter_config.json (expected a LoRA checkpoint-N folder)")
    if cfg.evaluate.output_dir and Path(cfg.evaluate.output_dir).is_file():
        out.append(f"evaluate.output_dir={cfg.evaluate.output_dir}: is a file, expected a folder")
    return out


CHECKS = (_check_choices, _check_rewards, _check_train, _check_chord, _check_lora, _check_paths, _check_compute, _check_infer)


def problems(cfg: DictConfig) -> list[str]:
    return [line for check in CHECKS for line in check(cfg)]


def validate(cfg: DictConfig) -> None:
    found = problems(cfg)
    if found:
        raise ConfigError(found)
