"""Which model folders a config means: `model.path` (a real checkpoint, an export, or a tiny model built
here) plus the optional LoRA checkpoint `model.adapter`. Every command resolves its model here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    model_type: str
    template: str
    multimodal: bool
    adapter: str | None = None


def tiny_kind(cfg: DictConfig) -> str | None:
    """`vl` / `text` for the locally built presets without an explicit path, else None."""
    m = cfg.model
    if m.path or not str(m.preset).startswith("tiny"):
        return None
    from bbuqc.models.tiny import PRESET_KINDS

    # the demo twins (model=tiny_demo / tiny_text_demo) are kinds of their own
    return PRESET_KINDS.get(str(m.preset), "vl" if m.multimodal else "text")


def model_dir(cfg: DictConfig) -> Path | None:
    """The base model folder without building anything (a tiny model may not exist yet)."""
    kind = tiny_kind(cfg)
    if kind is None:
        return Path(cfg.model.path) if cfg.model.path else None
    from bbuqc.models.tiny import tiny_model_dir

    return tiny_model_dir(kind)


def resolve_model(cfg: DictConfig) -> ResolvedModel:
    """The config's model, a tiny one built on first use. Both load like any checkpoint."""
    m = cfg.model
    adapter = str(Path(m.adapter).resolve()) if m.adapter else None
    kind = tiny_kind(cfg)
    if kind is None:
        return ResolvedModel(m.path, m.model_type, m.template, m.multimodal, adapter)
    from bbuqc.models.tiny import SWIFT_TYPES, ensure_tiny_model, tiny_env

    if m.multimodal:
        # ms-swift sizes Qwen-VL images from these, read once when the first processor loads
        for key, value in tiny_env().items():
            os.environ.setdefault(key, value)
    model_type, template = SWIFT_TYPES[kind]
    return ResolvedModel(str(ensure_tiny_model(kind)), model_type, template, m.multimodal, adapter)
