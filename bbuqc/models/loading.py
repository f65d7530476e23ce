"""Loading a model + processor from a local folder, tiny or real, through `from_pretrained`.

Also :func:`read_num_llm_layers`, which reads ``config.json`` only (no torch), so the config
validation (``lora.last_k`` must be within the model's LLM blocks) runs before any weights load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Where the language model's settings live inside a multimodal config.json, by family:
#   Qwen2-VL / Qwen2.5-VL (transformers >= 4.5x / 5.x save): "text_config"  (older saves: top level)
#   Qwen3-VL / Qwen3-VL-MoE: "text_config"
#   InternVL / some others: "llm_config"; a few: "language_config"
#   Qwen2.5-Omni / Qwen3-Omni: "thinker_config" -> "text_config"
#   Qwen2 / Qwen2.5 / Qwen3 text: top level
_TEXT_CONFIG_PATHS = (("text_config",), ("llm_config",), ("language_config",),
                      ("thinker_config", "text_config"), ())


def read_num_llm_layers(path: str | Path) -> int:
    """Number of LLM decoder blocks of the checkpoint at ``path`` (folder or its config.json).

    Reads JSON only. Never looks at ``vision_config`` (its ``depth``/``num_hidden_layers`` count
    vision blocks, which LoRA last-K does not target).
    """
    path = Path(path)
    cfg_file = path / "config.json" if path.is_dir() else path
    if not cfg_file.is_file():
        raise FileNotFoundError(f"no config.json at {path}")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    return num_llm_layers_from_config(cfg, source=str(cfg_file))


def num_llm_layers_from_config(cfg: dict[str, Any], source: str = "config") -> int:
    """Same as :func:`read_num_llm_layers` for an already-parsed config dict."""
    for keys in _TEXT_CONFIG_PATHS:
        node: Any = cfg
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("num_hidden_layers"), int):
            return int(node["num_hidden_layers"])
    raise ValueError(f"{source}: cannot find the LLM's num_hidden_layers "
                     f"(looked in text_config, llm_config, language_config, thinker_config.text_config, top level)")


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(names)} or 'auto'")
    return names[dtype]


def load_model_and_processor(path: str | Path, multimodal: bool, device: str = "cpu", dtype: Any = "float32",
                             padding_side: str = "left", adapter: str | Path | None = None,
                             trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from ``path`` in eval mode.

    ``multimodal=True``: ``AutoModelForImageTextToText`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ...) and
    ``AutoProcessor`` (a ``Qwen2VLProcessor`` for the tiny model). ``multimodal=False``:
    ``AutoModelForCausalLM`` and ``AutoTokenizer``; the "processor" is then the tokenizer.

    ``padding_side`` is set on the tokenizer: batched generation needs ``"left"``.
    ``device="auto"`` spreads the model with ``device_map="auto"``; anything else is a torch device.
    ``adapter``: a LoRA checkpoint folder, merged into the weights with PEFT (``merge_and_unload``), so
    generation costs the same as with the base model and equals what ``bbuqc-export`` writes.
    ``trust_remote_code`` stays False unless ``model.trust_remote_code=true``: every supported family is
    native to transformers, so a checkpoint never runs its own Python on load.
    """
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    path = str(path)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "trust_remote_code": trust_remote_code}
    if device == "auto":
        kwargs["device_map"] = "auto"
    if multimodal:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    else:
        processor = tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:  # not the case for Qwen, but generate() with batches needs one
        tokenizer.pad_token = tokenizer.eos_token
    if device != "auto":
        model = model.to(device)
    if multimodal:
        from bbuqc.models.generation import forbid_vision_placeholders

        forbid_vision_placeholders(model)
    model.eval()
    return model, processor
