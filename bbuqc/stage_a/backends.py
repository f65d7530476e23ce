"""Stage-A generation backends: one image in, one raw summary text out, many images per call.

- :class:`HFBackend` (``infer.backend=hf``): transformers ``generate`` on a batch of images with
  **left padding** (the tokenizer's padding side is set by ``load_model_and_processor``). Qwen-VL
  models derive their M-RoPE position ids from the attention mask, so a left-padded row gets
  the same positions as the same prompt alone; a test checks that batch sizes 1 and 8 agree.
- :class:`VLLMBackend` (``infer.backend=vllm``): vLLM's offline ``LLM.generate`` (GPU machines).
  vLLM is imported lazily; :func:`check_backend` fails with one line when it is missing, and
  the runner calls it before it loads anything.

Every backend takes its prompt from :func:`bbuqc.prompts.summary.summary_messages` (the
builder the summary GRPO task trains with) rendered by the model's own chat template, so
training and inference prompts cannot drift apart.

Image size: when ``MAX_PIXELS`` / ``MIN_PIXELS`` are set in the environment (ms-swift's
training knobs, which ``resolve_model`` sets from ``model.min_pixels``/``max_pixels``, see
``bbuqc.models.resolve.apply_image_env``), images are resized to the same bounds as in training;
otherwise the processor's own limits apply.

A backend raises on any failure of a call (a corrupt image, an out-of-memory batch); the
batching loop (batches.py) then retries that batch's images one by one. :func:`backend_for` builds the
configured one (``infer.backend``, the resolved model and adapter, ``compute.*``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from bbuqc.missions import Mission
from bbuqc.models.vllm_engine import vllm_missing
from bbuqc.prompts.summary import IMAGE_TAG, summary_messages

VLLM_MISSING = vllm_missing("infer.backend")
BACKENDS = ("hf", "vllm")


class BackendError(RuntimeError):
    """A backend that cannot run here; the message is one line."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Backend(Protocol):
    name: str

    def generate(self, images: list[Path], mission: Mission, settings: GenerationSettings) -> list[str]:
        """Raw model output for each image, in order. Raises on failure."""


def check_backend(name: str) -> None:
    """Fail fast (before any model loads) when ``infer.backend`` cannot run on this machine."""
    if name not in BACKENDS:
        raise BackendError(f"infer.backend={name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise BackendError(VLLM_MISSING)


def chat_conversation(mission: Mission) -> list[dict]:
    """The shared summary messages (ms-swift style, ``<image>`` tags in strings) as a
    transformers chat conversation (typed content parts), for ``apply_chat_template``."""
    conversation = []
    for message in summary_messages(mission, n_images=1):
        parts: list[dict] = []
        chunks = message["content"].split(IMAGE_TAG)
        for i, chunk in enumerate(chunks):
            if i:
                parts.append({"type": "image"})
            if chunk:
                parts.append({"type": "text", "text": chunk})
        conversation.append({"role": message["role"], "content": parts})
    return conversation


def render_prompt(processor: Any, mission: Mission) -> str:
    """The full prompt text (chat template applied, generation prompt appended) for one image."""
    return processor.apply_chat_template(chat_conversation(mission), tokenize=False, add_generation_prompt=True)


def load_image(path: Path | str, max_pixels: int | None = None):
    """An RGB PIL image by the one loader training uses (bbuqc.io.images: every mode, EXIF orientation,
    downscaled to ``max_pixels`` while decoding; default: ``MAX_PIXELS`` from the environment, else
    the processor's own limit), fully decoded (so a truncated file raises here, not later)."""
    from bbuqc.io.images import DEFAULT_MAX_PIXELS
    from bbuqc.io.images import load_image as load

    if max_pixels is None:
        max_pixels = pixel_bounds().get("max_pixels", DEFAULT_MAX_PIXELS)
    return load(path, max_pixels)


def pixel_bounds() -> dict[str, int]:
    """``{"min_pixels", "max_pixels"}`` from the environment (ms-swift's knobs), when set."""
    out = {}
    for key in ("MIN_PIXELS", "MAX_PIXELS"):
        value = os.environ.get(key)
        if value and value.strip().isdigit():
            out[key.lower()] = int(value)
    return out


def size_kwargs(processor) -> dict:
    """Keyword arguments that make an HF Qwen-VL processor call resize to :func:`pixel_bounds` (the
    bounds ms-swift's templates use in training), for Stage-A and held-out validation alike."""
    bounds = pixel_bounds()
    if not bounds:
        return {}
    size = dict(getattr(processor.image_processor, "size", None) or {})
    if "min_pixels" in bounds:
        size["shortest_edge"] = bounds["min_pixels"]
    if "max_pixels" in bounds:
        size["longest_edge"] = bounds["max_pixels"]
    return {"size": size}


# ------------------------------------------------------------------------------------------------ HF

_LOADED: dict[tuple, tuple[Any, Any]] = {}


def load_hf(path: str | Path, device: str = "cpu", dtype: str = "fp32",
            adapter: str | Path | None = None) -> tuple[Any, Any]:
    """``(model, processor)``, loaded once per process and configuration (a LoRA ``adapter`` merged in)."""
    from bbuqc.models.loading import load_model_and_processor

    key = (str(path), device, dtype, str(adapter) if adapter else None)
    if key not in _LOADED:
        _LOADED[key] = load_model_and_processor(path, multimodal=True, device=device, dtype=dtype,
                                                padding_side="left", adapter=adapter)
    return _LOADED[key]


class HFBackend:
    name = "hf"

    def __init__(self, model_path: str | Path, device: str = "cpu", dtype: str = "fp32",
                 adapter: str | Path | None = None):
        self.model, self.processor = load_hf(model_path, device, dtype, adapter)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.tokenizer.padding_side != "left":
            raise BackendError(f"{model_path}: batched generation needs left padding, "
                               f"the tokenizer pads {self.tokenizer.padding_side}")
        self._prompts: dict[str, str] = {}

    def prompt(self, mission: Mission) -> str:
        if mission.id not in self._prompts:
            self._prompts[mission.id] = render_prompt(self.processor, mission)
        return self._prompts[mission.id]

    def _size_kwargs(self) -> dict:
        return size_kwargs(self.processor)

    def encode(self, images: list[Path], mission: Mission):
        """The model inputs of a batch: one prompt per image, left-padded to the longest."""
        pil = [load_image(p) for p in images]
        text = self.prompt(mission)
        batch = self.processor(text=[text] * len(pil), images=pil, return_tensors="pt", padding=True,
                               **self._size_kwargs())
        return batch.to(self.model.device)

    def generate(self, images: list[Path], mission: Mission, settings: GenerationSettings) -> list[str]:
        import torch

        if not images:
            return []
        batch = self.encode(images, mission)
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if settings.greedy:
            # None overrides sampling knobs a checkpoint's generation_config may carry.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=settings.temperature)
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------- vLLM

class VLLMBackend:
    """vLLM offline inference; one engine per process (one GPU; ``infer.workers`` runs one actor per GPU), built
    as evaluation's (bbuqc/models/vllm_engine.py: the adapter as a LoRA request, not merged)."""

    name = "vllm"

    def __init__(self, model_path: str | Path, dtype: str = "bf16", gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, adapter: str | Path | None = None):
        from bbuqc.errors import InputError
        from bbuqc.models.vllm_engine import build_engine

        bounds = pixel_bounds()
        try:
            self._vllm, self.llm, self.lora = build_engine(
                "infer.backend", model_path, adapter=adapter, dtype=dtype,
                gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, seed=seed,
                limit_mm_per_prompt={"image": 1}, **({"mm_processor_kwargs": bounds} if bounds else {}))
        except InputError as exc:  # vLLM is not installed
            raise BackendError(str(exc)) from None
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(str(model_path))
        self._prompts: dict[str, str] = {}

    def generate(self, images: list[Path], mission: Mission, settings: GenerationSettings) -> list[str]:
        if not images:
            return []
        if mission.id not in self._prompts:
            self._prompts[mission.id] = render_prompt(self.processor, mission)
        text = self._prompts[mission.id]
        params = self._vllm.SamplingParams(temperature=settings.temperature, max_tokens=settings.max_new_tokens,
                                           skip_special_tokens=True)
        inputs = [{"prompt": text, "multi_modal_data": {"image": load_image(p)}} for p in images]
        outputs = self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora)
        return [o.outputs[0].text for o in outputs]


def make_backend(name: str, model_path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                 adapter: str | Path | None = None) -> Backend:
    check_backend(name)
    if name == "vllm":
        return VLLMBackend(model_path, dtype=precision, gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len, adapter=adapter)
    return HFBackend(model_path, device=device, dtype=precision, adapter=adapter)


def settings_of(cfg: DictConfig) -> GenerationSettings:
    """``infer.max_new_tokens`` and ``infer.temperature``."""
    return GenerationSettings(max_new_tokens=int(cfg.infer.max_new_tokens), temperature=float(cfg.infer.temperature))


def backend_for(cfg: DictConfig) -> Backend:
    """The configured backend, with its model loaded (once per process: the command's, or a Ray worker's)."""
    from bbuqc.models.resolve import resolve_model

    model = resolve_model(cfg)
    return make_backend(cfg.infer.backend, model.path, device=cfg.compute.device, precision=cfg.compute.precision,
                        gpu_memory_utilization=cfg.compute.vllm_gpu_memory_utilization,
                        max_model_len=cfg.compute.get("vllm_max_model_len"), adapter=model.adapter)
