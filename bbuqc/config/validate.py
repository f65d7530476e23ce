"""Validation of a composed config, before any model loads.

Every rule returns problems as one line each, naming the field (the override a user would type) and
the value, so a bad sweep fails in seconds instead of after model load. Values outside a closed set
never get here: they are Enum fields, refused while Hydra composes. The rules of one node sit beside
it (``check_<node>`` in schema.py); the rules across nodes are here. ``COMMAND_CHECKS`` is what each
command runs: `bbuqc-infer` never looks at `lora` or `reward`. Nothing here imports torch,
transformers or ms-swift.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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
    return t.per_device_batch_size * cfg.compute.nproc_per_node * steps


def _rewards_fit_task(cfg: DictConfig) -> list[str]:
    task = cfg.task.name
    foreign = sorted({rid.split(".", 1)[0] for rid in reward_weights(cfg) if "." in rid} - {task})
    if not foreign:
        return []
    suggestion = "verdict" if task == S.Task.verdict else "summary_full"
    return [f"reward={cfg.reward.name}: its {', '.join(n + '.*' for n in foreign)} rewards cannot train "
            f"task={task}; use a {task}.* reward set (e.g. reward={suggestion})"]


def _batch_sizes(cfg: DictConfig) -> list[str]:
    """The rollout batch against the group size and the devices (check_train names the numbers < 1)."""
    t, world = cfg.train, cfg.compute.nproc_per_node
    if t.num_generations < 2 or min(t.per_device_batch_size, t.gradient_accumulation_steps, world) < 1:
        return []
    generation_batch = effective_generation_batch_size(cfg)
    if generation_batch % t.num_generations:
        return [f"train.generation_batch_size={generation_batch}: must be divisible by "
                f"train.num_generations={t.num_generations}"]
    if generation_batch % (t.per_device_batch_size * world):
        return [f"train.generation_batch_size={generation_batch}: must be divisible by "
                f"train.per_device_batch_size={t.per_device_batch_size} x compute.nproc_per_node={world}"]
    return []


def _grpo_only(cfg: DictConfig) -> list[str]:
    """Sampled completions are GRPO's, and train.extra must be an argument of the algorithm's ms-swift class."""
    import difflib

    from bbuqc.training import swift_fields as sf
    from bbuqc.training.args import OWNED

    grpo, out = cfg.algo.name == S.Algo.grpo, []
    if cfg.train.log_completions_steps and not grpo:
        out.append("train.log_completions_steps: sampled completions are GRPO's (algo=grpo); SFT generates none")
    if not grpo and cfg.train.steps_per_generation is not None:
        out.append("train.steps_per_generation: rollouts are GRPO's (algo=grpo); SFT generates none")
    if not grpo and cfg.train.importance_sampling_level != "token":
        out.append(f"train.importance_sampling_level={cfg.train.importance_sampling_level}: an importance ratio is "
                   "GRPO's (algo=grpo); SFT has none")
    max_len = cfg.compute.vllm_max_model_len
    if grpo and cfg.compute.rollout == S.Rollout.vllm_colocate and max_len is not None \
            and max_len <= cfg.train.max_completion_length:
        out.append(f"compute.vllm_max_model_len={max_len}: leaves no room for a prompt before "
                   f"train.max_completion_length={cfg.train.max_completion_length} completion tokens")
    fields, cls = (sf.RLHF_FIELDS, "RLHFArguments") if grpo else (sf.SFT_FIELDS, "SftArguments")
    for key in cfg.train.extra:
        if key in OWNED:
            out.append(f"train.extra.{key}: bbuqc sets {key}; use {OWNED[key]} instead")
        elif key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            out.append(f"train.extra.{key}: not an ms-swift {cls} argument (ms-swift {sf.SWIFT_VERSION}){hint}")
    return out


def _verdict_line_weight(cfg: DictConfig) -> list[str]:
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


def _lora_fits_model(cfg: DictConfig) -> list[str]:
    """lora.last_k against the model's depth, and against the LoRA a run continues."""
    lora = cfg.lora
    if lora.last_k < 1:
        return []  # check_lora names it
    layers = _num_llm_layers(cfg)
    out = []
    if layers is not None and lora.last_k > layers:
        out.append(f"lora.last_k={lora.last_k}: model={cfg.model.preset} has only {layers} LLM blocks")
    return out + _vision_lora(cfg) + _adapter_lora_problems(cfg)


def _vision_lora(cfg: DictConfig) -> list[str]:
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


def _adapter_lora_problems(cfg: DictConfig) -> list[str]:
    """Training from model.adapter continues that LoRA, and train.resume_from restores its checkpoint's
    LoRA (ms-swift keeps the checkpoint's rank whatever lora.rank says), so lora.last_k / lora.rank /
    lora.modules_to_save must describe it."""
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
            continue  # check_model / check_train name it
        if adapter.blocks and len(adapter.blocks) != lora.last_k:
            out.append(f"lora.last_k={lora.last_k}: {field}={path} has LoRA on "
                       f"{len(adapter.blocks)} blocks; {why}, so set lora.last_k={len(adapter.blocks)}")
        if adapter.rank and adapter.rank != lora.rank:
            out.append(f"lora.rank={lora.rank}: {field}={path} has rank {adapter.rank}; "
                       f"{why}, so set lora.rank={adapter.rank}")
        for key in ("vision", "aligner"):
            if getattr(adapter, key) != bool(lora[key]):
                out.append(f"lora.{key}={str(bool(lora[key])).lower()}: {field}={path} has "
                           f"{'' if getattr(adapter, key) else 'no '}LoRA on the {key} side; {why}, so set "
                           f"lora.{key}={str(getattr(adapter, key)).lower()}")
        if set(adapter.modules_to_save) != set(lora.modules_to_save):
            out.append(f"lora.modules_to_save={list(lora.modules_to_save)}: {field}={path} trains "
                       f"{list(adapter.modules_to_save)}; {why}, so set lora.modules_to_save={list(adapter.modules_to_save)}")
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


def _model_usable(m: DictConfig) -> bool:
    """check_model found nothing that stops the base or the adapter being read."""
    tiny = str(m.preset).startswith("tiny")
    return (tiny or bool(m.path)) and not (m.path and not Path(m.path).is_dir()) and bool(m.adapter) \
        and Path(m.adapter).is_dir()


def _adapter_fits_base(cfg: DictConfig) -> list[str]:
    """model.adapter was trained on this base (model type, hidden size, depth), from the files alone."""
    from bbuqc.models.adapters import adapter_problem, read_adapter, read_base
    from bbuqc.models.resolve import model_dir, tiny_kind

    m = cfg.model
    if not _model_usable(m):
        return []
    try:
        adapter = read_adapter(m.adapter)
    except ValueError:
        return []  # check_model names it
    base_dir = model_dir(cfg)
    base = read_base(base_dir) if base_dir is not None else None
    model_type = m.model_type if tiny_kind(cfg) is None else _tiny_model_type(cfg)
    problem = adapter_problem(adapter, base, model_type)
    return [problem] if problem else []


def _tiny_model_type(cfg: DictConfig) -> str:
    from bbuqc.models.resolve import tiny_kind
    from bbuqc.models.tiny import SWIFT_TYPES

    return SWIFT_TYPES[tiny_kind(cfg) or ("vl" if cfg.model.multimodal else "text")][0]


def _algo_data(cfg: DictConfig) -> list[str]:
    out, d, task = [], cfg.data, cfg.task.name
    if d.source == S.DataSource.files:
        if task == S.Task.summary and not d.summary_jsonl:
            out.append("data.summary_jsonl: required for task=summary with data.source=files")
        if task == S.Task.verdict and not d.stage_a_jsonl:
            out.append("data.stage_a_jsonl: required for task=verdict with data.source=files")
    if cfg.algo.name == S.Algo.sft and cfg.chord.enabled:
        out.append("chord=on: CHORD mixes SFT into GRPO; it needs algo=grpo (algo=sft is SFT already)")
    if task == S.Task.summary and not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: task=summary trains on images and needs a VL model "
                   "(model.multimodal=false); e.g. model=tiny")
    return out


def _validation_data(cfg: DictConfig) -> list[str]:
    """Validation needs a validation set, and train.select_by / select_constraint must name its metrics."""
    from bbuqc.training.selection import parse_constraint, validation_metric_names

    t, d, task, out = cfg.train, cfg.data, cfg.task.name, []
    verdict = task == S.Task.verdict
    has_validation = d.val_fraction > 0 or bool(d.val_stage_a_jsonl if verdict else d.val_summary_jsonl)
    if t.eval_steps is not None and not has_validation:
        out.append(f"train.eval_steps={t.eval_steps}: no validation set; set data.val_fraction or "
                   + ("data.val_stage_a_jsonl" if verdict else "data.val_summary_jsonl"))
    names = validation_metric_names(task, list(reward_weights(cfg)))
    if t.select_by is not None and t.select_by not in names:
        out.append(f"train.select_by={t.select_by}: validation of task={task} does not produce it; "
                   f"expected one of {', '.join(names)}")
    if t.get("select_constraint") is not None:
        try:
            constraint = parse_constraint(t.select_constraint)
        except ValueError as exc:
            out.append(f"train.select_constraint={t.select_constraint!r}: {exc}")
        else:
            if constraint.metric not in names:
                out.append(f"train.select_constraint={t.select_constraint!r}: validation of task={task} does not "
                           f"produce {constraint.metric}; expected one of {', '.join(names)}")
    return out


def _infer_inputs(cfg: DictConfig) -> list[str]:
    out = []
    if cfg.data.source == S.DataSource.files and not cfg.data.root:
        out.append("data.root: required by bbuqc-infer with data.source=files (the image tree)")
    if not cfg.model.multimodal:
        out.append(f"model={cfg.model.preset}: a text-only model (model.multimodal=false) cannot summarise "
                   "images; Stage-A needs a VL model (e.g. model=tiny)")
    return out + _vllm_adapter(cfg)


def _vllm_adapter(cfg: DictConfig) -> list[str]:
    """vLLM applies the low-rank weights of an LLM LoRA per request; whole modules (lora.modules_to_save) and a
    vision-side LoRA (lora.vision / lora.aligner) it cannot."""
    from bbuqc.models.adapters import read_adapter

    if cfg.infer.backend != S.StageABackend.vllm or not _model_usable(cfg.model):
        return []
    try:
        adapter = read_adapter(cfg.model.adapter)
    except ValueError:
        return []  # check_model names it
    way_out = "merge it (bbuqc-export) and pass the merged folder as model.path, or use infer.backend=hf"
    out = []
    if adapter.modules_to_save:
        out.append(f"model.adapter={cfg.model.adapter}: trains whole modules ({', '.join(adapter.modules_to_save)}; "
                   f"lora.modules_to_save), which infer.backend=vllm cannot apply; {way_out}")
    if adapter.vision_parts:
        out.append(f"model.adapter={cfg.model.adapter}: has LoRA on the vision side ({', '.join(adapter.vision_parts)}), "
                   f"which infer.backend=vllm cannot apply (vLLM applies a LoRA to the LLM only); {way_out}")
    return out


def _evaluate_inputs(cfg: DictConfig) -> list[str]:
    out = []
    if cfg.task.name != S.Task.verdict:
        out.append(f"task={cfg.task.name}: bbuqc-evaluate judges groups (task=verdict)")
    if cfg.data.source == S.DataSource.files and not cfg.data.stage_a_jsonl:
        out.append("data.stage_a_jsonl: required by bbuqc-evaluate with data.source=files")
    return out


def _export_base(cfg: DictConfig) -> list[str]:
    """Export merges into model.path, or (tiny presets without a path) into the base the adapter names."""
    from bbuqc.models.adapters import base_of_adapter

    m = cfg.model
    if not m.adapter:
        return ["model.adapter: required by bbuqc-export (the LoRA checkpoint folder to merge)"]
    if m.path or not str(m.preset).startswith("tiny"):
        return _adapter_fits_base(cfg)
    if not _model_usable(m):
        return []
    try:
        base = base_of_adapter(m.adapter)
    except ValueError:
        return []  # check_model names it
    if base is None:
        return [f"model.path: required; model.adapter={m.adapter} names a base model folder that is not there"]
    return []


# What each command validates: its nodes' own rules (node(schema.check_<node>)) and the rules across them.
COMMAND_CHECKS: dict[str, tuple[Check, ...]] = {
    "train": (node(S.check_reward), _rewards_fit_task, node(S.check_train), _batch_sizes, node(S.check_chord),
              node(S.check_lora), _lora_fits_model, node(S.check_model), _adapter_fits_base, node(S.check_data),
              node(S.check_compute), _algo_data, _validation_data, _grpo_only, _verdict_line_weight),
    "infer": (node(S.check_model), _adapter_fits_base, node(S.check_data), node(S.check_compute),
              node(S.check_infer), _infer_inputs),
    "evaluate": (node(S.check_model), _adapter_fits_base, node(S.check_data), node(S.check_compute),
                 node(S.check_evaluate), _evaluate_inputs, node(S.check_reward)),  # scores with the reward params
    "export": (node(S.check_model), _export_base, node(S.check_export)),
}


def problems(cfg: DictConfig, command: str) -> list[str]:
    return [line for check in COMMAND_CHECKS[command] for line in check(cfg)]


def validate(cfg: DictConfig, command: str) -> None:
    found = problems(cfg, command)
    if found:
        raise ConfigError(found)
