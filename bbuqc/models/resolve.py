"""Which checkpoint folder a config means: a real one at `model.path`, or a tiny one built here."""

from __future__ import annotations

import os
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    model_type: str
    template: str
    multimodal: bool


def resolve_model(cfg: DictConfig, *, multimodal: bool) -> ResolvedModel:
    """`multimodal`: whether the job feeds images (Stage-A, task=summary).

    The tiny preset serves both tasks: images need the tiny VL model, Stage-B text the
    tiny text model. Both are built on first use and then loaded like any checkpoint.
    """
    m = cfg.model
    if m.preset != "tiny" or m.path:
        return ResolvedModel(m.path, m.model_type, m.template, m.multimodal)
    from bbuqc.models.tiny import SWIFT_TYPES, ensure_tiny_model, tiny_env

    kind = "vl" if multimodal else "text"
    if multimodal:
        # ms-swift sizes Qwen-VL images from these, read once when the first processor loads
        for key, value in tiny_env().items():
            os.environ.setdefault(key, value)
    model_type, template = SWIFT_TYPES[kind]
    return ResolvedModel(str(ensure_tiny_model(kind)), model_type, template, multimodal)
