"""The config's model rules that read the model's files: what the base and adapter folders hold, whether the
adapter fits the base, and the LoRA settings against the model's depth and the LoRA a run continues.

They sit here, beside the readers they use (adapters.py, safety.py, loading.py, resolve.py), so that
bbuqc/config stays a leaf; bbuqc/checks.py lists them in each command's checks, after the config's own
rules of the same nodes (``config.schema.check_model`` names a missing folder, these what a folder holds).
Each returns one line per problem naming the field; none imports torch, transformers or ms-swift.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bbuqc.config.schema import StageABackend


def model_files(cfg: DictConfig) -> list[str]:
    """Python shipped in the model or adapter folder, and an adapter folder that is not a LoRA checkpoint."""
    from bbuqc.models.adapters import read_adapter
    from bbuqc.models.safety import remote_code_problem

    m = cfg.model
    if (not str(m.preset).startswith("tiny") and not m.path) or (m.path and not Path(m.path).is_dir()):
        return []  # check_model names it, and nothing below can be read
    out = []
    for key in ("path", "adapter"):
        if m[key] and Path(m[key]).is_dir():
            problem = remote_code_problem(m[key], f"model.{key}", m.trust_remote_code)
            if problem:
                out.append(problem)
    if m.adapter and Path(m.adapter).is_dir():  # a missing one: check_model
        try:
            read_adapter(m.adapter)
        except ValueError as exc:
            out.append(f"model.adapter={m.adapter}: {exc}")
    return out


def lora_depth(cfg: DictConfig) -> list[str]:
    """lora.last_k against the model's depth."""
    lora = cfg.lora
    if lora.last_k < 1:
        return []  # check_lora names it
    layers = _num_llm_layers(cfg)
    if layers is not None and lora.last_k > layers:
        return [f"lora.last_k={lora.last_k}: model={cfg.model.preset} has only {layers} LLM blocks"]
    return []


def adapter_lora(cfg: DictConfig) -> list[str]:
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
            continue  # model_files / training.checks.resume_checkpoint name it
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


def adapter_fits_base(cfg: DictConfig) -> list[str]:
    """model.adapter was trained on this base (model type, hidden size, depth), from the files alone."""
    from bbuqc.models.adapters import adapter_problem, read_adapter, read_base
    from bbuqc.models.resolve import model_dir, swift_model_type

    m = cfg.model
    if not _model_usable(m):
        return []
    try:
        adapter = read_adapter(m.adapter)
    except ValueError:
        return []  # model_files names it
    base_dir = model_dir(cfg)
    base = read_base(base_dir) if base_dir is not None else None
    problem = adapter_problem(adapter, base, swift_model_type(cfg))
    return [problem] if problem else []


def vllm_adapter(cfg: DictConfig, node: str = "infer") -> list[str]:
    """vLLM applies the low-rank weights of an LLM LoRA per request; whole modules (lora.modules_to_save) and a
    vision-side LoRA (lora.vision / lora.aligner) it cannot. ``node``: whose backend (infer, evaluate)."""
    from bbuqc.models.adapters import read_adapter

    if cfg[node].backend != StageABackend.vllm or not _model_usable(cfg.model):
        return []
    try:
        adapter = read_adapter(cfg.model.adapter)
    except ValueError:
        return []  # model_files names it
    way_out = f"merge it (bbuqc-export) and pass the merged folder as model.path, or use {node}.backend=hf"
    out = []
    if adapter.modules_to_save:
        out.append(f"model.adapter={cfg.model.adapter}: trains whole modules ({', '.join(adapter.modules_to_save)}; "
                   f"lora.modules_to_save), which {node}.backend=vllm cannot apply; {way_out}")
    if adapter.vision_parts:
        out.append(f"model.adapter={cfg.model.adapter}: has LoRA on the vision side ({', '.join(adapter.vision_parts)}), "
                   f"which {node}.backend=vllm cannot apply (vLLM applies a LoRA to the LLM only); {way_out}")
    return out


def evaluate_vllm_adapter(cfg: DictConfig) -> list[str]:
    return vllm_adapter(cfg, "evaluate")


def export_base(cfg: DictConfig) -> list[str]:
    """Export merges into model.path, or (tiny presets without a path) into the base the adapter names."""
    from bbuqc.models.adapters import base_of_adapter

    m = cfg.model
    if not m.adapter:
        return ["model.adapter: required by bbuqc-export (the LoRA checkpoint folder to merge)"]
    if m.path or not str(m.preset).startswith("tiny"):
        return adapter_fits_base(cfg)
    if not _model_usable(m):
        return []
    try:
        base = base_of_adapter(m.adapter)
    except ValueError:
        return []  # model_files names it
    if base is None:
        return [f"model.path: required; model.adapter={m.adapter} names a base model folder that is not there"]
    return []
