"""Stage-B answers: a ``VerdictModel`` turns verdict prompts into raw answer texts.

``HFVerdictModel`` (``evaluate.backend=hf``): the base model (``model=...``, tiny -> the tiny
text Qwen2) plus an optional LoRA checkpoint (``model.adapter``) merged in with PEFT, batched
generation with left padding through the checkpoint's chat template, by bbuqc's one transformers
generation layer (bbuqc/models/generation.py, shared with Stage-A and validation). ``VLLMVerdictModel``
(``evaluate.backend=vllm``, GPU machines with the ``gpu`` extra): vLLM's offline engine, the
adapter as a LoRA request. Tests use scripted doubles with the same ``answer`` method.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

from omegaconf import DictConfig

log = logging.getLogger(__name__)

Messages = list[dict]
T = TypeVar("T")


class VerdictModel(Protocol):
    def answer(self, batch_of_messages: Sequence[Messages], n_samples: int) -> list[list[str]]:
        """``n_samples`` raw answer texts for each conversation, in order."""
        ...


class HFVerdictModel:
    """bbuqc's transformers generation layer (bbuqc/models/generation.py) answering verdict prompts.

    ``temperature == 0``: greedy decoding, one generation per prompt (repeated
    ``n_samples`` times: greedy answers are identical). ``temperature > 0``:
    sampling with ``num_return_sequences=n_samples``; top-p/top-k come from the
    model's own ``generation_config``. The seed is set once, before the first answer.
    """

    def __init__(self, generator: Any, *, max_new_tokens: int, temperature: float, seed: int = 0):
        self.generator = generator
        self.model, self.tokenizer = generator.model, generator.tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self._seeded = False

    def answer(self, batch_of_messages: Sequence[Messages], n_samples: int) -> list[list[str]]:
        if not batch_of_messages:
            return []
        if not self._seeded:
            from transformers import set_seed

            set_seed(self.seed)
            self._seeded = True
        sampled = self.temperature > 0
        texts = self.generator.generate(batch_of_messages, max_new_tokens=self.max_new_tokens,
                                        temperature=self.temperature, n=n_samples if sampled else 1)
        return texts if sampled else [t * n_samples for t in texts]


class VLLMVerdictModel:
    """vLLM's offline engine answering verdict prompts (``evaluate.backend=vllm``), ``model.adapter`` applied
    per request as a LoRA request (not merged). The conversations go through vLLM's ``LLM.chat``: the
    checkpoint's own chat template with the generation prompt, as ``HFVerdictModel`` renders them.
    ``temperature == 0``: greedy, one answer repeated ``n_samples`` times; ``> 0``: ``n_samples`` samples
    per prompt in one request (``SamplingParams.n``), seeded by the engine (``evaluate.seed``)."""

    def __init__(self, vllm: Any, llm: Any, lora: Any = None, *, max_new_tokens: int, temperature: float):
        self._vllm = vllm
        self.llm = llm
        self.lora = lora
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def answer(self, batch_of_messages: Sequence[Messages], n_samples: int) -> list[list[str]]:
        if not batch_of_messages:
            return []
        sampled = self.temperature > 0
        params = self._vllm.SamplingParams(n=n_samples if sampled else 1, temperature=self.temperature,
                                           max_tokens=self.max_new_tokens, skip_special_tokens=True)
        outputs = self.llm.chat([list(m) for m in batch_of_messages], params, use_tqdm=False,
                                lora_request=self.lora)
        texts = [[c.text for c in o.outputs] for o in outputs]
        return texts if sampled else [t[:1] * n_samples for t in texts]


def load_verdict_model(cfg: DictConfig) -> HFVerdictModel | VLLMVerdictModel:
    """The config's Stage-B model: ``model.path`` + optional LoRA ``model.adapter`` (merged with PEFT; on vLLM,
    applied per request)."""
    from bbuqc.models.generation import load_generator
    from bbuqc.models.resolve import resolve_model

    ev = cfg.evaluate
    resolved = resolve_model(cfg)
    if ev.samples_per_group > 1 and ev.temperature == 0:
        log.warning(
            "evaluate.samples_per_group=%d with evaluate.temperature=0: greedy samples are identical, "
            "so the vote equals one answer; set evaluate.temperature > 0 to sample",
            ev.samples_per_group,
        )
    if str(ev.get("backend", "hf")) == "vllm":
        from bbuqc.models.vllm_engine import build_engine

        c = cfg.compute
        vllm, llm, lora = build_engine(
            "evaluate.backend", resolved.path, adapter=resolved.adapter, dtype=c.precision,
            gpu_memory_utilization=c.vllm_gpu_memory_utilization, max_model_len=c.get("vllm_max_model_len"),
            seed=ev.seed, trust_remote_code=bool(cfg.model.trust_remote_code))
        return VLLMVerdictModel(vllm, llm, lora, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature)
    generator = load_generator(resolved.path, multimodal=resolved.multimodal, device=cfg.compute.device,
                               dtype=cfg.compute.precision, adapter=resolved.adapter,
                               trust_remote_code=cfg.model.trust_remote_code)
    return HFVerdictModel(generator, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, seed=ev.seed)


def iter_answers(
    model: VerdictModel,
    items: Sequence[T],
    messages_of,
    *,
    batch_size: int,
    n_samples: int,
    progress: bool = True,
    total: int | None = None,
    initial: int = 0,
) -> Iterator[tuple[T, list[str]]]:
    """``(item, answers)`` for each item, generated ``batch_size`` items at a time,
    with a tqdm bar over groups (``total``/``initial`` count groups done before)."""
    from tqdm.auto import tqdm

    with tqdm(
        total=total if total is not None else len(items),
        initial=initial,
        unit="group",
        desc="Stage-B",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            answers = model.answer([messages_of(item) for item in batch], n_samples)
            if len(answers) != len(batch) or any(len(a) != n_samples for a in answers):
                raise RuntimeError(
                    f"{type(model).__name__}.answer returned {[len(a) for a in answers]} answers "
                    f"for {len(batch)} prompts x {n_samples} samples"
                )
            for item, texts in zip(batch, answers):
                yield item, list(texts)
            bar.update(len(batch))
