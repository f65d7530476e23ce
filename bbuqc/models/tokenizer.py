"""A small, deterministic, Qwen-compatible tokenizer for the tiny test models.

No real tokenizer exists on these machines (no model hub), so we train a
byte-level BPE with the `tokenizers` library on a built-in corpus: the domain's
vocabulary plus the project's real prompt texts (every mission's summary and
verdict prompts, synthetic summary lines and verdict answers; see :func:`corpus`),
so that a typical verdict prompt is ~170 tokens instead of ~650.

The same trained BPE (ids ``[0, n)``, the 256 byte symbols first) is laid out in
two ways (``LAYOUTS``):

``"qwen"`` (the VL model). ms-swift's Qwen VL templates hard-code Qwen's
special-token ids (``Qwen2VLTemplate.image_token_id = 151655``), and so does
``Qwen2VLConfig`` (``image_token_id``, ``vision_start_token_id``...). A compact
vocabulary would put ``<|image_pad|>`` at some small id and the template would
silently look for 151655, find nothing, and the image features would not line up
with the prompt. So this layout copies Qwen's:

    [0, n)              trained byte-level BPE tokens
    [n, 151643)         filler tokens ``<fill_N>`` (in the BPE vocab but no merge
                        produces them, so encoding never emits them)
    151643 ... 151664   Qwen's special tokens at their real ids
    151665 ... 151935   no token; the model's embedding rows exist (vocab_size 151936)

``"compact"`` (the text model). ms-swift's text template ``qwen`` (ChatML) works
on token *strings* only (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``, and
the stop token id comes from ``tokenizer.convert_tokens_to_ids``), so the text
model does not need Qwen's ids, and a 151936-wide softmax would dominate every
generation / log-softmax step on CPU:

    [0, n)              trained byte-level BPE tokens
    n ... n+21          the same special tokens, in Qwen's order (``<|endoftext|>`` = n,
                        ``<|im_start|>`` = n+1, ``<|im_end|>`` = n+2, ...)
    n+22 ... V-1        no token; V = n+22 rounded up to a multiple of 64 (the model's vocab_size)

The pre-tokenizer, normalizer and decoder are exactly the ones
``transformers``' ``Qwen2Tokenizer`` rebuilds from vocab + merges when it loads a
``tokenizer.json``, so the raw `tokenizers` object and the loaded
``Qwen2Tokenizer`` encode identically.

Only the `tokenizers` library (and the light ``bbuqc`` prompt / synthetic-data
modules, for the corpus) is needed to build; `transformers` is imported lazily in
:func:`save_tokenizer`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: Qwen2 / Qwen2.5 / Qwen2-VL special tokens at their real ids (``special`` as in Qwen's tokenizer_config).
QWEN_SPECIAL_TOKENS: dict[str, int] = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    # Qwen2.5 additions (not "special" in Qwen's own config: they are meant to be readable text).
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}
_NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"}

FIRST_SPECIAL_ID = 151643
#: Embedding rows of Qwen2-VL-2B / Qwen2.5 small models (ids above the last token exist but are unused).
QWEN_VOCAB_SIZE = 151936
#: ``"qwen"``: Qwen's ids (fillers up to 151643, vocab_size 151936); ``"compact"``: specials right after the BPE.
LAYOUTS = ("qwen", "compact")
#: The compact layout's model ``vocab_size`` is the tokenizer length rounded up to a multiple of this.
VOCAB_MULTIPLE = 64
#: Upper bound on the trained BPE part. With ``min_frequency=2`` the corpus saturates at ~1.9K tokens
#: (the pre-tokenizer regex, not this limit, bounds how far merges can go), so this is headroom only.
_BPE_VOCAB_LIMIT = 8000
#: Synthetic groups per mission in the corpus (verdict prompt + answer, and the summary lines).
_CORPUS_GROUPS = 8

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# The same regex transformers' Qwen2Tokenizer uses (tokenization_qwen2.PRETOKENIZE_REGEX).
PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                     r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

#: The real Qwen2-VL-Instruct chat template (chat_template.json), verbatim. It also renders plain
#: string contents exactly like Qwen2-Instruct, so the text model uses it too.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# --- built-in training corpus ------------------------------------------------------------------------
# Domain words (mission objects, attributes, verdict words) so that they become few tokens each.
_DOMAIN_WORDS = """
通过 不通过 理由 图片_ 无关图片 BBU设备 挡风板 BBU安装螺丝 机柜处接地螺丝 地排处接地螺丝 BBU端光纤插头
ODF端光纤插头 光纤 电线 标签 RRU设备 紧固件 RRU接地端 地排接地端螺丝 尾纤 接地线 站点距离 品牌 华为 中兴
爱立信 可见性 完整 部分 符合性 符合 不符合 挡风板需求 免装 空间充足需安装 安装方向 方向正确 方向错误
保护措施 有保护 无保护 弯曲半径 半径合理 半径不合理 捆扎 整齐 散乱 安装状态 合格 不合格 有标签 无标签
套管保护 有套管 无套管 文本 备注 分组统计 统计 类别 审核通过 审核不通过 图片 安装 检查 螺丝 接地
dataset objects_total <DOMAIN=BBU>, <TASK=SUMMARY> <DOMAIN=RRU>, <TASK=VERDICT> pass fail verdict reason
summary objects count image group mission label true false null
system user assistant
"""
# JSON-ish lines like the summaries the models will be asked to produce.
_JSON_LINES = """
{"dataset": "bbu_install", "objects_total": 3, "统计": [{"类别": "BBU设备", "品牌": "华为", "可见性": "完整"}]}
{"类别": "挡风板", "挡风板需求": "免装", "符合性": "符合"}, {"类别": "挡风板", "挡风板需求": "空间充足需安装", "安装方向": "方向正确"}
{"类别": "BBU安装螺丝", "安装状态": "合格"}, {"类别": "机柜处接地螺丝", "安装状态": "不合格"}, {"类别": "地排处接地螺丝"}
{"类别": "BBU端光纤插头", "保护措施": "有保护"}, {"类别": "ODF端光纤插头", "保护措施": "无保护"}
{"类别": "光纤", "弯曲半径": "半径合理", "套管保护": "有套管"}, {"类别": "光纤", "弯曲半径": "半径不合理", "套管保护": "无套管"}
{"类别": "电线", "捆扎": "整齐"}, {"类别": "电线", "捆扎": "散乱"}, {"类别": "标签", "文本": "RRU-01", "可见性": "部分"}
{"类别": "RRU设备", "品牌": "中兴"}, {"类别": "紧固件", "安装状态": "合格"}, {"类别": "RRU接地端"}, {"类别": "地排接地端螺丝"}
{"类别": "尾纤", "有标签": true}, {"类别": "接地线", "无标签": false}, {"站点距离": 12.5, "品牌": "爱立信", "备注": "无"}
{"分组统计": {"图片_1": ["BBU设备", "挡风板"], "图片_2": "无关图片"}, "objects_total": 2}
[{"dataset": "rru_cable", "objects_total": 0}, {"dataset": "bbu_ground", "objects_total": 10}]
通过
理由: 图片_1 中 BBU设备 完整可见, 挡风板 安装方向正确, 接地螺丝 安装合格。
不通过
理由: 图片_2 为无关图片; 光纤弯曲半径不合理, 尾纤 无套管保护, 电线捆扎散乱。
"""
# A little ordinary prose (English and Chinese) so that common words and punctuation merge too.
_PROSE = """
You are a helpful assistant. Please look at the images and write a summary of the installation.
The quality check passes when every required object is present and installed correctly.
Answer with one line: pass or fail, then give the reason in one short sentence.
Describe each image in order. If an image is unrelated, say so. Count the objects of each category.
The model reads a picture, finds the equipment, and reports what it sees as JSON.
你是一个有帮助的助手。请查看图片并写出安装情况的总结。
当所有必需的物体都存在且安装正确时, 质量检查通过。
请用一行回答: 通过或不通过, 然后用一句话给出理由。
按顺序描述每一张图片。如果图片无关, 请说明。统计每个类别的物体数量。
设备安装在机柜中, 接地线连接到地排, 光纤从 ODF 连接到 BBU。
0 1 2 3 4 5 6 7 8 9 10 12 100 2024 3.14 -1 +1 = : ; , . ! ? ( ) [ ] { } < > " ' / \\ | _ - * # @ % & ~ `
，。：；！？（）【】「」、《》…—
"""


def project_texts() -> list[str]:
    """The project's real prompt texts, rendered as the chat template renders them (``role\\n`` +
    content; the ``<|im_start|>``/``<|im_end|>`` specials split the text there at encode time).

    For every mission: the summary system + user prompts, the summary answers of
    ``_CORPUS_GROUPS`` synthetic groups (``<DOMAIN=..>, <TASK=SUMMARY>`` + JSON line, or
    无关图片), and for each group the verdict system + user prompts and the reference answer
    (``通过``/``不通过`` + ``理由: ...``). The groups come from the synthetic world's planner with
    their own seeded stream (``random.Random("bbuqc-tokenizer:<mission>")``, not the one
    ``synth.generate`` uses), so the same texts come out every time, with no file I/O and no
    drawing (PIL is never imported).

    Note: the corpus follows the prompt builders and the synthetic planner, so changing them
    changes the merges; bump ``MODEL_DIRS`` in :mod:`bbuqc.models.tiny` when that matters
    (the marker file records :func:`corpus_sha256`).
    """
    import random

    from bbuqc.data.synth import plan_group, summary_of
    from bbuqc.missions import MISSIONS
    from bbuqc.missions.rules import judge_group
    from bbuqc.prompts.summary import reference_output, summary_system_prompt, summary_user_prompt
    from bbuqc.prompts.verdict import FAIL, PASS, verdict_solution, verdict_system_prompt, verdict_user_prompt

    texts: list[str] = []
    for m in MISSIONS.values():
        texts += [f"system\n{summary_system_prompt(m)}", f"user\n{summary_user_prompt(m)}"]
        rng = random.Random(f"bbuqc-tokenizer:{m.id}")
        for k in range(_CORPUS_GROUPS):
            scenes, _mode = plan_group(m, rng, fail=k % 2 == 1)
            summaries = [summary_of(scene) for scene in scenes]
            texts += [f"assistant\n{reference_output(m.domain, s)}" for s in summaries]
            per_image = {f"图片_{i}": s for i, s in enumerate(summaries, 1)}
            label, reason = judge_group(m, per_image)
            texts += [
                f"system\n{verdict_system_prompt(m)}",
                f"user\n{verdict_user_prompt(m, per_image)}",
                f"assistant\n{verdict_solution(PASS if label == 'pass' else FAIL, reason)}",
            ]
    return texts


def corpus() -> list[str]:
    """The training corpus (texts): the built-in domain words / JSON / prose blocks (domain text
    repeated so its words win the merges), then :func:`project_texts`. Deterministic."""
    lines: list[str] = []
    for block, repeat in ((_DOMAIN_WORDS, 8), (_JSON_LINES, 4), (_PROSE, 2)):
        block_lines = [line for line in block.strip().splitlines() if line.strip()]
        lines.extend(block_lines * repeat)
    return lines + project_texts()


def corpus_sha256(texts: list[str] | None = None) -> str:
    """A fingerprint of the corpus (recorded in the tiny models' marker files)."""
    texts = corpus() if texts is None else texts
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()


def _pipeline(tok: Any) -> None:
    """Install Qwen2's normalizer / pre-tokenizer / decoder on a `tokenizers.Tokenizer`."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown tokenizer layout {layout!r}; expected one of {LAYOUTS}")


def train_bpe(texts: list[str] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train the byte-level BPE on ``texts`` (default :func:`corpus`). Returns ``(vocab, merges)``,
    vocab ids contiguous from 0 (the 256 byte symbols first).

    Deterministic: the BPE trainer breaks count ties by the pair itself, and the
    corpus is fixed, so the same vocab and merges come out every time.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    trained = Tokenizer(models.BPE())
    _pipeline(trained)
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_LIMIT,
        min_frequency=2,
        show_progress=False,
        # All 256 byte symbols first, so any text (any byte) is encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    trained.train_from_iterator(corpus() if texts is None else texts, trainer=trainer)
    model_json = json.loads(trained.to_str())["model"]
    vocab: dict[str, int] = dict(model_json["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model_json["merges"]]
    assert sorted(vocab.values()) == list(range(len(vocab))), "trained vocab ids must be contiguous"
    return vocab, merges


def special_token_ids(layout: str, n_trained: int) -> dict[str, int]:
    """Where the special tokens land: Qwen's ids (``"qwen"``) or ``n_trained + k`` (``"compact"``),
    in Qwen's order either way."""
    _check_layout(layout)
    ordered = sorted(QWEN_SPECIAL_TOKENS.items(), key=lambda kv: kv[1])
    if layout == "qwen":
        return dict(ordered)
    return {content: n_trained + k for k, (content, _) in enumerate(ordered)}


def build_backend_tokenizer(layout: str = "qwen") -> Any:
    """Train the BPE and lay it out (``"qwen"`` or ``"compact"``, see the module docstring).
    Returns a `tokenizers.Tokenizer`."""
    from tokenizers import AddedToken, Tokenizer, models

    _check_layout(layout)
    vocab, merges = train_bpe()
    n = len(vocab)
    if layout == "qwen":
        # Fillers: plain ASCII (each char is its own byte symbol) so they decode to readable text.
        for i in range(n, FIRST_SPECIAL_ID):
            vocab[f"<fill_{i}>"] = i

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                               byte_fallback=False))
    _pipeline(tok)
    # Added tokens take the next free ids in order: 151643, 151644, ... (Qwen) or n, n+1, ... (compact).
    for content, want_id in special_token_ids(layout, n).items():
        tok.add_special_tokens([AddedToken(content, special=content not in _NOT_SPECIAL, normalized=False)])
        got = tok.token_to_id(content)
        assert got == want_id, f"{content} landed at id {got}, the {layout} layout wants {want_id}"
    return tok


def model_vocab_size(layout: str, backend: Any) -> int:
    """The model's ``vocab_size`` (embedding rows) for a tokenizer of ``layout``: Qwen's 151936, or
    the tokenizer's length rounded up to a multiple of ``VOCAB_MULTIPLE``."""
    _check_layout(layout)
    if layout == "qwen":
        return QWEN_VOCAB_SIZE
    n = backend.get_vocab_size(with_added_tokens=True)
    return -(-n // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def save_tokenizer(out_dir: str | Path, backend: Any | None = None, layout: str = "qwen") -> Any:
    """Write a ``Qwen2Tokenizer``-loadable tokenizer folder (tokenizer.json, tokenizer_config.json,
    chat_template.jinja) into ``out_dir`` and return the transformers tokenizer object.
    ``layout`` is used only when ``backend`` (from :func:`build_backend_tokenizer`) is not given."""
    from transformers import Qwen2Tokenizer

    backend = backend if backend is not None else build_backend_tokenizer(layout)
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="left",  # batched generation needs left padding (DESIGN §6)
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer
