"""Validation of a composed config, before any model loads.

Every rule returns problems as one line each, naming the field (the override a user
would type) and the value, so a bad sweep fails in seconds instead of after model load.
Each command runs only the checks of the nodes it uses (`COMMAND_CHECKS`): `bbuqc-infer` never
looks at `lora` or `reward`. Nothing here imports torch, transformers or ms-swift.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bbuqc.config.reward_sets import flatten_weights
from bbuqc.errors import InputError
from bbuqc.rewards import reward_id_problem

CHOICES = {
    "task.name": ("summary", "verdict"),
    "algo.name": ("grpo", "sft"),
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


def _check_choices(cfg: DictConfig, nodes: tuple[str, ...]) -> list[str]:
    out = []
    for key, allowed in CHOICES.items():
        if key.split(".", 1)[0] not in nodes:
            continue
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
    if t.save_total_limit is not None and t.save_total_limit < 1:
        out.append(f"train.save_total_limit={t.save_total_limit}: expected an integer >= 1 (or null: keep all)")
    if not t.learning_rate > 0:
        out.append(f"train.learning_rate={t.learning_rate}: expected a number > 0")
    if not t.temperature > 0:
        out.append(f"train.temperature={t.temperature}: expected a number > 0")
    if t.beta < 0:
        out.append(f"train.beta={t.beta}: expected a number >= 0")
    if t.resume_from is not None and t.resume_from != "auto":
        from bbuqc.training.checkpoints import checkpoint_problem

        problem = checkpoint_problem(t.resume_from)
        if problem:
            out.append(f"train.resume_from={t.resume_from}: {problem} (an incomplete checkpoint cannot "
                       "continue a run; train.resume_from=auto picks the latest complete one)")
    return out


def _check_grpo_settings(cfg: DictConfig) -> list[str]:
    """The GRPO / optimiser settings and train.extra, against ms-swift's own choices and argument names."""
    import difflib

    from bbuqc.training import swift_fields as sf
    from bbuqc.training.args import OWNED

    t, out = cfg.train, []
    for key, allowed in (("loss_type", sf.GRPO_LOSS_TYPES), ("advantage_estimator", sf.ADVANTAGE_ESTIMATORS),
                         ("scale_rewards", (None, *sf.SCALE_REWARDS)), ("lr_scheduler_type", sf.LR_SCHEDULER_TYPES)):
        if t[key] not in allowed:
            shown = ", ".join("null" if a is None else a for a in allowed)
            out.append(f"train.{key}={t[key]!r}: expected one of {shown}")
    if not t.epsilon > 0:
        out.append(f"train.epsilon={t.epsilon}: expected a number > 0")
    elif t.epsilon_high is not None and t.epsilon_high < t.epsilon:
        out.append(f"train.epsilon_high={t.epsilon_high}: expected >= train.epsilon={t.epsilon} (or null: epsilon)")
    if not 0 < t.top_p <= 1:
        out.append(f"train.top_p={t.top_p}: expected 0 < top_p <= 1")
    if t.top_k is not None and t.top_k < 1:
        out.append(f"train.top_k={t.top_k}: expected an integer >= 1 (or null: off)")
    if not t.repetition_penalty > 0:
        out.append(f"train.repetition_penalty={t.repetition_penalty}: expected a number > 0")
    for key in ("num_iterations", "max_resample_times"):
        if t[key] < 1:
            out.append(f"train.{key}={t[key]}: expected an integer >= 1")
    if not 0 <= t.warmup_ratio < 1:
        out.append(f"train.warmup_ratio={t.warmup_ratio}: expected 0 <= warmup_ratio < 1")
    if t.warmup_steps < 0:
        out.append(f"train.warmup_steps={t.warmup_steps}: expected an integer >= 0")
    if t.weight_decay < 0:
        out.append(f"train.weight_decay={t.weight_decay}: expected a number >= 0")
    if not t.max_grad_norm > 0:
        out.append(f"train.max_grad_norm={t.max_grad_norm}: expected a number > 0")
    if t.log_completions_steps is not None:
        n = t.log_completions_steps
        if n < 1 or n % t.logging_steps:
            # ms-swift writes the table when it logs, so only logged steps can carry completions
            out.append(f"train.log_completions_steps={n}: expected a multiple of train.logging_steps={t.logging_steps}")
        elif cfg.algo.name != "grpo":
            out.append("train.log_completions_steps: sampled completions are GRPO's (algo=grpo); SFT generates none")
    fields = sf.RLHF_FIELDS if cfg.algo.name == "grpo" else sf.SFT_FIELDS
    cls = "RLHFArguments" if cfg.algo.name == "grpo" else "SftArguments"
    for key in t.extra:
        if key in OWNED:
            out.append(f"train.extra.{key}: bbuqc sets {key}; use {OWNED[key]} instead")
        elif key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            out.append(f"train.extra.{key}: not an ms-swift {cls} argument (ms-swift {sf.SWIFT_VERSION}){hint}")
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
    out += _adapter_lora_problems(cfg)
    return out


def _adapter_lora_problems(cfg: DictConfig) -> list[str]:
    """Training from model.adapter continues that LoRA, and train.resume_from restores its checkpoint's
    LoRA (ms-swift keeps the checkpoint's rank whatever lora.rank says), so lora.last_k / lora.rank must
    describe it."""
    from bbuqc.models.adapters import read_adapter

    resume = cfg.train.get("resume_from")
    sources = [("model.adapter", cfg.model.adapter, "training continues that LoRA"),
               ("train.resume_from", None if resume == "auto" else resume, "a resumed run continues that LoRA")]
    out, lora = [], cfg.lora
    for field, path, why in sources:
        if not path or not Path(path).is_dir():
            continue
        try:
            adapter = read_adapter(path)
        except ValueError:
            continue  # _check_model / _check_train name it
        if adapter.blocks and len(adapter.blocks) != lora.last_k:
            out.append(f"lora.last_k={lora.last_k}: {field}={path} has LoRA on "
                       f"{len(adapter.blocks)} blocks; {why}, so set lora.last_k={len(adapter.blocks)}")
        if adapter.rank and adapter.rank != lora.rank:
            out.append(f"lora.rank={lora.rank}: {field}={path} has rank {adapter.rank}; "
                       f"{why}, so set lora.rank={adapter.rank}")
    return out


def _num_llm_layers(cfg: DictConfig) -> int | None:
    """The model's LLM depth from its config.json when the checkpoint is at hand, else the preset."""
    from bbuqc.models.loading import read_num_llm_layers

    path = cfg.model.path
    if path and (Path(path) / "config.json").is_file():
        try:
            return read_num_llm_layers(path)
        except ValueError:
            return cfg.model.num_llm_layers
    return cfg.model.num_llm_layers


def _check_model(cfg: DictConfig) -> list[str]:
    from bbuqc.models.adapters import adapter_problem, read_adapter, read_base
    from bbuqc.models.resolve import model_dir, tiny_kind
    from bbuqc.models.safety import remote_code_problem

    out = []
    m = cfg.model
    for key in ("min_pixels", "max_pixels"):
        if m.get(key) is not None and int(m[key]) <= 0:
            out.append(f"model.{key}={m[key]}: expected a positive number of pixels (h*w) or null")
    if m.get("min_pixels") and m.get("max_pixels") and int(m.max_pixels) < int(m.min_pixels):
        out.append(f"model.max_pixels={m.max_pixels} is below model.min_pixels={m.min_pixels}: "
                   "expected min_pixels <= max_pixels (pixels per image, h*w)")
    if not str(m.preset).startswith("tiny"):
        if not m.path:
            out.append(f"model.path: required for model={m.preset} (a local checkpoint folder; no hub access)")
            return out
    if m.path and not Path(m.path).is_dir():
        return out + [f"model.path={m.path}: no such folder"]
    for key in ("path", "adapter"):
        if m[key] and Path(m[key]).is_dir():
            problem = remote_code_problem(m[key], f"model.{key}", m.trust_remote_code)
            if problem:
                out.append(problem)
    if m.adapter:
        if not Path(m.adapter).is_dir():
            return out + [f"model.adapter={m.adapter}: no such checkpoint folder"]
        try:
            adapter = read_adapter(m.adapter)
        except ValueError as exc:
            return out + [f"model.adapter={m.adapter}: {exc}"]
        base_dir = model_dir(cfg)
        base = read_base(base_dir) if base_dir is not None else None
        model_type = m.model_type if tiny_kind(cfg) is None else _tiny_model_type(cfg)
        problem = adapter_problem(adapter, base, model_type)
        if problem:
            out.append(problem)
    return out


def _check_export_model(cfg: DictConfig) -> list[str]:
    """Export merges into model.path, or (tiny presets without a path) into the base the adapter names."""
    from bbuqc.models.adapters import base_of_adapter

    if cfg.model.path or not str(cfg.model.preset).startswith("tiny") or not cfg.model.adapter:
        return _check_model(cfg)
    if not Path(cfg.model.adapter).is_dir():
        return [f"model.adapter={cfg.model.adapter}: no such checkpoint folder"]
    try:
        base = base_of_adapter(cfg.model.adapter)
    except ValueError as exc:
        return [f"model.adapter={cfg.model.adapter}: {exc}"]
    if base is None:
        return [f"model.path: required; model.adapter={cfg.model.adapter} names a base model folder that is not there"]
    return []


def _tiny_model_type(cfg: DictConfig) -> str:
    from bbuqc.models.resolve import tiny_kind
    from bbuqc.models.tiny import SWIFT_TYPES

    return SWIFT_TYPES[tiny_kind(cfg) or ("vl" if cfg.model.multimodal else "text")][0]


def _check_data(cfg: DictConfig) -> list[str]:
    out = []
    d = cfg.data
    for key in ("root", "summary_jsonl"):
        value = d[key]
        if value and not Path(value).exists():
            out.append(f"data.{key}={value}: no such file or folder")
    for key in ("stage_a_jsonl", "val_stage_a_jsonl"):
        for i, value in enumerate(d[key]):
            if not Path(value).is_file():
                out.append(f"data.{key}[{i}]={value}: no such file")
    if d.val_summary_jsonl and not Path(d.val_summary_jsonl).is_file():
        out.append(f"data.val_summary_jsonl={d.val_summary_jsonl}: no such file")
    if not 0 <= d.val_fraction < 1:
        out.append(f"data.val_fraction={d.val_fraction}: expected 0 <= val_fraction < 1")
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


def _positive(cfg: DictConfig, keys: tuple[str, ...]) -> list[str]:
    return [f"{key}={_get(cfg, key)}: expected an integer >= 1" for key in keys if _get(cfg, key) < 1]


def _check_infer(cfg: DictConfig) -> list[str]:
    out = _positive(cfg, ("infer.batch_size", "infer.max_new_tokens", "infer.workers"))
    if cfg.data.source == "files" and not cfg.data.root:
        out.append("data.root: required by bbuqc-infer with data.source=files (the image tree)")
    if cfg.infer.temperature < 0:
        out.append(f"infer.temperature={cfg.infer.temperature}: expected a number >= 0")
    if not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: a text-only model (model.multimodal=false) cannot summarise "
                   "images; Stage-A needs a VL model (e.g. model=tiny)")
    return out


def _check_evaluate(cfg: DictConfig) -> list[str]:
    out = []
    if cfg.task.name != "verdict":
        out.append(f"task={cfg.task.name}: bbuqc-evaluate judges groups (task=verdict)")
    out += _positive(cfg, ("evaluate.samples_per_group", "evaluate.batch_size", "evaluate.max_new_tokens",
                           "evaluate.workers"))
    if cfg.data.source == "files" and not cfg.data.stage_a_jsonl:
        out.append("data.stage_a_jsonl: required by bbuqc-evaluate with data.source=files")
    if cfg.evaluate.temperature < 0:
        out.append(f"evaluate.temperature={cfg.evaluate.temperature}: expected a number >= 0")
    if cfg.evaluate.output_dir and Path(cfg.evaluate.output_dir).is_file():
        out.append(f"evaluate.output_dir={cfg.evaluate.output_dir}: is a file, expected a folder")
    return out


def _check_export(cfg: DictConfig) -> list[str]:
    e, out = cfg.export, []
    if not cfg.model.adapter:
        out.append("model.adapter: required by bbuqc-export (the LoRA checkpoint folder to merge)")
    if not e.output:
        out.append("export.output: required (the folder to write the merged model to)")
    elif Path(e.output).is_file():
        out.append(f"export.output={e.output}: is a file, expected a folder")
    elif Path(e.output).is_dir() and any(Path(e.output).iterdir()) and not e.overwrite:
        out.append(f"export.output={e.output}: exists and is not empty (export.overwrite=true replaces it)")
    return out


def _check_algo(cfg: DictConfig) -> list[str]:
    out, d = [], cfg.data
    if d.source == "files":
        if cfg.task.name == "summary" and not d.summary_jsonl:
            out.append("data.summary_jsonl: required for task=summary with data.source=files")
        if cfg.task.name == "verdict" and not d.stage_a_jsonl:
            out.append("data.stage_a_jsonl: required for task=verdict with data.source=files")
    if cfg.algo.name == "sft" and cfg.chord.enabled:
        out.append("chord=on: CHORD mixes SFT into GRPO; it needs algo=grpo (algo=sft is SFT already)")
    if cfg.task.name == "summary" and not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: task=summary trains on images and needs a VL model "
                   "(model.multimodal=false); e.g. model=tiny")
    return out


def _check_validation(cfg: DictConfig) -> list[str]:
    from bbuqc.training.selection import validation_metric_names

    t, out = cfg.train, []
    if t.eval_steps is not None and t.eval_steps < 1:
        out.append(f"train.eval_steps={t.eval_steps}: expected an integer >= 1 (or null: no validation)")
    if t.early_stop_patience is not None:
        if t.early_stop_patience < 1:
            out.append(f"train.early_stop_patience={t.early_stop_patience}: expected an integer >= 1")
        elif t.eval_steps is None:
            out.append("train.early_stop_patience: needs train.eval_steps (early stopping watches validation)")
    d = cfg.data
    has_validation = d.val_fraction > 0 or bool(d.val_stage_a_jsonl if cfg.task.name == "verdict" else d.val_summary_jsonl)
    if t.eval_steps is not None and not has_validation:
        out.append(f"train.eval_steps={t.eval_steps}: no validation set; set data.val_fraction or "
                   + ("data.val_stage_a_jsonl" if cfg.task.name == "verdict" else "data.val_summary_jsonl"))
    names = validation_metric_names(cfg.task.name, list(reward_weights(cfg)))
    if t.select_by is not None and t.select_by not in names:
        out.append(f"train.select_by={t.select_by}: validation of task={cfg.task.name} does not produce it; "
                   f"expected one of {', '.join(names)}")
    if t.val_batch_size < 1:
        out.append(f"train.val_batch_size={t.val_batch_size}: expected an integer >= 1")
    return out


# The nodes each command reads (choice checks are limited to them) and the checks it runs.
COMMAND_NODES = {
    "train": ("task", "algo", "model", "compute", "logger", "data", "lora", "train", "chord", "reward"),
    "infer": ("model", "compute", "logger", "data", "infer"),
    "evaluate": ("task", "model", "compute", "logger", "data", "evaluate"),
    "export": ("model", "compute", "export"),
}
COMMAND_CHECKS = {
    "train": (_check_rewards, _check_train, _check_chord, _check_lora, _check_model, _check_data, _check_compute,
              _check_algo, _check_validation, _check_grpo_settings),
    "infer": (_check_model, _check_data, _check_compute, _check_infer),
    "evaluate": (_check_model, _check_data, _check_compute, _check_evaluate),
    "export": (_check_export_model, _check_export),
}


def problems(cfg: DictConfig, command: str) -> list[str]:
    found = _check_choices(cfg, COMMAND_NODES[command])
    if found:  # later checks compare values against the choices
        return found
    return [line for check in COMMAND_CHECKS[command] for line in check(cfg)]


def validate(cfg: DictConfig, command: str) -> None:
    found = problems(cfg, command)
    if found:
        raise ConfigError(found)
