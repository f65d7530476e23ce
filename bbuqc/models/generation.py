"""The one transformers generation layer: Stage-A's HF backend, Stage-B's HF verdict model and held-out
validation during training all generate through :class:`Generator`.

It owns what must be the same in all three, so that what a trained model sees at inference is what it
saw in training (tests/models/test_prompt_parity.py checks the prompt token ids against ms-swift's
training template for every tiny family):

- loading: model + processor once per process and configuration, a LoRA adapter merged in
  (:func:`load_generator`, over :func:`bbuqc.models.loading.load_model_and_processor`);
- the prompt: ms-swift-style messages (``{"role", "content"}`` with ``<image>`` tags in the strings, as
  the training rows and :mod:`bbuqc.prompts` build them) rendered with the checkpoint's own chat
  template and the generation prompt (:func:`render_prompt`);
- image sizing: the bounds ms-swift's templates resize to in training (``MIN_PIXELS``/``MAX_PIXELS``,
  :func:`pixel_bounds`, :func:`size_kwargs`) and bbuqc's one image loader (:func:`load_image`);
- batching with **left padding** (Qwen-VL's M-RoPE positions come from the attention mask, so a padded
  row gets the positions it gets alone), greedy or sampled ``generate``, decoding of the new tokens;
- what a VL model may never write: its vision placeholder tokens (:func:`forbid_vision_placeholders`).

The callers keep their own concerns: Stage-A its batches, retries and resume (bbuqc/stage_a/), Stage-B
its seeding, sample repetition and voting (bbuqc/stage_b/), validation its scoring
(bbuqc/training/validation.py). vLLM paths build their engines in :mod:`bbuqc.models.vllm_engine` and
use :func:`render_prompt` for their prompts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bbuqc.prompts.summary import IMAGE_TAG

Messages = Sequence[dict]


# ------------------------------------------------------------------------------------ placeholders

# The config fields of the tokens that stand for an image or video in the prompt (Qwen2-VL, Qwen2.5-VL and
# Qwen3-VL name them at the config's top level)
VISION_PLACEHOLDERS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def forbid_vision_placeholders(model: Any) -> list[int]:
    """Never let ``model`` generate its vision placeholder tokens: they are added to its generation config's
    ``suppress_tokens`` (in place, so every engine holding that config sees it: ms-swift's transformers
    rollout engine, bbuqc's :class:`Generator`). Returns the ids suppressed; none for a text model.

    Why: a GRPO rollout is encoded again with its prompt for the policy's forward, and ms-swift fills every
    ``<|image_pad|>`` of the sequence with the image's features; a completion that wrote one more than the
    image has fails the step ("Number of elements of source < number of ones in mask"). An unsure model
    samples them (the demo's quick run did, 2 steps after the pretrained twin); a real one rarely, which is
    worse: an 8-GPU run dies at a random step."""
    config, generation = getattr(model, "config", None), getattr(model, "generation_config", None)
    ids = sorted({i for key in VISION_PLACEHOLDERS if isinstance(i := getattr(config, key, None), int)})
    if ids and generation is not None:
        generation.suppress_tokens = sorted(set(generation.suppress_tokens or ()) | set(ids))
    return ids


# ------------------------------------------------------------------------------------------- images

def pixel_bounds() -> dict[str, int]:
    """``{"min_pixels", "max_pixels"}`` from the environment (ms-swift's knobs), when set."""
    out = {}
    for key in ("MIN_PIXELS", "MAX_PIXELS"):
        value = os.environ.get(key)
        if value and value.strip().isdigit():
            out[key.lower()] = int(value)
    return out


def size_kwargs(processor: Any) -> dict:
    """Keyword arguments that make an HF Qwen-VL processor call resize to :func:`pixel_bounds` (the
    bounds ms-swift's templates use in training)."""
    bounds = pixel_bounds()
    if not bounds:
        return {}
    size = dict(getattr(processor.image_processor, "size", None) or {})
    if "min_pixels" in bounds:
        size["shortest_edge"] = bounds["min_pixels"]
    if "max_pixels" in bounds:
        size["longest_edge"] = bounds["max_pixels"]
    return {"size": size}


def load_image(path: Path | str, max_pixels: int | None = None):
    """An RGB PIL image by the one loader training uses (bbuqc.io.images: every mode, EXIF orientation,
    downscaled to ``max_pixels`` while decoding; default: ``MAX_PIXELS`` from the environment, else
    the processor's own limit), fully decoded (so a truncated file raises here, not later)."""
    from bbuqc.io.images import DEFAULT_MAX_PIXELS
    from bbuqc.io.images import load_image as load

    if max_pixels is None:
        max_pixels = pixel_bounds().get("max_pixels", DEFAULT_MAX_PIXELS)
    return load(path, max_pixels)


# ------------------------------------------------------------------------------------------- prompts

def typed_conversation(messages: Messages) -> list[dict]:
    """ms-swift messages (``<image>`` tags in strings) as a transformers chat conversation (typed content
    parts), which a multimodal processor's ``apply_chat_template`` needs to place its image tokens."""
    conversation = []
    for message in messages:
        parts: list[dict] = []
        for i, chunk in enumerate(message["content"].split(IMAGE_TAG)):
            if i:
                parts.append({"type": "image"})
            if chunk:
                parts.append({"type": "text", "text": chunk})
        conversation.append({"role": message["role"], "content": parts})
    return conversation


def chat_template_of(processor: Any) -> str | None:
    """The checkpoint's chat template: the tokenizer's, else the processor's (a VL checkpoint may keep it on
    the processor only)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return getattr(tokenizer, "chat_template", None) or getattr(processor, "chat_template", None)


def render_prompt(processor: Any, messages: Messages) -> str:
    """The full prompt text of one conversation: the checkpoint's chat template applied, the generation
    prompt appended. Messages with images go through the processor (typed parts: one image placeholder per
    ``<image>``), text-only ones through the tokenizer."""
    if any(IMAGE_TAG in m["content"] for m in messages):
        return processor.apply_chat_template(typed_conversation(messages), tokenize=False,
                                             add_generation_prompt=True)
    tokenizer = getattr(processor, "tokenizer", processor)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                         chat_template=chat_template_of(processor))


# ---------------------------------------------------------------------------------------- generation

class Generator:
    """A loaded model and its processor (or tokenizer, for a text model), generating for conversations.

    The padding side is left while it encodes (and restored after, since validation borrows the trainer's
    processor)."""

    def __init__(self, model: Any, processor: Any):
        self.model, self.processor = model, processor
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def encode(self, conversations: Sequence[Messages], images: Sequence[Path | str | Any] | None = None):
        """The model inputs of a batch, left-padded to the longest. ``images``: one per conversation (a path
        or a PIL image, placed at its ``<image>`` tag), or None for text prompts."""
        texts = [render_prompt(self.processor, m) for m in conversations]
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        try:
            if images is None:
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            else:
                pil = [load_image(i) if isinstance(i, (str, Path)) else i for i in images]
                enc = self.processor(text=texts, images=pil, return_tensors="pt", padding=True,
                                     **size_kwargs(self.processor))
        finally:
            self.tokenizer.padding_side = side
        return enc.to(self.model.device)

    def generate(self, conversations: Sequence[Messages], images: Sequence[Path | str | Any] | None = None, *,
                 max_new_tokens: int, temperature: float = 0.0, n: int = 1, seed: int | None = None) -> list[list[str]]:
        """The decoded new tokens for each conversation: one greedy answer (``temperature == 0``; ``n`` must
        be 1, greedy answers being identical), or ``n`` samples at ``temperature`` (top-p/top-k: the
        checkpoint's ``generation_config``). ``seed``: the samples of this call are drawn from it (the same call
        gives the same text) and the process's random state is left as it was; None: drawn from that state."""
        import torch

        if not conversations:
            return []
        if temperature == 0 and n != 1:
            raise ValueError(f"greedy decoding gives one answer per prompt, not n={n}")
        batch = self.encode(conversations, images)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature == 0:
            # None overrides sampling knobs a checkpoint's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=temperature, num_return_sequences=n)
        seeded = seed is not None and temperature != 0
        devices = [] if self.model.device.type == "cpu" else [self.model.device]
        with torch.random.fork_rng(devices=devices, enabled=seeded), torch.inference_mode():
            if seeded:
                torch.manual_seed(seed)
            out = self.model.generate(**batch, **kwargs)
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]


_LOADED: dict[tuple, Generator] = {}


def load_generator(path: str | Path, *, multimodal: bool, device: str = "cpu", dtype: str = "fp32",
                   adapter: str | Path | None = None, trust_remote_code: bool = False) -> Generator:
    """A :class:`Generator` for the checkpoint at ``path`` (a LoRA ``adapter`` merged in), loaded once per
    process and configuration (a command's, or a Ray worker's)."""
    from bbuqc.models.loading import load_model_and_processor

    key = (str(path), multimodal, device, str(dtype), str(adapter) if adapter else None, trust_remote_code)
    if key not in _LOADED:
        model, processor = load_model_and_processor(path, multimodal=multimodal, device=device, dtype=dtype,
                                                    padding_side="left", adapter=adapter,
                                                    trust_remote_code=trust_remote_code)
        _LOADED[key] = Generator(model, processor)
    return _LOADED[key]
