"""One vLLM offline engine for a local model folder, with an optional LoRA checkpoint applied per request.

Stage-A (``infer.backend=vllm``, bbuqc/stage_a/backends.py) and evaluation (``evaluate.backend=vllm``,
bbuqc/stage_b/generate.py) build their engines here, so both map ``compute.precision`` /
``compute.vllm_gpu_memory_utilization`` / ``compute.vllm_max_model_len`` and ``model.adapter`` the same way.
The adapter is never merged: vLLM applies its low-rank weights to the LLM's Linears per request (an adapter
that trains whole modules or the vision side is refused before this, bbuqc/models/checks.py ``vllm_adapter``).

vLLM is imported only when an engine is built: this module is importable (and the refusals testable) without
the ``gpu`` extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from bbuqc.errors import InputError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def vllm_missing(field: str) -> str:
    """The one-line refusal of a vLLM backend where vLLM is not installed."""
    return f"{field}=vllm: vLLM is not installed (pip install -e '.[gpu]' on a GPU machine)"


def require_vllm(field: str) -> None:
    """Refuse (InputError, one line) before any model loads when vLLM is not installed here."""
    if importlib.util.find_spec("vllm") is None:
        raise InputError(vllm_missing(field))


def engine_kwargs(model_path: str | Path, *, dtype: str = "bf16", gpu_memory_utilization: float = 0.9,
                  max_model_len: int | None = None, seed: int = 0, adapter: str | Path | None = None,
                  **extra: Any) -> dict[str, Any]:
    """``vllm.LLM``'s arguments; with an adapter, LoRA enabled at the checkpoint's rank (vLLM sizes its
    LoRA slots by max_lora_rank, 8 at least)."""
    kw: dict[str, Any] = dict(model=str(model_path), dtype=DTYPES.get(dtype, dtype),
                              gpu_memory_utilization=gpu_memory_utilization, seed=seed, **extra)
    if max_model_len:
        kw["max_model_len"] = max_model_len
    if adapter:
        from bbuqc.models.adapters import read_adapter

        kw.update(enable_lora=True, max_lora_rank=max(8, read_adapter(adapter).rank or 8))
    return kw


def build_engine(field: str, model_path: str | Path, *, adapter: str | Path | None = None,
                 **kwargs: Any) -> tuple[Any, Any, Any]:
    """``(vllm module, LLM, LoRARequest or None)``: the engine, and the request that applies ``adapter``."""
    try:
        import vllm
    except ImportError:
        raise InputError(vllm_missing(field)) from None
    llm = vllm.LLM(**engine_kwargs(model_path, adapter=adapter, **kwargs))
    lora = None
    if adapter:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("adapter", 1, str(adapter))
    return vllm, llm, lora
