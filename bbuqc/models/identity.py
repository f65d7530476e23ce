"""What produced an output file: the one resume identity of Stage-A (``<output>.meta.json``) and Stage-B
evaluation (``predictions.settings.json``).

A resumed run appends to a file another run started; it may only do so when everything that changes an
output is the same, or one file would hold two models' answers with nothing to tell them apart. That is:
the inputs, the base model (its folder and its ``config.json``), the adapter (its folder and its weights),
the image-size bounds a VL model sees, the decoding settings and the prompts. Every key is compared
(bbuqc/io/jsonl.py ``Settings``); a key the older file lacks counts as different, since nothing shows it
was the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

#: The adapter files whose bytes are the adapter (PEFT's names); hashed whole: a LoRA is small.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _file_digest(folder: Path, names: Iterable[str]) -> str | None:
    files = [folder / n for n in names if (folder / n).is_file()]
    return _digest(f.name.encode() + b"\0" + f.read_bytes() for f in files) if files else None


def _base_model(cfg: DictConfig) -> dict[str, Any]:
    from bbuqc.models.resolve import model_dir, tiny_kind

    folder = model_dir(cfg)
    out: dict[str, Any] = {"model": str(cfg.model.preset), "model_path": str(folder.resolve()) if folder else None}
    # A tiny twin is built from code into a versioned folder (bbuqc/models/tiny.py MODEL_DIRS), maybe only
    # after this check: its folder names it. A real checkpoint's weights are too big to hash on every
    # start; its config.json and the size of each weight file tell a swapped checkpoint from the same one.
    if tiny_kind(cfg) is None and folder is not None and folder.is_dir():
        weights = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin"))
        out["model_config"] = _digest([(folder / "config.json").read_bytes() if (folder / "config.json").is_file()
                                       else b"", *(f"{f.name}:{f.stat().st_size}".encode() for f in weights)])
    return out


def _adapter(cfg: DictConfig) -> dict[str, Any]:
    if not cfg.model.adapter:
        return {"adapter": None, "adapter_weights": None}
    folder = Path(cfg.model.adapter).resolve()
    return {"adapter": str(folder), "adapter_weights": _file_digest(folder, ADAPTER_FILES)}


def output_identity(cfg: DictConfig, *, inputs: Mapping[str, Any], decoding: Mapping[str, Any],
                    prompts: Iterable[str]) -> dict[str, Any]:
    """The identity of an output made with ``cfg``'s model from ``inputs`` (what is read: the mission and
    image root, ...), with ``decoding`` (max_new_tokens, temperature, samples, seed) and the instruction
    texts ``prompts`` (each mission's system and user prompt, without a group's own content)."""
    from bbuqc.models.resolve import image_env

    return {
        **inputs,
        **_base_model(cfg),
        **_adapter(cfg),
        # the effective pixel bounds (model.min/max_pixels or a twin's own): other bounds, other visual tokens
        "image_env": dict(sorted(image_env(cfg).items())),
        **decoding,
        "prompts": _digest(p.encode("utf-8") for p in prompts),
    }
