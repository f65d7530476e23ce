"""Which model folders a config means: `model.path` (a real checkpoint, an export, or a tiny model built
here) plus the optional LoRA checkpoint `model.adapter`. Every command resolves its model here."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    model_type: str
    template: str
    multimodal: bool
    adapter: str | None = None


def tiny_kind(cfg: DictConfig) -> str | None:
    """The tiny kind (bbuqc/models/tiny.py `PRESET_KINDS`: `vl`, `text`, the family twins `qwen2_5_vl`,
    `qwen3_vl`, `qwen2_5_text`, the demo kinds) of a locally built preset without an explicit path, else None."""
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
        apply_image_env(cfg)
        return ResolvedModel(m.path, m.model_type, m.template, m.multimodal, adapter)
    from bbuqc.models.tiny import SWIFT_TYPES, ensure_tiny_model

    apply_image_env(cfg)
    model_type, template = SWIFT_TYPES[kind]
    return ResolvedModel(str(ensure_tiny_model(kind)), model_type, template, m.multimodal, adapter)


#: Vision patch size of each VL model_type (pixels per visual token = (patch * 2) ** 2 after the 2x2 merge):
#: Qwen3-VL's is 16, Qwen2-VL's and Qwen2.5-VL's 14. The tiny twins take theirs from here.
VISION_PATCH = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}


def image_env(cfg: DictConfig) -> dict[str, str]:
    """The image-size environment of the config's VL model: `model.min_pixels`/`max_pixels`, or, when
    null, a tiny twin's own limits (nothing for a real checkpoint: its processor's / ms-swift's apply).
    Empty for a text model."""
    from bbuqc.models.tiny import image_size_env, tiny_env

    m = cfg.model
    if not m.multimodal:
        return {}
    kind = tiny_kind(cfg)
    if m.max_pixels is None and m.min_pixels is None:
        return tiny_env(kind) if kind is not None else {}
    return image_size_env(m.min_pixels, m.max_pixels, VISION_PATCH.get(swift_model_type(cfg), 14))


def swift_model_type(cfg: DictConfig) -> str:
    """The config's ms-swift ``model_type``: a tiny twin's from its spec, else the preset's field."""
    kind = tiny_kind(cfg)
    if kind is None:
        return str(cfg.model.model_type)
    from bbuqc.models.tiny import SWIFT_TYPES

    return SWIFT_TYPES[kind][0]


def apply_image_env(cfg: DictConfig) -> dict[str, str]:
    """Set the image size for every consumer in this process, the one place that does: ms-swift's
    Qwen-VL templates (training, validation) read MAX_PIXELS/MIN_PIXELS (and the token counts) when
    they first load a processor, the generation layer reads the same variables
    (`models/generation.pixel_bounds`). The config wins over an inherited environment; what is set is
    logged (the run's log file)."""
    env = image_env(cfg)
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    if env:
        log.info("image size: %s", " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    return env
