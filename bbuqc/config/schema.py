"""The typed config tree. Every node here is a Hydra structured config, so a typo
or a wrongly typed override fails while Hydra composes, before any code runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class MissionConfig:
    id: str = MISSING  # mission id (mission=<id>), e.g. bbu_wind
    name: str = MISSING  # the Chinese mission name, as in the image tree and Stage-A records
    domain: str = MISSING  # BBU | RRU: the summary header's domain
    focus: list[str] = field(default_factory=list)  # the reviewer's focus points, quoted in the prompts


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


@dataclass
class TaskConfig:
    name: str = MISSING  # summary | verdict; also the reward namespace it trains with


@dataclass
class AlgoConfig:
    name: str = "grpo"  # grpo: ms-swift GRPO with the `reward` set | sft: cross-entropy on the reference outputs


@dataclass
class RewardConfig:
    name: str = MISSING  # the reward set's name (reward=<name>)
    # {namespace: {reward: weight}}: `summary.format` is reward.weights.summary.format.
    # Values stay untyped here so validation can name a bad one in the project's terms.
    weights: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class LoraConfig:
    last_k: int = 2  # LoRA on every Linear of the last K LLM decoder blocks (vision tower and aligner never)
    rank: int = 8  # LoRA rank r
    alpha: int = 16  # LoRA alpha (scale alpha / r)
    dropout: float = 0.05  # LoRA dropout


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
    # stop after this many validations without a new best; null: never stop early
    early_stop_patience: int | None = None
    val_batch_size: int = 8  # prompts per generate() call during validation
    val_max_new_tokens: int | None = None  # null: max_completion_length
    # what the job returns to a sweeper: these val/ metrics at the best checkpoint, as a tuple (one per
    # hydra.sweeper.direction); empty: the select_by value alone (bbuqc/sweep/objective.py)
    objectives: list[str] = field(default_factory=list)
    # GRPO algorithm settings, under ms-swift's own names and defaults (README "GRPO settings")
    loss_type: str = "grpo"  # grpo | bnpo | dr_grpo | dapo | cispo | sapo | real | fipo
    epsilon: float = 0.2  # PPO clip range (lower side)
    epsilon_high: float | None = None  # upper clip (DAPO clip-higher, e.g. 0.28); null: epsilon
    num_iterations: int = 1  # policy updates per rollout batch (mu in the GRPO paper)
    scale_rewards: str | None = None  # group | batch | none | gdpo; null: the advantage_estimator's default
    advantage_estimator: str = "grpo"  # grpo | rloo | reinforce_plus_plus
    top_p: float = 1.0  # rollout nucleus sampling, in (0, 1]
    top_k: int | None = None  # rollout top-k sampling; null: off
    repetition_penalty: float = 1.0  # rollout repetition penalty (1: none)
    dynamic_sample: bool = False  # DAPO: resample groups whose rewards all agree (zero std, zero gradient)
    max_resample_times: int = 3  # dynamic_sample: resampling rounds per step before training on what is there
    # optimiser schedule (SFT and GRPO)
    lr_scheduler_type: str = "cosine"  # a transformers scheduler name (linear, cosine, constant_with_warmup, ...)
    warmup_ratio: float = 0.0  # warm-up as a fraction of max_steps
    warmup_steps: int = 0  # warm-up steps (overrides warmup_ratio when > 0)
    weight_decay: float = 0.1  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping norm
    # GRPO: prompt, completion, each reward and the advantage to completions.jsonl + a W&B table every N
    # steps (a multiple of logging_steps); null: never
    log_completions_steps: int | None = None
    # any other ms-swift argument by its ms-swift name ({name: value}); checked against ms-swift's fields
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ComputeConfig:
    device: str = "cpu"  # cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16
    rollout: str = "hf"  # hf | vllm_colocate | vllm_server
    vllm_gpu_memory_utilization: float = 0.5  # vLLM's share of GPU memory (colocated rollouts)
    vllm_server_host: str = "127.0.0.1"  # `swift rollout` server (rollout=vllm_server)
    vllm_server_port: int = 8000  # `swift rollout` server port
    deepspeed: str | None = None  # null | zero2 | zero3
    nproc_per_node: int = 1  # GPUs (processes) per node; >1 relaunches under torchrun


@dataclass
class DataConfig:
    # synthetic: the generated world under `synthetic_dir` (built on first use);
    # files: the user's own root / JSONL files below.
    source: str = "synthetic"
    synthetic_dir: str | None = None  # null: <cache>/synth/seed<seed>-g<groups>
    synthetic_seed: int = 0  # the synthetic world's seed (another seed: another, held-out world)
    synthetic_groups_per_mission: int = 6  # the synthetic world's size
    root: str | None = None  # Stage-A image tree
    summary_jsonl: str | None = None  # summary-task rows
    stage_a_jsonl: list[str] = field(default_factory=list)  # verdict-task sources
    max_rows: int | None = None  # use at most this many rows (groups for verdicts); null: all
    # held-out validation set: explicit files (never trained on; must share no group id with the training
    # data), else this fraction of the groups, picked deterministically by group id
    val_fraction: float = 0.0
    val_stage_a_jsonl: list[str] = field(default_factory=list)  # verdict task
    val_summary_jsonl: str | None = None  # summary task


@dataclass
class InferConfig:
    backend: str = "hf"  # hf | vllm
    batch_size: int = 8  # images per generate() call
    max_new_tokens: int = 256  # tokens per summary
    temperature: float = 0.0  # 0: greedy
    output: str | None = None  # null: outputs/stage_a/<mission id>.jsonl under the working dir (stable: re-running resumes)
    workers: int = 1  # >1: Stage-A on Ray Data with this many model actors (one GPU each with compute.device=cuda)
    ray_address: str | None = None  # workers>1: auto | <host>:<port> attaches to a Ray cluster; null starts a local one
    force_resume: bool = False  # resume an output whose settings file (<output>.meta.json) is missing
    progress: bool = True  # a progress bar on stderr


@dataclass
class EvaluateConfig:
    output_dir: str | None = None  # null: the Hydra run folder; an existing one resumes
    seed: int = 0  # torch seed for sampling (evaluate.temperature > 0)
    samples_per_group: int = 1  # answers per group, majority-voted (a tie counts as 不通过)
    batch_size: int = 8  # groups per generate() call
    max_new_tokens: int = 96  # tokens per answer
    temperature: float = 0.0  # 0: greedy; > 0 samples (with samples_per_group > 1)
    workers: int = 1  # >1: answer on Ray Data with this many model actors (one GPU each with compute.device=cuda)
    ray_address: str | None = None  # workers>1: auto | <host>:<port> attaches to a Ray cluster; null starts a local one
    force_resume: bool = False  # resume predictions.jsonl whose predictions.settings.json is missing
    progress: bool = True  # a progress bar on stderr


@dataclass
class ExportConfig:
    output: str | None = None  # the merged model folder to write (required)
    overwrite: bool = False  # replace an existing non-empty export.output


@dataclass
class LoggerConfig:
    backend: str = "wandb"  # wandb | none
    mode: str = "offline"  # offline | online
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
    # A named experiment (bbuqc/conf/experiment/*.yaml, `experiment=<name>`) records itself here.
    experiment: str | None = None
