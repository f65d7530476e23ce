"""Tiny, randomly initialised Qwen models built locally (there is no model hub here).

One :class:`TinySpec` per kind (:data:`SPECS`) says everything that makes a twin. The two the tests use:

* ``"vl"``   -> ``<cache>/models/tiny-qwen2-vl-v3/``: ``Qwen2VLForConditionalGeneration`` (hidden 64,
  4 LLM decoder layers, 2 heads / 1 kv head, vision tower depth 2 with embed dim 32, patch 14,
  spatial merge 2, temporal patch 2) + a ``Qwen2VLProcessor``.
* ``"text"`` -> ``<cache>/models/tiny-qwen2-v3/``: ``Qwen2ForCausalLM`` (hidden 64, 4 layers) + tokenizer.

All use the same trained BPE (see :mod:`bbuqc.models.tokenizer`), in two layouts
(``TinySpec.tokenizer_layout``): ``"qwen"`` puts the special tokens at Qwen's ids and the model has
``vocab_size`` 151936, because ms-swift's Qwen VL templates and ``Qwen2VLConfig`` hard-code them;
``"compact"`` (the text twins, and the demo's VL twin with its own template,
:mod:`bbuqc.models.swift_template`) puts BPE tokens, then the same special tokens right after them, and
its ``vocab_size`` is that length rounded up to a multiple of 64 (~1.9K), so training, generation and
log-softmax on CPU do not pay for a 151936-wide vocabulary. Input/output embeddings are tied (as
Qwen2-VL-2B and Qwen2.5-0.5B/1.5B/3B do), except where they are meant to be trained.

They are saved with ``save_pretrained`` so that every consumer loads them through exactly the
same ``from_pretrained`` path as a real checkpoint.

The demo's summary twin (``vl_demo``) is the one exception to "random": it is pretrained at build
(:mod:`bbuqc.models.twin_pretraining`, ~5 min of one core), standing in for a real pretrained checkpoint:
its tower and merger learn to see, then its LLM learns to caption what the tower sees.

Building is deterministic (fixed seed, fixed corpus, one torch thread for the pretraining): two builds give
byte-identical ``model.safetensors``. A build happens once per cache: it is written into a temp folder next to the
target, a marker file is written last, and the folder is renamed into place with ``os.replace``
under an ``fcntl`` lock, so a crash never leaves a half folder and concurrent builders (pytest-xdist,
several Hydra jobs) don't trip over each other. When the marker exists, :func:`ensure_tiny_model`
returns at once without importing torch.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bbuqc.models.resolve import VISION_PATCH
from bbuqc.models.swift_template import COMPACT_QWEN2_VL
from bbuqc.runtime.paths import cache_dir

# Sizes (kept in one place so tests and docs can quote them).
HIDDEN = 64
INTERMEDIATE = 128
NUM_LAYERS = 4  # 4 so that LoRA "last K blocks" tests have room (K = 1..4)
NUM_HEADS = 2
NUM_KV_HEADS = 1
# head_dim = 64 / 2 = 32, so rotary has 16 frequency pairs; M-RoPE splits them (t, h, w) like
# Qwen2-VL's [16, 24, 24] of 64, scaled down.
MROPE_SECTION = [4, 6, 6]
VISION_DEPTH = 2
VISION_EMBED = 32
VISION_HEADS = 2
PATCH = 14
MERGE = 2
TEMPORAL_PATCH = 2
#: Visual tokens per image the twins allow (the pixel limits follow from the patch size).
MIN_IMAGE_TOKENS, MAX_IMAGE_TOKENS = 4, 16
#: LLM sizes: (hidden, intermediate, layers, heads, kv heads, M-RoPE section).
TEST_SIZES = (HIDDEN, INTERMEDIATE, NUM_LAYERS, NUM_HEADS, NUM_KV_HEADS, MROPE_SECTION)
OUTPUT_SCALE = 10.0  # embedding / output-layer rows: std 0.2 instead of 0.02 (see build_tiny_model)
#: Written last into a finished folder; its presence means "complete".
MARKER = "bbuqc_tiny_complete.json"
SEED = 1234


@dataclass(frozen=True)
class TinySpec:
    """Everything that makes one tiny twin. conf/model/<preset>.yaml repeats the ms-swift names and the
    pixel limits for the user to read; tests/models checks them against this spec."""

    #: Cache folder name; bump its version suffix whenever anything that changes the weights changes.
    folder: str
    #: ``model=<preset>`` names (conf/model/) that build it.
    presets: tuple[str, ...]
    #: ms-swift ``model_type`` (for a VL twin also its transformers architecture: config, model and
    #: processor classes, :data:`_VL_CLASSES`) and ``template``; local folders need them explicitly.
    model_type: str
    template: str
    multimodal: bool
    sizes: tuple = TEST_SIZES
    #: Embeddings and output layer meant to be trained (lora.modules_to_save=[embed_tokens, lm_head], as
    #: the demo experiments do): random embeddings carry no meaning, and a LoRA on frozen random ones does
    #: not learn the verdict (docs/demo.md). Untied (PEFT cannot train a tied pair), transformers' init
    #: (std 0.02) instead of OUTPUT_SCALE.
    trained_embeddings: bool = False
    #: Tokenizer layout (:mod:`bbuqc.models.tokenizer`): ``"qwen"`` (Qwen's special-token ids, 151936 rows,
    #: as ms-swift's Qwen VL templates hard-code) or ``"compact"`` (~1.9K rows; a VL twin then needs
    #: :mod:`bbuqc.models.swift_template`'s template, which reads the image ids from its tokenizer).
    tokenizer_layout: str = "compact"
    #: The twin is pretrained at build (:mod:`bbuqc.models.twin_pretraining`): its tower and merger learn to
    #: see, then its LLM learns to caption what the tower sees, standing in for a real pretrained checkpoint.
    pretrained: bool = False

    @property
    def patch(self) -> int:
        """Vision patch size: the model type's (``resolve.VISION_PATCH``)."""
        return VISION_PATCH[self.model_type] if self.multimodal else PATCH


#: The twins. ``vl``/``text`` are the fast ones the tests use; the ``*_demo`` twins are the ones
#: `make demo` (bbuqc/demo.py) trains for real, embeddings included; the others are one twin per supported
#: family (model=tiny_qwen2_5_vl / tiny_qwen3_vl / tiny_qwen2_5) with the test sizes and their family's
#: transformers classes, chat template and ms-swift names, so those code paths run here.
SPECS: dict[str, TinySpec] = {
    "vl": TinySpec("tiny-qwen2-vl-v3", ("tiny", "tiny_qwen2_vl"), "qwen2_vl", "qwen2_vl", True,
                   tokenizer_layout="qwen"),
    "text": TinySpec("tiny-qwen2-v3", ("tiny_text",), "qwen2", "qwen", False),
    # the demo's summary twin: compact vocabulary, so that its training step does not pay for 151936 rows
    # (~40x cheaper on CPU: the summary model sees 4x more images in the same time, docs/demo.md)
    # and pretrained at build, as a real checkpoint is: a random tower kept its summaries on the mission's prior,
    # and a random LLM left a pretrained tower's failures unread (docs/demo.md)
    "vl_demo": TinySpec("tiny-demo-qwen2-vl-v9", ("tiny_demo",), "qwen2_vl", COMPACT_QWEN2_VL, True,
                        trained_embeddings=True, pretrained=True),
    # the demo's verdict twin is wider (the decision needs the room)
    "text_demo": TinySpec("tiny-demo-qwen2-v2", ("tiny_text_demo",), "qwen2", "qwen", False,
                          sizes=(128, 256, 4, 4, 2, [4, 6, 6]), trained_embeddings=True),
    "qwen2_5_vl": TinySpec("tiny-qwen2_5-vl-v1", ("tiny_qwen2_5_vl",), "qwen2_5_vl", "qwen2_5_vl", True,
                           tokenizer_layout="qwen"),
    # Qwen3-VL's text model interleaves M-RoPE over head_dim/2 = 16 frequencies (real: [24, 20, 20] of 64)
    "qwen3_vl": TinySpec("tiny-qwen3-vl-v1", ("tiny_qwen3_vl",), "qwen3_vl", "qwen3_vl", True,
                         sizes=(HIDDEN, INTERMEDIATE, NUM_LAYERS, NUM_HEADS, NUM_KV_HEADS, [6, 5, 5]),
                         tokenizer_layout="qwen"),
    # ms-swift names Qwen2.5 text model_type qwen2 (same architecture) with the qwen2_5 template
    "qwen2_5_text": TinySpec("tiny-qwen2_5-v1", ("tiny_qwen2_5",), "qwen2", "qwen2_5", False),
}

# Views of SPECS, by the names the rest of bbuqc reads.
KINDS = tuple(SPECS)
MODEL_DIRS = {kind: s.folder for kind, s in SPECS.items()}
#: Config preset (``model=<preset>``, conf/model/) -> kind.
PRESET_KINDS = {preset: kind for kind, s in SPECS.items() for preset in s.presets}
SWIFT_TYPES = {kind: (s.model_type, s.template) for kind, s in SPECS.items()}
#: VL architecture -> (processor class, video processor class) in transformers.
_PROCESSOR_CLASSES = {"qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
                      "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
                      "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor")}
#: VL architecture -> (config class, model class) in transformers.
_VL_CLASSES = {"qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
               "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
               "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration")}


def pixel_limits(kind: str) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of a tiny VL kind: 4..16 visual tokens whatever its patch size,
    so every twin gives ms-swift the same token limits (qwen_vl_utils keeps them per process)."""
    factor = (SPECS[kind].patch * MERGE) ** 2
    return MIN_IMAGE_TOKENS * factor, MAX_IMAGE_TOKENS * factor


def chat_template(kind: str) -> str:
    """The chat template a kind ships: its real family's (Qwen2-VL's and Qwen2.5-VL's are identical;
    Qwen3-VL's has no default system prompt; Qwen2.5's default system names Qwen), reduced to the
    parts bbuqc renders (no tools, no thinking)."""
    from bbuqc.models.tokenizer import QWEN2_VL_CHAT_TEMPLATE

    default_system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert default_system in QWEN2_VL_CHAT_TEMPLATE
    if kind == "qwen3_vl":
        return QWEN2_VL_CHAT_TEMPLATE.replace(default_system, "")
    if kind == "qwen2_5_text":
        return QWEN2_VL_CHAT_TEMPLATE.replace(
            default_system, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n")
    return QWEN2_VL_CHAT_TEMPLATE


def tiny_model_dir(kind: str, cache: Path | str | None = None) -> Path:
    """Where the tiny model of ``kind`` lives (whether or not it is built yet)."""
    if kind not in MODEL_DIRS:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}")
    root = Path(cache) if cache is not None else cache_dir()
    return root / "models" / MODEL_DIRS[kind]


def is_built(kind: str, cache: Path | str | None = None) -> bool:
    return (tiny_model_dir(kind, cache) / MARKER).is_file()


def tiny_env(kind: str = "vl") -> dict[str, str]:
    """Environment variables a process should set before ms-swift loads the tiny VL model ``kind``.

    ms-swift does NOT use the processor's min/max pixels: ``Qwen2VLTemplate`` resizes every image
    with ``qwen_vl_utils.fetch_image`` (whose defaults allow up to 16384 visual tokens per image)
    and then calls the image processor with ``do_resize=False``. ms-swift configures
    ``qwen_vl_utils`` from ``MAX_PIXELS``/``MIN_PIXELS`` (converted to ``IMAGE_MAX_TOKEN_NUM`` /
    ``IMAGE_MIN_TOKEN_NUM`` for qwen_vl_utils >= 0.0.14) the first time a Qwen VL processor is
    loaded in a process, so set these before that. The token-count variables are given too, so
    a stray ``IMAGE_MAX_TOKEN_NUM`` in the environment cannot win over ``MAX_PIXELS`` (ms-swift only
    converts when the target is unset). Plain transformers (AutoProcessor) honours the
    processor's own limits and needs nothing.
    """
    min_pixels, max_pixels = pixel_limits(kind)
    return image_size_env(min_pixels, max_pixels, SPECS[kind].patch)


def image_size_env(min_pixels: int | None, max_pixels: int | None, patch_size: int = PATCH) -> dict[str, str]:
    """The environment that sizes images to ``min_pixels``..``max_pixels`` for ms-swift's Qwen-VL
    templates (see :func:`tiny_env` for why it is the environment): ``MIN_PIXELS``/``MAX_PIXELS``
    and the visual-token counts they mean for this patch size (``(patch_size * 2) ** 2`` pixels per
    token after the 2x2 merge). Stage-A reads the same variables (``stage_a.backends.pixel_bounds``)."""
    factor = (patch_size * MERGE) ** 2
    env = {}
    if max_pixels:
        env.update(MAX_PIXELS=str(max_pixels), IMAGE_MAX_TOKEN_NUM=str(max_pixels // factor))
    if min_pixels:
        env.update(MIN_PIXELS=str(min_pixels), IMAGE_MIN_TOKEN_NUM=str(max(1, min_pixels // factor)))
    return env


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_tiny_model(kind: str, cache: Path | str | None = None) -> Path:
    """Return the folder of the tiny model ``kind`` (``"vl"`` or ``"text"``), building it once.

    ``cache`` defaults to :func:`bbuqc.runtime.paths.cache_dir` (``$BBUQC_CACHE`` or ``~/.cache/bbuqc``).
    Fast path (folder complete): no torch / transformers import.
    """
    target = tiny_model_dir(kind, cache)
    if (target / MARKER).is_file():
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / MARKER).is_file():  # another process finished it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            info = build_tiny_model(kind, tmp)
            # Marker last: a folder without it is incomplete by definition.
            (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            if target.exists():  # stale, incomplete folder (e.g. hand-made); move aside, then drop
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            # mkdtemp makes a 0700 folder; a shared cache should be readable by others.
            os.chmod(tmp, 0o755)
            for f in tmp.iterdir():
                os.chmod(f, 0o644)
            os.replace(tmp, target)  # atomic on one filesystem
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------------------------------
# Building (heavy imports from here on are local to the functions).


def _text_kwargs(vocab_size: int, ids: dict[str, int], kind: str = "text") -> dict:
    """LLM config fields; ``ids``: special token -> id in the kind's tokenizer layout."""
    hidden, intermediate, layers, heads, kv_heads, _ = SPECS[kind].sizes
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        use_sliding_window=False,
        max_window_layers=layers,
        tie_word_embeddings=not SPECS[kind].trained_embeddings,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def _vl_config(vocab_size: int, ids: dict[str, int], kind: str = "vl"):
    from transformers import Qwen2VLConfig

    text = _text_kwargs(vocab_size, ids, kind)
    # Untied output layer: with random tied embeddings an untrained model's hidden state stays
    # close to its input token's embedding, so greedy decoding repeats the prompt's last token
    # (a newline) and Stage-A would write no summaries at all.
    text["tie_word_embeddings"] = False
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": SPECS[kind].sizes[5]}
    vision = dict(
        depth=VISION_DEPTH,
        embed_dim=VISION_EMBED,
        hidden_size=text["hidden_size"],  # the merger projects into the LLM's hidden size
        num_heads=VISION_HEADS,
        mlp_ratio=2,
        in_channels=3,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=TEMPORAL_PATCH,
    )
    arch = SPECS[kind].model_type
    if arch != "qwen2_vl":
        import transformers

        Qwen2VLConfig = getattr(transformers, _VL_CLASSES[arch][0])  # noqa: N806 (the family's config class)
        # Qwen2.5-VL / Qwen3-VL vision towers: `hidden_size` is the tower's width, `out_hidden_size`
        # the merger's output (the LLM width); an MLP block instead of mlp_ratio.
        vision = dict(depth=VISION_DEPTH, hidden_size=VISION_EMBED, intermediate_size=2 * VISION_EMBED,
                      num_heads=VISION_HEADS, in_channels=3, patch_size=SPECS[kind].patch,
                      spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL_PATCH,
                      out_hidden_size=text["hidden_size"])
    if arch == "qwen2_5_vl":
        # window attention in block 0, full attention in the last block (real: every 8th of 32)
        vision.update(window_size=112, fullatt_block_indexes=[VISION_DEPTH - 1], tokens_per_second=2)
    elif arch == "qwen3_vl":
        # learned position embeddings on a square grid (8x8, interpolated to any image), and a
        # deepstack merger on vision block 0 that feeds LLM block 0 (real: 3 of them)
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0], hidden_act="gelu_pytorch_tanh")
        for key in ("use_sliding_window", "max_window_layers"):
            text.pop(key, None)
        text.update(head_dim=HIDDEN // NUM_HEADS)
        text["rope_parameters"]["mrope_interleaved"] = True
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        dtype="float32",
    )


def _text_config(vocab_size: int, ids: dict[str, int], kind: str = "text"):
    from transformers import Qwen2Config

    return Qwen2Config(**_text_kwargs(vocab_size, ids, kind), rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       dtype="float32")


def _generation_config(ids: dict[str, int]):
    from transformers import GenerationConfig

    # As in Qwen's instruct checkpoints: stop on <|im_end|> or <|endoftext|>.
    return GenerationConfig(bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                            pad_token_id=ids["<|endoftext|>"])


def _save_processor(kind: str, out: Path, backend):
    """Write the kind's tokenizer (and processor); returns the processor of a VL kind, else None."""
    from bbuqc.models.tokenizer import QWEN2_VL_CHAT_TEMPLATE, save_tokenizer

    template = chat_template(kind)
    tokenizer = save_tokenizer(out, backend)
    processor = None
    if SPECS[kind].multimodal:
        import transformers
        from transformers import Qwen2VLImageProcessor

        # the family's own processor and video-processor classes (the image processor is Qwen2-VL's
        # in all three families, as in the real checkpoints' preprocessor_config.json)
        proc_name, video_name = _PROCESSOR_CLASSES[SPECS[kind].model_type]
        min_pixels, max_pixels = pixel_limits(kind)
        common = dict(patch_size=SPECS[kind].patch, temporal_patch_size=TEMPORAL_PATCH, merge_size=MERGE)
        if SPECS[kind].model_type == "qwen3_vl":  # Qwen3-VL normalises pixels to [-1, 1], not with CLIP's mean/std
            common.update(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels, **common)
        video_processor = getattr(transformers, video_name)(
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels * 2}, **common)
        processor = getattr(transformers, proc_name)(image_processor=image_processor, tokenizer=tokenizer,
                                                     video_processor=video_processor, chat_template=template)
        processor.save_pretrained(str(out))  # processor_config.json (transformers 5 layout)
        # Legacy files real Qwen2-VL checkpoints ship (transformers 4.x, vLLM and ms-swift's
        # save_checkpoint read/copy them). transformers 5 loads identically with them present.
        image_processor.save_pretrained(str(out))  # preprocessor_config.json
        pre_path = out / "preprocessor_config.json"
        pre = json.loads(pre_path.read_text())
        pre.update(min_pixels=min_pixels, max_pixels=max_pixels, processor_class=proc_name)
        _write_json(pre_path, pre)
        _write_json(out / "chat_template.json", {"chat_template": template})
    # Older readers (vLLM < 0.9, transformers 4.x) look for the template inside tokenizer_config.json;
    # transformers 5 writes it to chat_template.jinja only. Put it in both places.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = template
    _write_json(cfg_path, cfg)
    if template != QWEN2_VL_CHAT_TEMPLATE:  # save_tokenizer wrote Qwen2-VL's
        (out / "chat_template.jinja").write_text(template)
    # ms-swift reads `model_type`/`template` from an args.json in the model folder when they are not
    # given (e.g. its templates load a meta-device "dummy" model by path for M-RoPE position ids
    # when `template.model` is unset, and Qwen2VLForConditionalGeneration alone is ambiguous
    # between qwen2_vl and qwen2_gme). Training (load_args=False) ignores it.
    model_type, template = SWIFT_TYPES[kind]
    _write_json(out / "args.json", {"model_type": model_type, "template": template, "swift_version": "4.0.0"})
    return processor


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def build_tiny_model(kind: str, out_dir: Path | str) -> dict:
    """Build the tiny model ``kind`` into ``out_dir`` (no locking, no marker). Returns build info."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}")
    import torch

    from bbuqc.models.tokenizer import QWEN_SPECIAL_TOKENS, build_backend_tokenizer, model_vocab_size

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = SPECS[kind].tokenizer_layout
    backend = build_backend_tokenizer(layout)
    ids = {content: backend.token_to_id(content) for content in QWEN_SPECIAL_TOKENS}
    vocab_size = model_vocab_size(layout, backend)
    assert max(ids.values()) < vocab_size
    if SPECS[kind].multimodal:
        import transformers

        cls = getattr(transformers, _VL_CLASSES[SPECS[kind].model_type][1])
        assert layout == "compact" or ids == QWEN_SPECIAL_TOKENS, "ms-swift's VL templates need Qwen's ids"
        config = _vl_config(vocab_size, ids, kind)
    else:
        from transformers import Qwen2ForCausalLM as cls

        config = _text_config(vocab_size, ids, kind)

    # fork_rng: seed locally without disturbing the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = cls(config).to(torch.float32).eval()
    # LoRA never trains the final norm or the embeddings, so the reachable logit range is
    # |norm(h)| x |embedding row| = 8 x (0.02 x 8) ~ 1.3 with the default init: no token could
    # ever get more than ~0.2% probability and no amount of GRPO/SFT would teach the model a
    # format. Scaled rows give a range of ~13, as in a trained checkpoint.
    with torch.no_grad():
        if not SPECS[kind].trained_embeddings:
            model.get_input_embeddings().weight.mul_(OUTPUT_SCALE)
            if not config.get_text_config().tie_word_embeddings:
                model.get_output_embeddings().weight.mul_(OUTPUT_SCALE)
    model.generation_config = _generation_config(ids)
    processor = _save_processor(kind, out, backend)
    info = {}
    if SPECS[kind].pretrained:
        from bbuqc.models.twin_pretraining import pretrain_twin

        info["pretraining"] = pretrain_twin(model, processor, *pixel_limits(kind))
    model.save_pretrained(str(out))
    n_params = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    return {"kind": kind, "name": MODEL_DIRS[kind], "seed": SEED, "architecture": cls.__name__,
            "num_parameters": n_params, "num_llm_layers": SPECS[kind].sizes[2], "tokenizer_layout": layout,
            "num_tokens": backend.get_vocab_size(with_added_tokens=True), "vocab_size": vocab_size,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "corpus_sha256": _corpus_sha256(), **info}


def _corpus_sha256() -> str:
    from bbuqc.models.tokenizer import corpus_sha256

    return corpus_sha256()
