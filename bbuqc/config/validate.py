"""Validation of a composed config, before any model loads.

Every rule returns problems as one line each, naming the field (the override a user would type) and
the value, so a bad sweep fails in seconds instead of after model load. Values outside a closed set
never get here: they are Enum fields, refused while Hydra composes. The rules of one node sit beside
it (``check_<node>`` in schema.py); the rules across nodes are here. What each command runs is
``COMMAND_CHECKS`` in bbuqc/checks.py, with the rules that read the model's files (bbuqc/models/checks.py)
or need training's knowledge (bbuqc/training/checks.py): `bbuqc-infer` never looks at `lora` or `reward`.
Nothing here imports torch, transformers or ms-swift, nor bbuqc's training/, models/ or sweep/: config is
a leaf (tests/config/test_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bbuqc.config import schema as S
from bbuqc.config.reward_sets import flatten_weights
from bbuqc.errors import InputError

Check = Callable[[DictConfig], list[str]]


class ConfigError(InputError):
    """A config that cannot run; str() is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def __reduce__(self):  # survives the trip back from a Ray worker intact
        return type(self), (self.problems,)


def node(check: Callable[[DictConfig], list[str]]) -> Check:
    """``schema.check_<name>`` applied to the config's ``<name>`` node."""
    name = check.__name__.removeprefix("check_")

    def run(cfg: DictConfig) -> list[str]:
        return check(cfg[name])

    run.__name__ = check.__name__
    return run


def reward_weights(cfg: DictConfig) -> dict[str, Any]:
    """The config's reward ids and weights, flattened to {"namespace.name": w}, in order."""
    return flatten_weights(OmegaConf.to_container(cfg.reward.weights, resolve=True) or {})


def effective_generation_batch_size(cfg: DictConfig) -> int:
    t = cfg.train
    if t.generation_batch_size is not None:
        return t.generation_batch_size
    steps = t.get("steps_per_generation") or t.gradient_accumulation_steps  # ms-swift's default: the accumulation
    return t.per_device_batch_size * world_size(cfg.compute) * steps


def world_size(compute: DictConfig) -> int:
    """Training processes in all: GPUs per node x nodes (a SLURM-given node count reaches the workers as
    compute.nnodes, bbuqc/runtime/nodes.py)."""
    return compute.nproc_per_node * max(1, compute.get("nnodes") or 1)


def rewards_fit_task(cfg: DictConfig) -> list[str]:
    task = cfg.task.name
    foreign = sorted({rid.split(".", 1)[0] for rid in reward_weights(cfg) if "." in rid} - {task})
    if not foreign:
        return []
    suggestion = "verdict" if task == S.Task.verdict else "summary_full"
    return [f"reward={cfg.reward.name}: its {', '.join(n + '.*' for n in foreign)} rewards cannot train "
            f"task={task}; use a {task}.* reward set (e.g. reward={suggestion})"]


def batch_sizes(cfg: DictConfig) -> list[str]:
    """The rollout batch against the group size and the devices (check_train names the numbers < 1)."""
    t, world = cfg.train, world_size(cfg.compute)
    if t.num_generations < 2 or min(t.per_device_batch_size, t.gradient_accumulation_steps, world) < 1:
        return []
    generation_batch = effective_generation_batch_size(cfg)
    if generation_batch % t.num_generations:
        return [f"train.generation_batch_size={generation_batch}: must be divisible by "
                f"train.num_generations={t.num_generations}"]
    if generation_batch % (t.per_device_batch_size * world):
        return [f"train.generation_batch_size={generation_batch}: must be divisible by "
                f"train.per_device_batch_size={t.per_device_batch_size} x compute.nproc_per_node="
                f"{cfg.compute.nproc_per_node}" + (f" x compute.nnodes={cfg.compute.nnodes}"
                                                    if (cfg.compute.get("nnodes") or 1) > 1 else "")]
    return []


def grpo_only(cfg: DictConfig) -> list[str]:
    """Sampled completions are GRPO's (train.extra against ms-swift's arguments: bbuqc/training/checks.py)."""
    grpo, out = cfg.algo.name == S.Algo.grpo, []
    if cfg.train.log_completions_steps and not grpo:
        out.append("train.log_completions_steps: sampled completions are GRPO's (algo=grpo); SFT generates none")
    if not grpo and cfg.train.steps_per_generation is not None:
        out.append("train.steps_per_generation: rollouts are GRPO's (algo=grpo); SFT generates none")
    if not grpo and cfg.train.importance_sampling_level != "token":
        out.append(f"train.importance_sampling_level={cfg.train.importance_sampling_level}: an importance ratio is "
                   "GRPO's (algo=grpo); SFT has none")
    if cfg.train.val_backend == S.ValBackend.rollout:
        if not grpo:
            out.append("train.val_backend=rollout: the rollout engine is GRPO's (algo=grpo); SFT has none "
                       "(use auto or hf)")
        elif cfg.compute.rollout == S.Rollout.vllm_server:
            out.append("train.val_backend=rollout: validation does not generate on a `swift rollout` server "
                       "(compute.rollout=vllm_server); use auto or hf")
    if validation_backend(cfg) == S.ValBackend.rollout and cfg.train.extra.get("async_generate"):
        # the next rollout is already queued on the engine: a validation in between would take its place
        out.append("train.extra.async_generate: validation on the rollout engine (train.val_backend="
                   f"{cfg.train.val_backend}) cannot share it with asynchronous rollouts; set train.val_backend=hf")
    max_len = cfg.compute.vllm_max_model_len
    if grpo and cfg.compute.rollout == S.Rollout.vllm_colocate and max_len is not None \
            and max_len <= cfg.train.max_completion_length:
        out.append(f"compute.vllm_max_model_len={max_len}: leaves no room for a prompt before "
                   f"train.max_completion_length={cfg.train.max_completion_length} completion tokens")
    return out


def validation_backend(cfg: DictConfig) -> S.ValBackend:
    """What generates the validation answers: ``train.val_backend``, with ``auto`` resolved (the rollout engine
    on a GRPO run with colocated vLLM rollouts, the HF generation layer otherwise)."""
    backend = S.ValBackend(cfg.train.val_backend)
    if backend != S.ValBackend.auto:
        return backend
    colocated = cfg.algo.name == S.Algo.grpo and cfg.compute.rollout == S.Rollout.vllm_colocate
    return S.ValBackend.rollout if colocated else S.ValBackend.hf


def verdict_line_weight(cfg: DictConfig) -> list[str]:
    """The weight scales the SFT loss of a verdict answer's first line: nothing else has one."""
    weight = cfg.train.verdict_line_weight
    if weight == 1:
        return []
    if cfg.task.name != S.Task.verdict or cfg.algo.name != S.Algo.sft:
        return [f"train.verdict_line_weight={weight}: weights the verdict line of an SFT target (task=verdict "
                f"algo=sft), not task={cfg.task.name} algo={cfg.algo.name}; leave it at 1"]
    if "loss_scale" in cfg.train.extra:
        return [f"train.extra.loss_scale: train.verdict_line_weight={weight} sets ms-swift's loss_scale; "
                "use one of the two"]
    return []


def vision_lora(cfg: DictConfig) -> list[str]:
    """lora.vision / lora.aligner need a vision side, and a rollout engine that serves them (merged)."""
    asked = [f"lora.{key}=true" for key in ("vision", "aligner") if cfg.lora[key]]
    if not asked:
        return []
    if not cfg.model.multimodal:
        return [f"{', '.join(asked)}: model={cfg.model.preset} is a text-only model (model.multimodal=false); "
                "it has no vision tower or aligner to train"]
    if cfg.compute.rollout != S.Rollout.hf and cfg.train.extra.get("vllm_enable_lora"):
        # ms-swift syncs a merged copy of the weights into vLLM unless vllm_enable_lora hands it the adapter,
        # which vLLM applies to the LLM's Linears only
        return [f"train.extra.vllm_enable_lora=true: vLLM applies a LoRA to the LLM only, not the vision side "
                f"({', '.join(asked)}); leave vllm_enable_lora unset (ms-swift then syncs merged weights) or "
                "use compute.rollout=hf"]
    return []


def algo_data(cfg: DictConfig) -> list[str]:
    out, d, task = [], cfg.data, cfg.task.name
    if d.source == S.DataSource.files and not d.get("swift_jsonl"):  # your ms-swift rows: training/checks.py
        if task == S.Task.summary and not d.summary_jsonl:
            out.append("data.summary_jsonl: required for task=summary with data.source=files "
                       "(or data.swift_jsonl: your ms-swift rows)")
        if task == S.Task.verdict and not d.stage_a_jsonl:
            out.append("data.stage_a_jsonl: required for task=verdict with data.source=files "
                       "(or data.swift_jsonl: your ms-swift rows)")
    if cfg.algo.name == S.Algo.sft and cfg.chord.enabled:
        out.append("chord=on: CHORD mixes SFT into GRPO; it needs algo=grpo (algo=sft is SFT already)")
    if task == S.Task.verdict and d.rare_fact_repeat > 1:
        out.append(f"data.rare_fact_repeat={d.rare_fact_repeat}: repeats summary images with rare facts; "
                   "task=verdict trains on groups (use it with task=summary)")
    if task == S.Task.summary and not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: task=summary trains on images and needs a VL model "
                   "(model.multimodal=false); e.g. model=tiny")
    return out


def infer_inputs(cfg: DictConfig) -> list[str]:
    out = []
    if cfg.data.source == S.DataSource.files and not cfg.data.root:
        out.append("data.root: required by bbuqc-infer with data.source=files (the image tree)")
    if not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: a text-only model (model.multimodal=false) cannot summarise "
                   "images; Stage-A needs a VL model (e.g. model=tiny)")
    return out


def evaluate_inputs(cfg: DictConfig) -> list[str]:
    out = []
    if cfg.task.name != S.Task.verdict:
        out.append(f"task={cfg.task.name}: bbuqc-evaluate judges groups (task=verdict)")
    if cfg.data.source == S.DataSource.files and not cfg.data.stage_a_jsonl:
        out.append("data.stage_a_jsonl: required by bbuqc-evaluate with data.source=files")
    return out
