"""Stage-A generation backends: one image in, one raw summary text out, many images per call.

- :class:`HFBackend` (``infer.backend=hf``): bbuqc's transformers generation layer
  (bbuqc/models/generation.py: loading once per process, the checkpoint's chat template, left-padded
  batches, training's image sizing), the one held-out validation and Stage-B's HF path use too; a test
  checks that batch sizes 1 and 8 agree.
- :class:`VLLMBackend` (``infer.backend=vllm``): vLLM's offline ``LLM.generate`` (GPU machines).
  vLLM is imported lazily; :func:`check_backend` fails with one line when it is missing, and
  the runner calls it before it loads anything.

Every backend takes its prompt from :func:`bbuqc.prompts.summary.summary_messages` (the
builder the summary GRPO task trains with) rendered by the model's own chat template
(:func:`bbuqc.models.generation.render_prompt`), so training and inference prompts cannot drift apart
(tests/models/test_prompt_parity.py).

Image size: when ``MAX_PIXELS`` / ``MIN_PIXELS`` are set in the environment (ms-swift's
training knobs, which ``resolve_model`` sets from ``model.min_pixels``/``max_pixels``, see
``bbuqc.models.resolve.apply_image_env``), images are resized to the same bounds as in training
(:func:`bbuqc.models.generation.pixel_bounds`); otherwise the processor's own limits apply.

A backend raises on any failure of a call (a corrupt image, an out-of-memory batch); the
batching loop (batches.py) then retries that batch's images one by one. :func:`backend_for` builds the
configured one (``infer.backend``, the resolved model and adapter, ``compute.*``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from bbuqc.missions import Mission
from bbuqc.models.generation import Generator, load_generator, load_image, pixel_bounds, size_kwargs, typed_conversation
from bbuqc.models.generation import render_prompt as render
from bbuqc.models.vllm_engine import vllm_missing
from bbuqc.prompts.summary import summary_messages

VLLM_MISSING = vllm_missing("infer.backend")
BACKENDS = ("hf", "vllm")


class BackendError(RuntimeError):
    """A backend that cannot run here; the message is one line."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    # sampling only: the call's answers are drawn from this seed, so the same call writes the same text (Stage-A's
    # resampling passes one per image and try: bbuqc/stage_a/resample.py); None: the process's random state
    seed: int | None = None

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
    """The shared summary messages as a transformers chat conversation (typed content parts)."""
    return typed_conversation(summary_messages(mission, n_images=1))


def render_prompt(processor: Any, mission: Mission) -> str:
    """The full prompt text (chat template applied, generation prompt appended) for one image."""
    return render(processor, summary_messages(mission, n_images=1))


# ------------------------------------------------------------------------------------------------ HF

def load_hf(path: str | Path, device: str = "cpu", dtype: str = "fp32",
            adapter: str | Path | None = None) -> Generator:
    """The generation layer's model, loaded once per process and configuration (a LoRA ``adapter`` merged in)."""
    return load_generator(path, multimodal=True, device=device, dtype=dtype, adapter=adapter)


class HFBackend:
    """bbuqc's transformers generation layer (bbuqc/models/generation.py) on the summary prompt."""

    name = "hf"

    def __init__(self, model_path: str | Path, device: str = "cpu", dtype: str = "fp32",
                 adapter: str | Path | None = None):
        self.generator = load_hf(model_path, device, dtype, adapter)
        self.model, self.processor, self.tokenizer = self.generator.model, self.generator.processor, \
            self.generator.tokenizer
        self._prompts: dict[str, str] = {}

    def prompt(self, mission: Mission) -> str:
        if mission.id not in self._prompts:
            self._prompts[mission.id] = render_prompt(self.processor, mission)
        return self._prompts[mission.id]

    def _size_kwargs(self) -> dict:
        return size_kwargs(self.processor)

    def encode(self, images: list[Path], mission: Mission):
        """The model inputs of a batch: one prompt per image, left-padded to the longest."""
        return self.generator.encode([summary_messages(mission, n_images=1)] * len(images), images)

    def generate(self, images: list[Path], mission: Mission, settings: GenerationSettings) -> list[str]:
        if not images:
            return []
        out = self.generator.generate([summary_messages(mission, n_images=1)] * len(images), images,
                                      max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                      seed=settings.seed)
        return [texts[0] for texts in out]


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
                                           skip_special_tokens=True, seed=settings.seed)
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
