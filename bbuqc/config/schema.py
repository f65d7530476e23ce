"""The typed config tree. Every node here is a Hydra structured config, so a typo, a wrongly typed
override or a value outside a closed set (an ``Enum`` field) fails while Hydra composes, before any
code runs.

Each node is followed by ``check_<node>``: the rules that need only that node's own fields, one line
per problem naming the field. Rules across nodes (the batch sizes against the GPUs, the reward set
against the task, ...) are in ``validate.py``; what each command runs is ``COMMAND_CHECKS`` (bbuqc/checks.py).

Choices are ``StrEnum``s: a member *is* its string (``Device.cpu == "cpu"``, ``f"{Device.cpu}"`` is
``cpu``), and its name is what users type (``compute.device=cpu``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig

from bbuqc.config import swift_fields as _swift


def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A StrEnum whose members are ``values`` (each named as itself), for sets generated elsewhere."""
    return StrEnum(name, [(v, v) for v in values], module=__name__)


class Domain(StrEnum):
    BBU = "BBU"
    RRU = "RRU"


class Task(StrEnum):
    summary = "summary"
    verdict = "verdict"


class Algo(StrEnum):
    grpo = "grpo"
    sft = "sft"


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Rollout(StrEnum):
    hf = "hf"
    vllm_colocate = "vllm_colocate"
    vllm_server = "vllm_server"


class ValBackend(StrEnum):
    auto = "auto"  # GRPO with colocated vLLM rollouts: rollout; otherwise hf
    hf = "hf"  # bbuqc's transformers generation layer on the model being trained
    rollout = "rollout"  # GRPO's own rollout engine (ms-swift's): colocated vLLM, or its transformers engine


class DeepSpeed(StrEnum):
    zero2 = "zero2"
    zero3 = "zero3"


class DataSource(StrEnum):
    synthetic = "synthetic"
    files = "files"


class ImportanceSamplingLevel(StrEnum):
    # ms-swift's Literal for importance_sampling_level (tests/training/test_gpu_fields.py compares them)
    token = "token"
    sequence = "sequence"
    sequence_token = "sequence_token"


class StageABackend(StrEnum):
    hf = "hf"
    vllm = "vllm"


class LoggerBackend(StrEnum):
    wandb = "wandb"
    none = "none"


class LoggerMode(StrEnum):
    offline = "offline"
    online = "online"


# ms-swift's own choices, generated from the installed ms-swift (bbuqc/config/swift_fields.py)
LossType = _choices("LossType", _swift.GRPO_LOSS_TYPES)
AdvantageEstimator = _choices("AdvantageEstimator", _swift.ADVANTAGE_ESTIMATORS)
ScaleRewards = _choices("ScaleRewards", _swift.SCALE_REWARDS)
LrScheduler = _choices("LrScheduler", _swift.LR_SCHEDULER_TYPES)


def _at_least(node: DictConfig, prefix: str, keys: tuple[str, ...], low: int = 1) -> list[str]:
    return [f"{prefix}.{key}={node[key]}: expected an integer >= {low}" for key in keys if node[key] < low]


@dataclass
class MissionConfig:
    # the chosen file of the `mission` group (conf/mission/<id>.yaml, or your own folder's: docs/data.md,
    # "Missions"); bbuqc.missions reads the same files and checks every field
    id: str = MISSING  # mission id (mission=<id>, the file's name), e.g. bbu_wind
    name: str = MISSING  # the Chinese mission name, as in the image tree and Stage-A records
    domain: Domain = MISSING  # BBU | RRU: the summary header's domain and taxonomy
    categories: list[str] = MISSING  # Stage-A prompt: the taxonomy categories to look for first
    focus: list[str] = MISSING  # the reviewer's focus points (检查要点), quoted in both prompts
    decision: str = MISSING  # Stage-B prompt: the decision rule (判定规则)


@dataclass
class ModelConfig:
    # `tiny` (VL) and `tiny_text` are built locally on first use; every other preset names a real
    # checkpoint family and needs `path`.
    preset: str = "tiny"
    path: str | None = None  # a local model folder (a real checkpoint or a bbuqc-export output)
    # a LoRA checkpoint folder (checkpoint-N of a bbuqc-train run) on top of `path`; the same meaning to
    # every command: train continues it, infer / evaluate generate with it merged, export merges it.
    adapter: str | None = None
    model_type: str = MISSING  # ms-swift model_type, e.g. qwen2_5_vl
    template: str = MISSING  # ms-swift template name
    multimodal: bool = True  # a VL model (images in); false: text only (Stage-B)
    # number of LLM decoder blocks; checked against lora.last_k before weights load.
    # null: read from <path>/config.json.
    num_llm_layers: int | None = None
    # allow a model folder that ships its own Python (modeling_*.py) to run it on load; every supported
    # family is native to transformers, so this stays false
    trust_remote_code: bool = False
    # image size bounds in pixels (h*w) of a VL model, for training, Stage-A and validation alike (one
    # budget: bbuqc.models.resolve.image_env); (patch*2)^2 pixels make one visual token (28*28 for Qwen2/
    # 2.5-VL, 32*32 for Qwen3-VL). null: the checkpoint processor's / ms-swift's own limits (a tiny twin's).
    max_pixels: int | None = None  # upper bound: an image above it is scaled down (real VL presets: 1024 tokens)
    min_pixels: int | None = None  # lower bound: a smaller image is scaled up (real VL presets: 4 tokens)


def check_model(m: DictConfig) -> list[str]:
    """The model's own fields and folders; what the folders hold (an adapter's files, shipped Python) is
    bbuqc/models/checks.py's, which reads them."""
    out = []
    for key in ("min_pixels", "max_pixels"):
        if m.get(key) is not None and int(m[key]) <= 0:
            out.append(f"model.{key}={m[key]}: expected a positive number of pixels (h*w) or null")
    if m.get("min_pixels") and m.get("max_pixels") and int(m.max_pixels) < int(m.min_pixels):
        out.append(f"model.max_pixels={m.max_pixels} is below model.min_pixels={m.min_pixels}: "
                   "expected min_pixels <= max_pixels (pixels per image, h*w)")
    if not str(m.preset).startswith("tiny") and not m.path:
        return out + [f"model.path: required for model={m.preset} (a local checkpoint folder; no hub access)"]
    if m.path and not Path(m.path).is_dir():
        return out + [f"model.path={m.path}: no such folder"]
    if m.adapter and not Path(m.adapter).is_dir():
        out.append(f"model.adapter={m.adapter}: no such checkpoint folder")
    return out


@dataclass
class TaskConfig:
    name: Task = MISSING  # summary | verdict; also the reward namespace it trains with


@dataclass
class AlgoConfig:
    name: Algo = Algo.grpo  # grpo: ms-swift GRPO with the `reward` set | sft: cross-entropy on the reference outputs


@dataclass
class RewardConfig:
    name: str = MISSING  # the reward set's name (reward=<name>)
    # {namespace: {reward: weight}}: `summary.format` is reward.weights.summary.format.
    # Values stay untyped here so validation can name a bad one in the project's terms.
    weights: dict[str, Any] = field(default_factory=dict)
    # reward plug-ins: .py files or importable modules that register rewards of their own (bbuqc.rewards.row_reward),
    # loaded before the weights and parameters are checked (docs/rewards.md, "Your own rewards")
    plugins: list[str] = field(default_factory=list)
    # {namespace: {reward: {parameter: value}}}: a reward's declared parameters (docs/rewards.md), e.g.
    # reward.params.verdict.cost.false_pass=4; unset ones keep the reward's defaults
    params: dict[str, Any] = field(default_factory=dict)


def check_reward(r: DictConfig) -> list[str]:
    from omegaconf import OmegaConf

    from bbuqc.config.reward_sets import flatten_weights, params_problems
    from bbuqc.rewards import reward_id_problem
    from bbuqc.rewards.plugins import load_plugins

    plugin_problems = load_plugins(list(r.get("plugins") or []))
    if plugin_problems:
        return plugin_problems  # the ids below may be the plug-ins' own
    flat = flatten_weights(OmegaConf.to_container(r.weights, resolve=True) or {})
    params = params_problems(OmegaConf.to_container(r.params, resolve=True) if "params" in r else {}, flat, r.name)
    if not flat:
        return [f"reward.weights: reward={r.name!r} lists no rewards"]
    out = []
    for rid, weight in flat.items():
        problem = reward_id_problem(rid)
        if problem:
            out.append(f"reward.weights.{rid}: {problem}")
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            out.append(f"reward.weights.{rid}={weight!r}: expected a finite number")
    if not out and all(w == 0 for w in flat.values()):
        out.append("reward.weights: every weight is 0, so there is nothing to optimise")
    return out + params


@dataclass
class ChordConfig:
    # CHORD (GRPO only): the SFT loss on the reference outputs mixed into GRPO with weight mu, which
    # warms up linearly to mu_peak over mu_warmup_steps and decays (cosine) to mu_valley over mu_decay_steps
    enabled: bool = False
    mu_peak: float | None = 0.9  # mu after warm-up
    mu_valley: float | None = 0.05  # mu after decay
    mu_warmup_steps: int | None = 2  # linear warm-up steps
    mu_decay_steps: int | None = 20  # cosine decay steps
    sft_batch_size: int | None = 1  # reference rows per step
    phi: bool = False  # token-wise phi weighting of the SFT loss


def check_chord(c: DictConfig) -> list[str]:
    if not c.enabled:
        return []
    fields = ("mu_peak", "mu_valley", "mu_warmup_steps", "mu_decay_steps", "sft_batch_size")
    missing = [f for f in fields if c[f] is None]
    out = [f"chord.{f}: required when chord=on" for f in missing]
    if not {"mu_peak", "mu_valley"} & set(missing) and not 0 <= c.mu_valley <= c.mu_peak <= 1:
        out.append(f"chord.mu_valley={c.mu_valley}, chord.mu_peak={c.mu_peak}: "
                   "expected 0 <= mu_valley <= mu_peak <= 1")
    out += _at_least(c, "chord", tuple(f for f in ("mu_warmup_steps", "mu_decay_steps") if c[f] is not None), 0)
    if c.sft_batch_size is not None:
        out += _at_least(c, "chord", ("sft_batch_size",))
    return out


@dataclass
class LoraConfig:
    last_k: int = 2  # LoRA on every Linear of the last K LLM decoder blocks
    rank: int = 8  # LoRA rank r
    alpha: int = 16  # LoRA alpha (scale alpha / r)
    dropout: float = 0.05  # LoRA dropout
    # whole LLM modules trained beside the LoRA and saved in its checkpoint (PEFT's modules_to_save):
    # [embed_tokens, lm_head] when the embeddings carry no meaning yet (the demo's randomly initialised
    # twins, new tokens). A model with tied embeddings cannot (its lm_head is embed_tokens); vLLM serves
    # such an adapter only merged (bbuqc-export).
    modules_to_save: list[str] = field(default_factory=list)
    # LoRA on the vision side of a VL model too (ms-swift's split, bbuqc/training/lora.py): `vision` on every
    # Linear of the vision tower (less its aligner), `aligner` on the aligner's (the merger that maps visual
    # tokens into the LLM). Off, as the seeds train (LLM-only LoRA); on where the tower has to learn what the
    # images show (the demo's random twin). They set ms-swift's freeze_vit / freeze_aligner; the LoRA lives in
    # the adapter like the LLM's, so infer / evaluate / export apply it (vLLM only merged: bbuqc-export).
    vision: bool = False  # LoRA on the vision tower's Linears (its aligner aside); VL models only
    aligner: bool = False  # LoRA on the aligner's Linears; VL models only


#: What lora.modules_to_save may name: the LLM's input embeddings and output layer (never vision).
SAVABLE_MODULES = ("embed_tokens", "lm_head")


def check_lora(lora: DictConfig) -> list[str]:
    """The LoRA's own numbers; against the model's depth and a continued adapter: validate.py."""
    out = _at_least(lora, "lora", ("rank",))
    unknown = [m for m in lora.modules_to_save if m not in SAVABLE_MODULES]
    if unknown or len(set(lora.modules_to_save)) != len(lora.modules_to_save):
        out.append(f"lora.modules_to_save={list(lora.modules_to_save)}: expected distinct names among "
                   f"{', '.join(SAVABLE_MODULES)}")
    if not lora.alpha > 0:
        out.append(f"lora.alpha={lora.alpha}: expected a number > 0")
    if not 0 <= lora.dropout < 1:
        out.append(f"lora.dropout={lora.dropout}: expected 0 <= dropout < 1")
    return out + _at_least(lora, "lora", ("last_k",))


@dataclass
class TrainConfig:
    max_steps: int = 4  # optimiser steps
    num_generations: int = 2  # GRPO: completions per prompt (the group of the advantage)
    per_device_batch_size: int = 4  # rows (GRPO: completions) per device per step
    # completions per rollout; null: per_device_batch_size x GPUs x gradient_accumulation_steps
    generation_batch_size: int | None = None
    gradient_accumulation_steps: int = 1  # micro-batches per optimiser step
    learning_rate: float = 1e-4  # peak learning rate of the LoRA weights
    temperature: float = 1.0  # GRPO rollout sampling temperature
    max_completion_length: int = 48  # GRPO: new tokens per completion
    max_length: int = 2048  # prompt (+ answer for SFT) tokens; longer rows are cut by ms-swift
    beta: float = 0.04  # GRPO: KL weight to the reference model (0: no reference pass)
    seed: int = 42  # training and data-order seed
    save_steps: int = 2  # a checkpoint every N steps (validated steps are always saved)
    save_total_limit: int | None = None  # keep at most this many checkpoints (never the best one); null: all
    logging_steps: int = 1  # a logging.jsonl / W&B line every N steps
    # a checkpoint-N folder to continue from (adapter, optimizer, scheduler, RNG), or auto: the latest
    # complete checkpoint of this run folder (none yet: start fresh)
    resume_from: str | None = None
    dataloader_num_workers: int = 0  # torch DataLoader worker processes
    # held-out validation (greedy generation on the validation set, metrics under val/): every N steps;
    # null: never. A validated step is always saved as a checkpoint.
    eval_steps: int | None = None
    # the val/ metric that picks the best checkpoint (best-checkpoint link + best_checkpoint.json) and that
    # the job returns to a sweeper; null: val/accuracy for task=verdict, val/summary.content_f1 for summary
    select_by: str | None = None
    # direction of select_by; null: lower for val/*false_pass*, *false_fail*, *invalid*, higher otherwise
    select_greater_is_better: bool | None = None
    # the business constraint the best checkpoint must meet, '<val/ metric><op><number>' (op <=, >=, <, >), e.g.
    # 'val/false_pass_rate<=0.05' or its Wilson upper bound 'val/false_pass_rate_hi<=0.05': the best by select_by
    # among the validations that meet it; none does: the closest to it, with a warning. null: none
    select_constraint: str | None = None
    # stop after this many validations without a new best; null: never stop early
    early_stop_patience: int | None = None
    val_batch_size: int = 8  # prompts per generate() call during validation
    # answers per validation row: 1 greedy; n > 1 samples n at train.temperature (ms-swift's num_generations_eval),
    # verdicts majority-voted as bbuqc-evaluate votes them (val/accuracy), plus val/accuracy_mean over the samples
    # and the best of n (val/accuracy_best, val/summary.*_best: the ceiling of what GRPO can select)
    val_samples: int = 1
    # also validate the starting model before the first step (step 0 in validation.jsonl and W&B): the figures a
    # run must beat (GRPO from an SFT checkpoint: the SFT model's, on the same rows and sampling). A reference
    # only: never the best checkpoint (there is no checkpoint-0; the start is model.adapter). Not on a resume
    val_on_start: bool = False
    val_max_new_tokens: int | None = None  # null: max_completion_length
    # what generates the validation answers (docs/training.md, "Held-out validation"): auto: GRPO's colocated
    # vLLM engine on a compute.rollout=vllm_colocate run (weights synced to the step, as for a rollout), bbuqc's
    # HF generation layer otherwise; hf; rollout (algo=grpo: ms-swift's rollout path, on CPU its transformers engine)
    val_backend: ValBackend = ValBackend.auto
    # the answers each validation keeps, of the same first rows every time (validation_answers.jsonl and the W&B
    # table val/answers: row, label, answer, parsed verdict or summary F1); 0: none
    val_answers: int = 32
    # what the job returns to a sweeper: these val/ metrics at the best checkpoint, as a tuple (one per
    # hydra.sweeper.direction); empty: the select_by value alone (bbuqc/training/objective.py)
    objectives: list[str] = field(default_factory=list)
    # GRPO algorithm settings, under ms-swift's own names and defaults (docs/training.md "GRPO settings")
    loss_type: LossType = LossType.grpo  # grpo | bnpo | dr_grpo | dapo | cispo | sapo | real | fipo
    epsilon: float = 0.2  # PPO clip range (lower side)
    epsilon_high: float | None = None  # upper clip (DAPO clip-higher, e.g. 0.28); null: epsilon
    num_iterations: int = 1  # policy updates per rollout batch (mu in the GRPO paper)
    scale_rewards: ScaleRewards | None = None  # group | batch | none | gdpo; null: the advantage_estimator's default
    advantage_estimator: AdvantageEstimator = AdvantageEstimator.grpo  # grpo | rloo | reinforce_plus_plus
    top_p: float = 1.0  # rollout nucleus sampling, in (0, 1]
    top_k: int | None = None  # rollout top-k sampling; null: off
    repetition_penalty: float = 1.0  # rollout repetition penalty (1: none)
    dynamic_sample: bool = False  # DAPO: resample groups whose rewards all agree (zero std, zero gradient)
    max_resample_times: int = 3  # dynamic_sample: resampling rounds per step before training on what is there
    # optimiser schedule (SFT and GRPO)
    lr_scheduler_type: LrScheduler = LrScheduler.cosine  # a transformers scheduler name (linear, cosine, constant_with_warmup, ...)
    warmup_ratio: float = 0.0  # warm-up as a fraction of max_steps
    warmup_steps: int = 0  # warm-up steps (overrides warmup_ratio when > 0)
    weight_decay: float = 0.1  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping norm
    # SFT of the verdict model: the loss weight of the answer's verdict line (通过 / 不通过) against 1 for its
    # 理由 line; the decision is 1 of ~14 answer tokens (bbuqc/training/loss_scale.py)
    verdict_line_weight: float = 1.0
    # GRPO: prompt, completion, each reward and the advantage to completions.jsonl + a W&B table every N
    # steps (a multiple of logging_steps); null: never
    log_completions_steps: int | None = None
    # GRPO: optimiser micro-batches that reuse one rollout batch (the rollout is per_device_batch_size x GPUs x
    # steps_per_generation completions); one of this and generation_batch_size; null: gradient_accumulation_steps
    steps_per_generation: int | None = None
    # GRPO: the importance ratio per token (GRPO/PPO), per sequence (GSPO) or sequence_token (GSPO-token)
    importance_sampling_level: ImportanceSamplingLevel = ImportanceSamplingLevel.token
    # any other ms-swift argument by its ms-swift name ({name: value}); checked against ms-swift's fields
    extra: dict[str, Any] = field(default_factory=dict)


def check_train(t: DictConfig) -> list[str]:
    """The training settings on their own; the batch sizes against the GPUs and the algorithm: validate.py;
    train.extra against ms-swift's arguments, the val/ metric names and train.resume_from's checkpoint:
    bbuqc/training/checks.py."""
    out = _at_least(t, "train", ("max_steps", "per_device_batch_size", "gradient_accumulation_steps",
                                 "max_completion_length", "logging_steps", "save_steps"))
    if t.num_generations < 2:
        out.append(f"train.num_generations={t.num_generations}: GRPO needs at least 2 generations per prompt")
    if t.save_total_limit is not None and t.save_total_limit < 1:
        out.append(f"train.save_total_limit={t.save_total_limit}: expected an integer >= 1 (or null: keep all)")
    for key, low in (("learning_rate", 0), ("temperature", 0), ("repetition_penalty", 0), ("max_grad_norm", 0),
                     ("verdict_line_weight", 0)):
        if not t[key] > low:
            out.append(f"train.{key}={t[key]}: expected a number > {low}")
    for key in ("beta", "weight_decay"):
        if t[key] < 0:
            out.append(f"train.{key}={t[key]}: expected a number >= 0")
    if not t.epsilon > 0:
        out.append(f"train.epsilon={t.epsilon}: expected a number > 0")
    elif t.epsilon_high is not None and t.epsilon_high < t.epsilon:
        out.append(f"train.epsilon_high={t.epsilon_high}: expected >= train.epsilon={t.epsilon} (or null: epsilon)")
    if not 0 < t.top_p <= 1:
        out.append(f"train.top_p={t.top_p}: expected 0 < top_p <= 1")
    if t.top_k is not None and t.top_k < 1:
        out.append(f"train.top_k={t.top_k}: expected an integer >= 1 (or null: off)")
    out += _at_least(t, "train", ("num_iterations", "max_resample_times", "val_batch_size", "val_samples"))
    out += _at_least(t, "train", ("val_answers",), 0)
    if not 0 <= t.warmup_ratio < 1:
        out.append(f"train.warmup_ratio={t.warmup_ratio}: expected 0 <= warmup_ratio < 1")
    out += _at_least(t, "train", ("warmup_steps",), 0)
    n = t.log_completions_steps
    if n is not None and (n < 1 or (t.logging_steps >= 1 and n % t.logging_steps)):
        # ms-swift writes the table when it logs, so only logged steps can carry completions
        out.append(f"train.log_completions_steps={n}: expected a multiple of train.logging_steps={t.logging_steps}")
    if t.eval_steps is not None and t.eval_steps < 1:
        out.append(f"train.eval_steps={t.eval_steps}: expected an integer >= 1 (or null: no validation)")
    if t.steps_per_generation is not None:
        if t.steps_per_generation < 1:
            out.append(f"train.steps_per_generation={t.steps_per_generation}: expected an integer >= 1 (or null)")
        elif t.generation_batch_size is not None:
            # ms-swift derives each from the other: two settings of one quantity
            out.append(f"train.steps_per_generation={t.steps_per_generation}: set it or train.generation_batch_size="
                       f"{t.generation_batch_size}, not both (the rollout is per_device_batch_size x GPUs x "
                       "steps_per_generation)")
    if t.early_stop_patience is not None:
        if t.early_stop_patience < 1:
            out.append(f"train.early_stop_patience={t.early_stop_patience}: expected an integer >= 1")
        elif t.eval_steps is None:
            out.append("train.early_stop_patience: needs train.eval_steps (early stopping watches validation)")
    if t.val_on_start and t.eval_steps is None:
        out.append("train.val_on_start: needs train.eval_steps (it validates as every validation does)")
    return out


@dataclass
class ComputeConfig:
    device: Device = Device.cpu  # cpu | cuda
    precision: Precision = Precision.fp32  # fp32 | bf16 | fp16
    rollout: Rollout = Rollout.hf  # hf | vllm_colocate | vllm_server
    vllm_gpu_memory_utilization: float = 0.5  # vLLM's share of each GPU's memory, in (0, 1] (rollouts, Stage-A)
    # colocated rollouts: GPUs per vLLM engine (tensor parallel); divides compute.nproc_per_node
    vllm_tensor_parallel_size: int = 1
    vllm_max_model_len: int | None = None  # vLLM's context, prompt + completion tokens; null: the model's own
    # colocated rollouts, what is freed while the other side runs (ms-swift's names): sleep_level 0 keeps vLLM's
    # weights and KV cache on the GPU during the training step, 1 frees the cache and offloads its weights, 2 frees both
    sleep_level: int = 0
    offload_model: bool = False  # colocated rollouts: the training model's weights to CPU while vLLM generates
    offload_optimizer: bool = False  # colocated rollouts: the optimizer state to CPU while vLLM generates
    vllm_server_host: str = "127.0.0.1"  # `swift rollout` server (rollout=vllm_server)
    vllm_server_port: int = 8000  # `swift rollout` server port
    deepspeed: DeepSpeed | None = None  # null | zero2 | zero3
    nproc_per_node: int = 1  # GPUs (processes) per node; >1 relaunches under torchrun
    # training on several nodes (torchrun's --nnodes/--node_rank/--master_addr/--master_port; docs/gpu.md): null:
    # one node, or inside a hydra/launcher=slurm job of several nodes, SLURM's node count, node id and first host
    nnodes: int | None = None
    node_rank: int | None = None  # this node, 0 .. nnodes-1 (null: 0, or SLURM's node id)
    master_addr: str | None = None  # node 0's host name or IP, the same on every node; required with nnodes > 1
    master_port: int | None = None  # node 0's rendezvous port; null: 29500 on several nodes, a free one on one


def check_compute(c: DictConfig) -> list[str]:
    out = []
    if c.rollout != Rollout.hf and c.device != Device.cuda:
        out.append(f"compute.rollout={c.rollout}: vLLM rollouts need compute.device=cuda")
    if c.deepspeed and c.device != Device.cuda:
        out.append(f"compute.deepspeed={c.deepspeed}: DeepSpeed needs compute.device=cuda")
    return out + _at_least(c, "compute", ("nproc_per_node",)) + _vllm_settings(c) + _nodes(c)


def _nodes(c: DictConfig) -> list[str]:
    """The multi-node fields among themselves (whether the master address resolves is asked where the job runs,
    bbuqc/runtime/nodes.py)."""
    if c.nnodes is None:
        set_ = [key for key in ("node_rank", "master_addr") if c[key] is not None]
        return [f"compute.{key}={c[key]}: needs compute.nnodes (the run's node count)" for key in set_]
    if c.nnodes < 1:
        return [f"compute.nnodes={c.nnodes}: expected an integer >= 1"]
    out = []
    rank = c.node_rank or 0
    if not 0 <= rank < c.nnodes:
        out.append(f"compute.node_rank={rank}: expected 0 <= node_rank < compute.nnodes={c.nnodes}")
    if c.nnodes > 1 and not c.master_addr:
        out.append(f"compute.master_addr: required with compute.nnodes={c.nnodes} (node 0's host name or IP, the "
                   "same on every node)")
    if c.master_port is not None and not 0 < c.master_port < 65536:
        out.append(f"compute.master_port={c.master_port}: expected a port, 1-65535")
    return out


def _vllm_settings(c: DictConfig) -> list[str]:
    """vLLM's ranges, and the settings only a colocated engine reads (elsewhere they would do nothing)."""
    out = []
    if not 0 < c.vllm_gpu_memory_utilization <= 1:
        out.append(f"compute.vllm_gpu_memory_utilization={c.vllm_gpu_memory_utilization}: expected a fraction of "
                   "GPU memory, 0 < x <= 1")
    tp, gpus = c.vllm_tensor_parallel_size, c.nproc_per_node
    if tp < 1:
        out.append(f"compute.vllm_tensor_parallel_size={tp}: expected an integer >= 1")
    elif gpus >= 1 and gpus % tp:
        out.append(f"compute.vllm_tensor_parallel_size={tp}: must divide compute.nproc_per_node={gpus} "
                   "(each vLLM engine spans that many of the node's training GPUs)")
    if c.vllm_max_model_len is not None and c.vllm_max_model_len < 1:
        out.append(f"compute.vllm_max_model_len={c.vllm_max_model_len}: expected an integer >= 1 (or null)")
    if c.sleep_level not in (0, 1, 2):
        out.append(f"compute.sleep_level={c.sleep_level}: expected 0, 1 or 2")
    if c.rollout != Rollout.vllm_colocate:
        where = ("set it on the `swift rollout` server instead" if c.rollout == Rollout.vllm_server
                 else "it has no vLLM engine")
        colocated = {"vllm_tensor_parallel_size": tp != 1, "sleep_level": c.sleep_level != 0,
                     "offload_model": c.offload_model, "offload_optimizer": c.offload_optimizer}
        out += [f"compute.{key}={str(c[key]).lower()}: a setting of colocated vLLM rollouts "
                f"(compute.rollout=vllm_colocate, e.g. compute=gpu_vllm); compute.rollout={c.rollout}: {where}"
                for key, set_ in colocated.items() if set_]
    return out


@dataclass
class DataConfig:
    # synthetic: the generated world under `synthetic_dir` (built on first use);
    # files: the user's own root / JSONL files below.
    source: DataSource = DataSource.synthetic
    synthetic_dir: str | None = None  # null: <cache>/synth/seed<seed>-g<groups>
    synthetic_seed: int = 0  # the synthetic world's seed (another seed: another, held-out world)
    synthetic_groups_per_mission: int = 6  # the synthetic world's size
    # a shifted test world (docs/data.md, "Shifted worlds"): more_images | more_irrelevant | layout |
    # unseen_labels; its own folder (...-shift-<names>) and group ids. []: the unshifted world
    synthetic_shift: list[str] = field(default_factory=list)
    root: str | None = None  # Stage-A image tree
    summary_jsonl: str | None = None  # summary-task rows
    stage_a_jsonl: list[str] = field(default_factory=list)  # verdict-task sources
    # your ms-swift dataset, either task: messages + images + the columns the rewards read (docs/data.md,
    # "Your ms-swift data"); instead of summary_jsonl / stage_a_jsonl
    swift_jsonl: list[str] = field(default_factory=list)
    max_rows: int | None = None  # use at most this many rows (groups for verdicts); null: all
    # held-out validation set: explicit files (never trained on; must share no group id with the training
    # data), else this fraction of the groups, picked deterministically by group id
    val_fraction: float = 0.0
    val_stage_a_jsonl: list[str] = field(default_factory=list)  # verdict task
    val_summary_jsonl: str | None = None  # summary task
    # summary task: a training image whose reference states a rare fact (a category, or an attribute's value
    # from a closed set, stated by fewer than rare_fact_share of the training images) is trained on
    # rare_fact_repeat times. The failures that decide a verdict are such facts (a non-compliant screw: ~1% of
    # the images); 1: every image once (docs/training.md, "Rare facts")
    rare_fact_repeat: int = 1  # times a training image with a rare fact is trained on (summary task)
    rare_fact_share: float = 0.03  # a fact stated by fewer than this share of the training images is rare


def check_data(d: DictConfig) -> list[str]:
    out = []
    for key in ("root", "summary_jsonl"):
        if d[key] and not Path(d[key]).exists():
            out.append(f"data.{key}={d[key]}: no such file or folder")
    for key in ("stage_a_jsonl", "val_stage_a_jsonl", "swift_jsonl"):
        out += [f"data.{key}[{i}]={v}: no such file" for i, v in enumerate(d[key]) if not Path(v).is_file()]
    if d.val_summary_jsonl and not Path(d.val_summary_jsonl).is_file():
        out.append(f"data.val_summary_jsonl={d.val_summary_jsonl}: no such file")
    if not 0 <= d.val_fraction < 1:
        out.append(f"data.val_fraction={d.val_fraction}: expected 0 <= val_fraction < 1")
    if d.rare_fact_repeat < 1:
        out.append(f"data.rare_fact_repeat={d.rare_fact_repeat}: expected an integer >= 1 (1: every image once)")
    if not 0 < d.rare_fact_share <= 1:
        out.append(f"data.rare_fact_share={d.rare_fact_share}: expected 0 < rare_fact_share <= 1")
    out += _synthetic_shift(d)
    return out


def _synthetic_shift(d: DictConfig) -> list[str]:
    from bbuqc.data.synth.shift import SHIFTS  # the names live beside the generator

    names = list(d.get("synthetic_shift") or [])
    unknown = [n for n in names if n not in SHIFTS]
    if not unknown:
        return []
    return [f"data.synthetic_shift=[{','.join(map(str, names))}]: unknown shift "
            f"{', '.join(repr(n) for n in unknown)}; known: {', '.join(SHIFTS)}"]


@dataclass
class InferConfig:
    backend: StageABackend = StageABackend.hf  # hf | vllm
    batch_size: int = 8  # images per generate() call
    max_new_tokens: int = 256  # tokens per summary
    temperature: float = 0.0  # 0: greedy
    # an image whose summary is neither one JSON object nor 无关图片 is sampled again, up to `resample` times, at
    # resample_temperature, each try seeded by the image's bytes and `seed` (a resumed run writes the same
    # bytes); the first usable answer is kept, else the first answer (docs/stage_a.md, "Resampling")
    resample: int = 4  # tries per unusable summary; 0: off
    resample_temperature: float = 1.0  # > 0: a resample samples
    seed: int = 0  # mixed into every try's seed (another seed, other samples)
    output: str | None = None  # null: outputs/stage_a/<mission id>.jsonl under the working dir (stable: re-running resumes)
    workers: int = 1  # >1: Stage-A on Ray Data with this many model actors (one GPU each with compute.device=cuda)
    # auto | <host>:<port> attaches to a Ray cluster (even with workers=1), local starts one; null: a local one
    # when workers>1, else no Ray
    ray_address: str | None = None
    force_resume: bool = False  # resume an output whose settings file (<output>.meta.json) is missing
    progress: bool = True  # a progress bar on stderr


def check_infer(i: DictConfig) -> list[str]:
    out = _at_least(i, "infer", ("batch_size", "max_new_tokens", "workers"))
    if i.temperature < 0:
        out.append(f"infer.temperature={i.temperature}: expected a number >= 0")
    out += _at_least(i, "infer", ("resample",), low=0)
    if i.resample > 0 and i.resample_temperature <= 0:
        out.append(f"infer.resample_temperature={i.resample_temperature}: expected a number > 0 "
                   "(a resample at temperature 0 repeats the greedy answer; infer.resample=0 turns resampling off)")
    return out


@dataclass
class EvaluateConfig:
    # hf: transformers generate (model.adapter merged with PEFT); vllm: vLLM's offline engine, model.adapter as a
    # LoRA request (GPU machines with the gpu extra; docs/evaluate.md)
    backend: StageABackend = StageABackend.hf
    output_dir: str | None = None  # null: the Hydra run folder; an existing one resumes
    seed: int = 0  # torch seed for sampling (evaluate.temperature > 0)
    samples_per_group: int = 1  # answers per group, majority-voted (a tie counts as 不通过)
    batch_size: int = 8  # groups per generate() call
    max_new_tokens: int = 96  # tokens per answer
    temperature: float = 0.0  # 0: greedy; > 0 samples (with samples_per_group > 1)
    workers: int = 1  # >1: answer on Ray Data with this many model actors (one GPU each with compute.device=cuda)
    # auto | <host>:<port> attaches to a Ray cluster (even with workers=1), local starts one; null: a local one
    # when workers>1, else no Ray (as infer.ray_address)
    ray_address: str | None = None
    force_resume: bool = False  # resume predictions.jsonl whose predictions.settings.json is missing
    progress: bool = True  # a progress bar on stderr


def check_evaluate(e: DictConfig) -> list[str]:
    out = _at_least(e, "evaluate", ("samples_per_group", "batch_size", "max_new_tokens", "workers"))
    if e.temperature < 0:
        out.append(f"evaluate.temperature={e.temperature}: expected a number >= 0")
    if e.output_dir and Path(e.output_dir).is_file():
        out.append(f"evaluate.output_dir={e.output_dir}: is a file, expected a folder")
    return out


@dataclass
class ExportConfig:
    output: str | None = None  # the merged model folder to write (required)
    overwrite: bool = False  # replace an existing non-empty export.output


def check_export(e: DictConfig) -> list[str]:
    if not e.output:
        return ["export.output: required (the folder to write the merged model to)"]
    if Path(e.output).is_file():
        return [f"export.output={e.output}: is a file, expected a folder"]
    if Path(e.output).is_dir() and any(Path(e.output).iterdir()) and not e.overwrite:
        return [f"export.output={e.output}: exists and is not empty (export.overwrite=true replaces it)"]
    return []


@dataclass
class LoggerConfig:
    backend: LoggerBackend = LoggerBackend.wandb  # wandb | none
    mode: LoggerMode = LoggerMode.offline  # offline | online
    project: str = "bbuqc"  # W&B project
    entity: str | None = None  # W&B entity (team); null: the default one
    group: str | None = None  # null: the sweep's name inside a -m run
    name: str | None = None  # null: the run's overrides


@dataclass
class BBUQCConfig:
    mission: MissionConfig = field(default_factory=MissionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    chord: ChordConfig = field(default_factory=ChordConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # A named experiment (experiments/*.yaml, `experiment=<name>`) records itself here.
    experiment: str | None = None


def choice_names(dotted: str) -> list[str] | None:
    """What a choice field (an Enum) takes, as users type it (``null`` first when it may be null);
    None when ``dotted`` is not a choice field of the schema."""
    import dataclasses
    import enum
    import types
    import typing

    node: Any = BBUQCConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
        hint = typing.get_type_hints(node).get(part)
        if hint is None:
            return None
        if i < len(parts) - 1:
            node = hint
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    choices = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if not choices:
        return None
    return (["null"] if type(None) in args else []) + [m.name for m in choices[0]]
