"""LoRA on the last K LLM decoder blocks and, when asked (`lora.vision`, `lora.aligner`), on the vision side.

ms-swift's freeze_vit/freeze_aligner only steer LoRA for `all-linear`; with `target_regex`
the regex alone decides. So the regex is built from the model's real module names,
listed from a weightless (meta-device) instance of its config, before weights load.
The vision side follows ms-swift's own split of a Qwen-VL model (swift/model/model_arch.py): the
vision tower is `model.visual`, its aligner the `merger` (and Qwen3-VL's `deepstack_merger_list`)
inside it; `lora.vision` takes the tower's Linears less the aligner's, `lora.aligner` the aligner's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bbuqc.models.adapters import vision_part

# Containers that hold vision-side modules in the Qwen-VL families; never LoRA targets.
VISION_MARKERS = ("visual", "vision", "merger", "aligner", "projector")
_BLOCKS = re.compile(r"^(?P<prefix>(?:.*\.)?layers)\.(?P<idx>\d+)$")


def llm_block_prefix(module_names: Iterable[str]) -> tuple[str, int]:
    """The dotted path of the LLM's decoder ModuleList and its length.

    Qwen2-VL / Qwen2.5-VL / Qwen3-VL: `model.language_model.layers`; text Qwen2: `model.layers`.
    """
    counts: dict[str, int] = {}
    for name in module_names:
        m = _BLOCKS.match(name)
        if m and not any(marker in m["prefix"] for marker in VISION_MARKERS):
            counts[m["prefix"]] = max(counts.get(m["prefix"], 0), int(m["idx"]) + 1)
    if len(counts) != 1:
        raise ValueError(f"cannot identify the LLM decoder blocks; candidates: {sorted(counts) or 'none'}")
    ((prefix, n),) = counts.items()
    return prefix, n


def last_k_target_regex(linear_names: Iterable[str], last_k: int) -> tuple[str, list[str]]:
    """A full-match regex selecting every Linear inside the last `last_k` LLM blocks.

    Returns the regex and the module names it selects (for logging and tests).
    `linear_names` are the names of the model's nn.Linear modules.
    """
    linear_names = list(linear_names)
    prefix, n_blocks = llm_block_prefix(_parents(linear_names))
    if not 1 <= last_k <= n_blocks:
        raise ValueError(f"lora.last_k={last_k}: the model has {n_blocks} LLM blocks")
    blocks = list(range(n_blocks - last_k, n_blocks))
    block_re = re.compile(rf"^{re.escape(prefix)}\.({'|'.join(map(str, blocks))})\.")
    selected = [n for n in linear_names if block_re.match(n)]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in selected})
    regex = rf"^{re.escape(prefix)}\.({'|'.join(map(str, blocks))})\.(?:.*\.)?({'|'.join(map(re.escape, leaves))})$"
    return regex, selected


def vision_targets(linear_names: Iterable[str], *, tower: bool, aligner: bool) -> list[str]:
    """The vision-side Linears `lora.vision` (tower) / `lora.aligner` select."""
    wanted = {"tower": tower, "aligner": aligner}
    return [name for name in linear_names if wanted.get(vision_part(name))]


def lora_target_regex(linear_names: Iterable[str], last_k: int, *, vision: bool = False,
                      aligner: bool = False) -> tuple[str, list[str]]:
    """The full-match regex of every LoRA target: the last `last_k` LLM blocks, plus the vision tower's and
    the aligner's Linears when asked. Returns it with the module names it selects."""
    linear_names = list(linear_names)
    regex, selected = last_k_target_regex(linear_names, last_k)
    extra = vision_targets(linear_names, tower=vision, aligner=aligner)
    if not extra:
        return regex, selected
    # block indices generalised (`blocks.\d+.`): one alternative per kind of Linear, not per block
    patterns = sorted({re.sub(r"\\\.\d+\\\.", r"\\.\\d+\\.", re.escape(n)) for n in extra})
    regex = f"(?:{regex})|(?:^(?:{'|'.join(patterns)})$)"
    chosen = [n for n in linear_names if re.fullmatch(regex, n)]
    if set(chosen) != set(selected) | set(extra):  # the generalised patterns must select exactly these
        raise AssertionError(f"LoRA regex selects {sorted(set(chosen) ^ (set(selected) | set(extra)))} wrongly")
    return regex, chosen


def _parents(names: list[str]) -> set[str]:
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def linear_module_names(model_dir: str) -> list[str]:
    """Names of every nn.Linear of the checkpoint's architecture, without loading weights."""
    import torch
    from transformers import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
    )

    config = AutoConfig.from_pretrained(model_dir)
    # a membership test, not try/except: the auto class's ValueError for a text config lists every
    # supported config class, importing all of them (~0.8 s of every text-model run)
    vl = type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
    with torch.device("meta"):
        model = (AutoModelForImageTextToText if vl else AutoModelForCausalLM).from_config(config)
    return [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]


def modules_to_save_problem(model_dir: str, modules: Iterable[str]) -> str | None:
    """Why lora.modules_to_save cannot be trained on this checkpoint (None: it can). A model whose
    output layer is tied to its input embeddings has one matrix under two names: PEFT would train a
    copy of embed_tokens while lm_head stays the frozen original (or the two copies drift apart)."""
    from bbuqc.models.adapters import read_base

    modules = list(modules)
    base = read_base(model_dir) if modules else None
    if base is not None and base.tied_embeddings:
        return (f"lora.modules_to_save={modules}: {model_dir} ties lm_head to embed_tokens "
                "(tie_word_embeddings); use a checkpoint with an untied output layer or leave it empty")
    return None
