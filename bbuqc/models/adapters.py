"""What a LoRA checkpoint is, read from its files alone (JSON and the safetensors header; no torch).

`model.adapter` means one thing to every command: a `checkpoint-N` folder written by
`bbuqc-train` (PEFT's adapter_config.json + adapter_model.safetensors, ms-swift's args.json). Before
any weights load, config validation asks :func:`adapter_problem` whether it fits the base model:
same architecture family, same hidden size, and its LoRA blocks inside the base's depth.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LAYER = re.compile(r"\.layers\.(\d+)\.")
# `<...>.lora_A.weight` has shape [rank, in_features]: the base Linear's input width
_LORA_A = re.compile(r"\.lora_A(?:\.[^.]+)?\.weight$")
# The vision side of a Qwen-VL model as ms-swift splits it (swift/model/model_arch.py): the tower is `visual`, its
# aligner the `merger` (and Qwen3-VL's `deepstack_merger_list`) inside it. lora.vision / lora.aligner follow it.
ALIGNER_PARTS = ("merger", "deepstack_merger_list")
_VISUAL_PART = re.compile(r"(?:^|\.)visual\.([^.]+)\.")


def vision_part(name: str) -> str | None:
    """``aligner`` or ``tower`` for a module or weight name on the vision side of a Qwen-VL model, else None."""
    m = _VISUAL_PART.search(name)
    return None if m is None else ("aligner" if m[1] in ALIGNER_PARTS else "tower")


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    base: str | None  # base_model_name_or_path as PEFT recorded it
    model_type: str | None  # ms-swift model_type of the base (args.json)
    rank: int | None
    blocks: tuple[int, ...]  # LLM decoder blocks that carry LoRA weights
    input_widths: frozenset[int]  # in_features of every adapted Linear
    modules_to_save: tuple[str, ...] = ()  # whole modules trained beside the LoRA (PEFT modules_to_save)
    vision: bool = False  # LoRA on the vision tower (lora.vision)
    aligner: bool = False  # LoRA on the aligner (lora.aligner)

    @property
    def vision_parts(self) -> tuple[str, ...]:
        """The vision-side option names this LoRA was trained with (for messages)."""
        return tuple(name for name, on in (("lora.vision", self.vision), ("lora.aligner", self.aligner)) if on)


@dataclass(frozen=True)
class BaseInfo:
    path: Path
    architecture: str | None
    hidden_size: int | None
    num_layers: int | None
    intermediate_size: int | None
    tied_embeddings: bool = False  # lm_head is embed_tokens (tie_word_embeddings, at the top or in text_config)

    def describe(self) -> str:
        return f"{self.architecture or 'unknown architecture'}, hidden size {self.hidden_size}, {self.num_layers} LLM blocks"


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the header (the first 8 bytes give its length)."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        header = json.loads(f.read(length))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_adapter(path: str | Path) -> AdapterInfo:
    """Raises ValueError (one line, naming the file) when the folder is not a readable LoRA checkpoint."""
    path = Path(path)
    config_file = path / ADAPTER_CONFIG
    if not config_file.is_file():
        raise ValueError(f"no {ADAPTER_CONFIG} (expected a LoRA checkpoint-N folder of a bbuqc-train run)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{config_file}: unreadable ({exc})") from None
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise ValueError(f"{config_file}: peft_type={config.get('peft_type')!r}, expected LORA")
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"no {ADAPTER_WEIGHTS} (the LoRA weights)")
    try:
        shapes = _safetensors_shapes(weights)
    except (OSError, ValueError, struct.error) as exc:
        raise ValueError(f"{weights}: unreadable ({exc})") from None
    side = {name: vision_part(name) for name in shapes}  # None: the LLM's
    blocks = sorted({int(m[1]) for name in shapes if side[name] is None and (m := _LAYER.search(name))})
    # the LLM side's widths: what must fit the base's hidden / intermediate size
    widths = frozenset(shape[1] for name, shape in shapes.items()
                       if side[name] is None and _LORA_A.search(name) and len(shape) == 2)
    model_type = None
    args_file = path / "args.json"
    if args_file.is_file():
        try:
            model_type = json.loads(args_file.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            model_type = None
    saved = tuple(sorted(config.get("modules_to_save") or ()))
    return AdapterInfo(path, config.get("base_model_name_or_path"), model_type, config.get("r"), tuple(blocks), widths,
                       saved, vision="tower" in side.values(), aligner="aligner" in side.values())


def read_base(path: str | Path) -> BaseInfo | None:
    """The LLM part of a model folder's config.json, or None when it has none."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    from bbuqc.models.loading import num_llm_layers_from_config  # the one LLM-depth reader

    config = json.loads(config_file.read_text(encoding="utf-8"))
    text = config.get("text_config") or config
    archs = config.get("architectures") or [None]
    try:
        layers = num_llm_layers_from_config(config, source=str(config_file))
    except ValueError:
        layers = None
    tied = any(c.get("tie_word_embeddings") for c in (config, config.get("text_config") or {}))
    return BaseInfo(Path(path), archs[0], text.get("hidden_size"), layers, text.get("intermediate_size"), tied)


def adapter_problem(adapter: AdapterInfo, base: BaseInfo | None, model_type: str | None) -> str | None:
    """Why `adapter` cannot sit on `base` (None: it fits). Names both sides."""
    trained_on = adapter.base or "an unrecorded base"
    if model_type and adapter.model_type and adapter.model_type != model_type:
        return (f"model.adapter={adapter.path} was trained on {trained_on} (model_type {adapter.model_type}); "
                f"the base model is model_type {model_type}")
    if base is None:
        return None
    widths = {w for w in (base.hidden_size, base.intermediate_size) if w}
    if base.hidden_size and adapter.input_widths and not adapter.input_widths <= widths:
        return (f"model.adapter={adapter.path} was trained on {trained_on} (LoRA input widths "
                f"{sorted(adapter.input_widths)}); model.path={base.path} is {base.describe()}")
    if base.num_layers and adapter.blocks and adapter.blocks[-1] >= base.num_layers:
        return (f"model.adapter={adapter.path} was trained on {trained_on} (LoRA on block {adapter.blocks[-1]}); "
                f"model.path={base.path} is {base.describe()}")
    return None


def base_of_adapter(adapter: str | Path) -> str | None:
    """The base model folder an adapter names, when it is still there (export without model.path)."""
    base = read_adapter(adapter).base
    return base if base and (Path(base) / "config.json").is_file() else None
