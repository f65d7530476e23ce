"""Tiny-model factory: build, determinism, tokenizer layouts, prompt length, loading, generation, chat
template, ms-swift, layer counting.

All on CPU, offline; the models are built once per test session into a tmp cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# No model hub here: make every hub lookup fail fast instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bbuqc.models import tiny  # noqa: E402  (light: no torch)
from bbuqc.models.loading import num_llm_layers_from_config, read_num_llm_layers  # noqa: E402
from bbuqc.models.tokenizer import QWEN_SPECIAL_TOKENS, QWEN_VOCAB_SIZE, VOCAB_MULTIPLE  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bbuqc_cache")


@pytest.fixture(scope="module")
def vl_dir(cache) -> Path:
    return tiny.ensure_tiny_model("vl", cache)


@pytest.fixture(scope="module")
def text_dir(cache) -> Path:
    return tiny.ensure_tiny_model("text", cache)


@pytest.fixture(scope="module")
def text_tok(text_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(text_dir))


def _compact_ids(n_bpe: int) -> dict[str, int]:
    """The text model's special-token ids: Qwen's order, right after the ``n_bpe`` BPE tokens."""
    ordered = sorted(QWEN_SPECIAL_TOKENS, key=QWEN_SPECIAL_TOKENS.get)
    return {content: n_bpe + k for k, content in enumerate(ordered)}


def _n_bpe(text_dir: Path) -> int:
    return len(json.loads((text_dir / "tokenizer.json").read_text())["model"]["vocab"])


def _image(h: int, w: int, seed: int = 0):
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


# --------------------------------------------------------------------------------------------- build


def test_layout_and_marker(vl_dir, text_dir, cache):
    assert vl_dir == cache / "models" / "tiny-qwen2-vl-v3"
    assert text_dir == cache / "models" / "tiny-qwen2-v3"
    n = _n_bpe(text_dir)
    # (eos <|im_end|>, pad/bos <|endoftext|>, vocab_size) of each layout
    want = {vl_dir: (151645, 151643, QWEN_VOCAB_SIZE), text_dir: (n + 2, n, -(-(n + 22) // 64) * 64)}
    for d, (eos, pad, vocab_size) in want.items():
        for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "generation_config.json", "args.json", tiny.MARKER):
            assert (d / f).is_file(), f"{d.name}/{f} missing"
        gen = json.loads((d / "generation_config.json").read_text())
        assert gen["eos_token_id"] == [eos, pad] and gen["pad_token_id"] == pad and gen["bos_token_id"] == pad
        cfg = json.loads((d / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        assert (cfg["eos_token_id"], cfg["pad_token_id"], cfg["bos_token_id"]) == (eos, pad, pad), d.name
        assert cfg["vocab_size"] == vocab_size, d.name
        info = json.loads((d / tiny.MARKER).read_text())
        assert (info["eos_token_id"], info["pad_token_id"], info["vocab_size"]) == (eos, pad, vocab_size)
        assert "<|image_pad|>" in json.loads((d / "tokenizer_config.json").read_text())["chat_template"]
    assert json.loads((text_dir / tiny.MARKER).read_text())["tokenizer_layout"] == "compact"
    assert json.loads((vl_dir / tiny.MARKER).read_text())["tokenizer_layout"] == "qwen"
    for f in ("processor_config.json", "preprocessor_config.json", "chat_template.json"):
        assert (vl_dir / f).is_file()
    # no temp/stale folders left next to the models
    assert sorted(p.name for p in (cache / "models").iterdir() if p.is_dir()) == ["tiny-qwen2-v3", "tiny-qwen2-vl-v3"]


def test_cached_call_does_not_import_torch(vl_dir, text_dir, cache):
    code = ("import sys; from bbuqc.models import ensure_tiny_model; "
            f"assert ensure_tiny_model('vl', {str(cache)!r}) == __import__('pathlib').Path({str(vl_dir)!r}); "
            f"ensure_tiny_model('text', {str(cache)!r}); "
            "bad = [m for m in ('torch', 'transformers', 'swift') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_cache_env_var(monkeypatch, tmp_path, vl_dir):
    from bbuqc.runtime.paths import cache_dir

    monkeypatch.setenv("BBUQC_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert tiny.tiny_model_dir("vl") == tmp_path / "c" / "models" / "tiny-qwen2-vl-v3"
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        tiny.tiny_model_dir("audio")


@pytest.mark.parametrize("kind", ["vl", "text"])
def test_build_is_deterministic(kind, cache, tmp_path, vl_dir, text_dir):
    again = tmp_path / kind
    tiny.build_tiny_model(kind, again)
    first = tiny.tiny_model_dir(kind, cache)
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"):
        assert (again / f).read_bytes() == (first / f).read_bytes(), f"{kind}: {f} differs between builds"


def test_tokenizer_is_deterministic_across_processes(vl_dir, text_dir):
    """Another process with another hash seed trains the same BPE (merges) for both layouts."""
    code = ("import hashlib; from bbuqc.models.tokenizer import build_backend_tokenizer as b; "
            "print(*(hashlib.sha256(b(x).to_str().encode()).hexdigest() for x in ('qwen', 'compact')))")
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60, env=env,
                         capture_output=True, text=True).stdout.split()
    from tokenizers import Tokenizer

    from bbuqc.models.tokenizer import build_backend_tokenizer

    here = [hashlib.sha256(build_backend_tokenizer(x).to_str().encode()).hexdigest() for x in ("qwen", "compact")]
    assert out == here
    # ... and it is what the saved folders hold (same vocab + merges; the layouts share the BPE)
    for d, layout in ((vl_dir, "qwen"), (text_dir, "compact")):
        saved = json.loads(Tokenizer.from_file(str(d / "tokenizer.json")).to_str())["model"]
        built = json.loads(build_backend_tokenizer(layout).to_str())["model"]
        assert saved["merges"] == built["merges"] and saved["vocab"] == built["vocab"], layout


def test_special_token_ids_per_layout(vl_dir, text_dir, text_tok):
    from transformers import AutoTokenizer

    vl_tok = AutoTokenizer.from_pretrained(str(vl_dir))
    n = _n_bpe(text_dir)
    assert 1000 < n < 8000
    # one trained BPE in both layouts; the VL one is padded with <fill_N> up to Qwen's first special id
    vl_vocab = json.loads((vl_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vl_vocab) == 151643 and {k: v for k, v in vl_vocab.items() if v < n} == \
        json.loads((text_dir / "tokenizer.json").read_text())["model"]["vocab"]
    for layout_tok, want in ((vl_tok, QWEN_SPECIAL_TOKENS), (text_tok, _compact_ids(n))):
        for content, want_id in want.items():
            assert layout_tok.convert_tokens_to_ids(content) == want_id, content
            assert layout_tok.decode([want_id]) == content
        assert layout_tok.eos_token == "<|im_end|>" and layout_tok.eos_token_id == want["<|im_end|>"]
        assert layout_tok.pad_token == "<|endoftext|>" and layout_tok.pad_token_id == want["<|endoftext|>"]
    assert len(vl_tok) == 151665
    # compact: no fillers, specials right after the BPE, nothing else; vocab_size = len rounded up to 64
    assert len(text_tok) == n + len(QWEN_SPECIAL_TOKENS) == max(text_tok.get_vocab().values()) + 1
    assert not any(t.startswith("<fill_") for t in text_tok.get_vocab())
    assert tiny.SPECS["vl"].tokenizer_layout == "qwen" and tiny.SPECS["text"].tokenizer_layout == "compact"
    vocab_size = json.loads((text_dir / "config.json").read_text())["vocab_size"]
    assert vocab_size % VOCAB_MULTIPLE == 0 and len(text_tok) <= vocab_size < len(text_tok) + VOCAB_MULTIPLE
    # the same text encodes to the same BPE ids in both layouts; only the special ids differ
    text = "<|im_start|>user\n图片_1: {\"类别\":\"BBU设备\"}<|im_end|>\n"
    vl_ids, text_ids = vl_tok.encode(text), text_tok.encode(text)
    shift = {QWEN_SPECIAL_TOKENS[c]: i for c, i in _compact_ids(n).items()}
    assert [shift.get(i, i) for i in vl_ids] == text_ids


def test_concurrent_builders_build_once(monkeypatch, tmp_path):
    calls = []
    real = tiny.build_tiny_model

    def counting(kind, out):
        calls.append(kind)
        return real(kind, out)

    monkeypatch.setattr(tiny, "build_tiny_model", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(tiny.ensure_tiny_model("text", tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["text"] and len(set(results)) == 1 and (results[0] / tiny.MARKER).is_file()


def test_failed_build_leaves_nothing_and_stale_folder_is_replaced(monkeypatch, tmp_path):
    def boom(kind, out):
        (Path(out) / "config.json").write_text("{}")
        raise RuntimeError("crash mid-build")

    monkeypatch.setattr(tiny, "build_tiny_model", boom)
    with pytest.raises(RuntimeError):
        tiny.ensure_tiny_model("text", tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir() if p.is_dir()] == []

    # A half folder without the marker (e.g. from an old, non-atomic writer) is rebuilt, not trusted.
    def ok(kind, out):
        (Path(out) / "ok").write_text("1")
        return {}

    monkeypatch.setattr(tiny, "build_tiny_model", ok)
    stale = tiny.tiny_model_dir("text", tmp_path)
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    assert tiny.ensure_tiny_model("text", tmp_path) == stale
    assert sorted(p.name for p in stale.iterdir()) == sorted(["ok", tiny.MARKER])
    assert [p.name for p in models.iterdir() if p.is_dir()] == [stale.name]


# ------------------------------------------------------------------------------------------ loading


def _module_name(key: str, multimodal: bool) -> str:
    """On-disk key -> runtime parameter name. transformers 5 saves Qwen2-VL in the hub's legacy key
    layout (``model.layers.N``, ``visual.*``, as real checkpoints have) and renames on load."""
    if multimodal and key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    if multimodal and key.startswith("visual."):
        return "model." + key
    return key


def test_round_trip_weights_identical(vl_dir, text_dir, tmp_path):
    from safetensors.torch import load_file

    from bbuqc.models import load_model_and_processor

    for d, mm in ((vl_dir, True), (text_dir, False)):
        vocab_size = QWEN_VOCAB_SIZE if mm else json.loads((d / "config.json").read_text())["vocab_size"]
        model, _ = load_model_and_processor(d, multimodal=mm)
        on_disk = load_file(str(d / "model.safetensors"))
        state = model.state_dict()
        for key, tensor in on_disk.items():
            assert torch.equal(state[_module_name(key, mm)], tensor), key
        # Qwen vocab size (VL) or the compact one (text); the VL output layer is its own
        # (an untrained tied one would make greedy Stage-A decoding echo the prompt)
        assert model.get_input_embeddings().weight.shape[0] == vocab_size
        tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        assert tied == (not mm)
        # load -> save: byte-identical file
        model.save_pretrained(tmp_path / d.name)
        assert (tmp_path / d.name / "model.safetensors").read_bytes() == (d / "model.safetensors").read_bytes()


def test_text_generate_batched_left_padding(text_dir):
    from bbuqc.models import load_model_and_processor

    model, tok = load_model_and_processor(text_dir, multimodal=False)
    compact = _compact_ids(_n_bpe(text_dir))
    assert tok.padding_side == "left" and tok.pad_token_id == compact["<|endoftext|>"]
    assert tok.eos_token_id == compact["<|im_end|>"] == model.generation_config.eos_token_id[0]
    prompts = [tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
               for c in ("通过", "请判断: 图片_1 挡风板 方向正确, BBU安装螺丝 合格。理由?")]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"][0] == 0).any() and batch["attention_mask"][0, -1] == 1  # left-padded
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    out = model.generate(**batch, **kw)
    new = out[:, batch["input_ids"].shape[1]:]
    assert new.shape[1] >= 1 and int(new.max()) < model.config.vocab_size and int(new.min()) >= 0
    for i, p in enumerate(prompts):  # each row = the same prompt generated alone
        single = tok([p], return_tensors="pt")
        alone = model.generate(**single, **kw)[0, single["input_ids"].shape[1]:]
        assert torch.equal(alone, new[i, : len(alone)]), i
    assert isinstance(tok.batch_decode(new), list)


def test_verdict_prompt_token_count(text_tok, tmp_path):
    """The tokenizer corpus covers the real prompts: a synthetic verdict prompt (Chinese system prompt,
    focus points, ``图片_i: <JSON summary>`` lines) is ~170 tokens, not ~650 (1 token per character)."""
    from bbuqc.data.rows import load_verdict_rows  # the rows verdict_dataset() wraps
    from bbuqc.data.synth import generate

    generate(tmp_path / "world")
    rows = load_verdict_rows(sorted((tmp_path / "world" / "stage_a").glob("*.jsonl")))
    assert len(rows) == 42
    counts, chars = [], 0
    for row in rows:
        text = text_tok.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
        counts.append(len(text_tok.encode(text)))
        chars += len(text)
    assert max(counts) <= 300, max(counts)
    assert sum(counts) / len(counts) <= 250 and chars / sum(counts) >= 3, (sum(counts) / len(counts), chars)
    answers = [len(text_tok.encode(row["solution"])) for row in rows]
    assert max(answers) <= 40, max(answers)


def test_vl_chat_template_and_image_tokens(vl_dir):
    from transformers import AutoProcessor, Qwen2VLProcessor

    proc = AutoProcessor.from_pretrained(str(vl_dir))
    assert isinstance(proc, Qwen2VLProcessor)
    tok = proc.tokenizer
    for content, want in QWEN_SPECIAL_TOKENS.items():
        assert tok.convert_tokens_to_ids(content) == want, content
    assert proc.image_token_id == 151655 and proc.video_token_id == 151656
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "描述图片_1"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>描述图片_1<|im_end|>" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_start|>assistant\n")
    for (h, w) in ((300, 200), (1000, 1000), (20, 20)):  # processor limits: 4..16 merged tokens
        enc = proc(text=[text], images=[_image(h, w)], return_tensors="pt")
        grid = enc["image_grid_thw"][0]
        n = int(grid.prod()) // proc.image_processor.merge_size ** 2
        assert int((enc["input_ids"] == 151655).sum()) == n and 4 <= n <= 16, (h, w, grid)
        assert enc["pixel_values"].shape[0] == int(grid.prod())
    # the real ids render as the real strings
    assert tok.decode([151652, 151655, 151653], skip_special_tokens=False) == \
        "<|vision_start|><|image_pad|><|vision_end|>"


def test_vl_generate_batched_left_padding(vl_dir):
    from bbuqc.models import load_model_and_processor

    model, proc = load_model_and_processor(vl_dir, multimodal=True)
    texts = [proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                                      tokenize=False, add_generation_prompt=True) for t in ("通过?", "请描述这张图片中的 BBU设备 与 挡风板")]
    images = [_image(300, 200, 1), _image(112, 112, 2)]
    batch = proc(text=texts, images=images, return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # the shorter prompt is left-padded
    kw = dict(max_new_tokens=3, do_sample=False)
    out = model.generate(**batch, **kw)[:, batch["input_ids"].shape[1]:]
    assert int(out.max()) < QWEN_VOCAB_SIZE
    alone = proc(text=texts[:1], images=images[:1], return_tensors="pt")
    single = model.generate(**alone, **kw)[0, alone["input_ids"].shape[1]:]
    assert torch.equal(single, out[0, : len(single)])


# ----------------------------------------------------------------------------------------- ms-swift


@pytest.fixture
def unconfigured_qwen_vl_utils():
    """qwen_vl_utils as ms-swift finds it in a fresh process, and as it was again afterwards.

    ms-swift configures ``qwen_vl_utils.vision_process`` from the environment once per process (the
    first Qwen VL load sets ``_patch``), so whether an earlier test loaded one would decide what this
    test sees. The module's state is saved, ``_patch`` dropped, and everything restored after.
    """
    pytest.importorskip("swift")
    from qwen_vl_utils import vision_process

    saved = dict(vars(vision_process))
    backends = getattr(vision_process, "VIDEO_READER_BACKENDS", None)
    saved_backends = dict(backends) if isinstance(backends, dict) else None
    vars(vision_process).pop("_patch", None)
    yield vision_process
    for name in set(vars(vision_process)) - set(saved):
        delattr(vision_process, name)
    vars(vision_process).update(saved)
    if saved_backends is not None:
        backends.clear()
        backends.update(saved_backends)


def test_ms_swift_loads_vl_and_template_encodes_image(vl_dir, monkeypatch, unconfigured_qwen_vl_utils):
    vision_process = unconfigured_qwen_vl_utils
    # ms-swift resizes images with qwen_vl_utils (configured from env on its first Qwen VL load), not
    # with the processor's min/max pixels: tiny_env() caps that at 16 visual tokens.
    for k, v in tiny.tiny_env().items():
        monkeypatch.setenv(k, v)
    from swift.model import get_model_processor
    from swift.template import get_template

    model, processor = get_model_processor(str(vl_dir), model_type="qwen2_vl", torch_dtype=torch.float32,
                                           device_map="cpu")
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert vision_process.IMAGE_MAX_TOKEN_NUM == 16
    template = get_template(processor, template_type="qwen2_vl")
    template.set_mode("train")
    row = {"messages": [{"role": "user", "content": "<image>描述这张图片"}, {"role": "assistant", "content": "通过"}],
           "images": [_image(480, 640)]}
    enc = template.encode(row)
    n_pad = enc["input_ids"].count(151655)
    grid = enc["image_grid_thw"][0]
    assert n_pad == int(grid.prod()) // 4 and enc["pixel_values"].shape[0] == int(grid.prod())
    assert n_pad <= 16
    # collate without template.model: ms-swift builds a meta "dummy" model from the folder by path,
    # which needs the folder's args.json (model_type) -- then with the real model attached.
    batch = template.data_collator([enc])
    template.model = model
    batch2 = template.data_collator([template.encode(row)])  # the collator pops keys: encode again
    assert torch.equal(batch["position_ids"], batch2["position_ids"])
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)


def test_ms_swift_loads_text(text_dir):
    """ms-swift's ``qwen`` (ChatML) template works on token strings, so the compact ids just work:
    it encodes a chat exactly like the HF chat template and stops generation on ``<|im_end|>``."""
    pytest.importorskip("swift")
    from swift.infer_engine import InferRequest, RequestConfig, TransformersEngine
    from swift.model import get_model_processor
    from swift.template import get_template

    model_type, template_type = tiny.SWIFT_TYPES["text"]
    model, tokenizer = get_model_processor(str(text_dir), model_type=model_type, torch_dtype=torch.float32,
                                           device_map="cpu")
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.vocab_size < 4096
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end == _compact_ids(_n_bpe(text_dir))["<|im_end|>"] == tokenizer.eos_token_id
    template = get_template(tokenizer, template_type=template_type)
    assert template.template_meta.stop_token_id == im_end and "<|im_end|>" in template.template_meta.stop_words
    template.set_mode("train")
    messages = [{"role": "system", "content": "审核"}, {"role": "user", "content": "判断"},
                {"role": "assistant", "content": "不通过\n理由: 图片_1"}]
    enc = template.encode({"messages": messages})
    want = tokenizer.encode(tokenizer.apply_chat_template(messages, tokenize=False))
    assert enc["input_ids"] == want
    answer = [t for t in enc["labels"] if t != -100]  # the assistant turn + <|im_end|>\n
    assert tokenizer.decode(answer) == "不通过\n理由: 图片_1<|im_end|>\n"
    batch = template.data_collator([enc])
    out = model(**batch)
    assert torch.isfinite(out.loss)

    # Rollout (ms-swift's CPU engine): force "不通过" then <|im_end|>; generation must stop there.
    forced = tokenizer.encode("不通过", add_special_tokens=False) + [im_end]
    calls = []

    def force(module, args, logits):
        logits = logits.clone()
        logits[:, -1, forced[min(len(calls), len(forced) - 1)]] += 1e4
        calls.append(1)
        return logits

    handle = model.lm_head.register_forward_hook(force)
    try:
        engine = TransformersEngine(model, template=template)
        res = engine.infer([InferRequest(messages=[{"role": "user", "content": "判断"}])],
                           RequestConfig(max_tokens=8, temperature=0))
    finally:
        handle.remove()
    choice = res[0].choices[0]
    assert choice.message.content == "不通过" and choice.finish_reason == "stop"
    assert res[0].usage.completion_tokens == len(forced)


# --------------------------------------------------------------------------------------- layer count


def test_read_num_llm_layers_tiny(vl_dir, text_dir):
    assert read_num_llm_layers(vl_dir) == tiny.NUM_LAYERS == 4
    assert read_num_llm_layers(text_dir / "config.json") == 4


def test_read_num_llm_layers_layouts(tmp_path):
    layouts = {
        # Qwen2.5-VL-3B as shipped (transformers 4.4x): LLM fields at top level, vision depth 32
        "qwen2_5_vl_old": ({"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
                            "hidden_size": 2048, "num_hidden_layers": 36,
                            "vision_config": {"depth": 32, "hidden_size": 1280, "out_hidden_size": 2048}}, 36),
        # Qwen2.5-VL re-saved by transformers >= 4.5x: nested text_config (top level may be absent)
        "qwen2_5_vl_new": ({"model_type": "qwen2_5_vl", "text_config": {"model_type": "qwen2_5_vl_text",
                                                                        "num_hidden_layers": 28},
                            "vision_config": {"depth": 32}}, 28),
        # Qwen3-VL-4B: text_config only; vision has depth 24 and deepstack layers
        "qwen3_vl": ({"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
                      "text_config": {"model_type": "qwen3_vl_text", "num_hidden_layers": 36, "hidden_size": 2560},
                      "vision_config": {"depth": 24, "num_hidden_layers": 99, "deepstack_visual_indexes": [5, 11, 17]}},
                     36),
        # Qwen2-VL-2B old layout
        "qwen2_vl": ({"model_type": "qwen2_vl", "num_hidden_layers": 28, "vision_config": {"depth": 32}}, 28),
        # Qwen2 / Qwen2.5 text
        "qwen2": ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "num_hidden_layers": 24}, 24),
    }
    for name, (cfg, want) in layouts.items():
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        assert read_num_llm_layers(d) == want, name
        assert num_llm_layers_from_config(cfg) == want, name
    with pytest.raises(ValueError, match="num_hidden_layers"):
        num_llm_layers_from_config({"vision_config": {"num_hidden_layers": 3}})
    with pytest.raises(FileNotFoundError):
        read_num_llm_layers(tmp_path / "nope")


# The demo's figures are measured on these exact weights (docs/demo.md): a fresh build must give the same
# bytes, or a figure in the docs no longer belongs to the model `make demo` trains. A deliberate change to a
# twin bumps its folder version (MODEL_DIRS) and this pin, and the demo is measured again.
# vl_demo's build trains (its tower and its reading), so its bytes also depend on the CPU kernels torch picks
# (docs/demo.md, fifth session: v7 gave 3a4b52dc... with AVX-512 kernels and 1ad957d5... with AVX2 ones on one
# machine). The pin is the build the demo's current figures were measured on (bbuqc/runtime/environment.py
# records it in the demo's metrics.json):
DEMO_TWIN_MEASURED_ON = "torch CPU kernels AVX512 (Intel Xeon with AMX); torch 2.14.1, transformers 5.19.0"
DEMO_TWIN_SHA256 = {
    "vl_demo": "90e4f1a6cce9bca50a409563c2edef7da8346f4a66153236d86e2d879617e678",  # v9
    "text_demo": "f068149e50be1f6d37449757b437f49c96f3dd9ee74fee65871ab49d9d0ec715",  # not trained: any CPU
}


# vl_demo's build pretrains the twin (~6 min of one core): slow
@pytest.mark.parametrize("kind", [pytest.param("vl_demo", marks=pytest.mark.slow), "text_demo"])
def test_a_fresh_build_of_a_demo_twin_is_bit_for_bit_the_measured_one(kind, tmp_path):
    from bbuqc.models.tiny import MARKER, SPECS, ensure_tiny_model

    folder = ensure_tiny_model(kind, cache=tmp_path)
    from bbuqc.runtime.environment import describe, one_line

    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == DEMO_TWIN_SHA256[kind], \
        f"built here on {one_line(describe())}; the pin was measured on {DEMO_TWIN_MEASURED_ON}"
    if SPECS[kind].pretrained:  # the summary SFT starts from a tower that sees and an LLM that reads it
        pretraining = json.loads((folder / MARKER).read_text())["pretraining"]
        assert pretraining["vision"]["held_out_f1"] >= 0.9
        assert pretraining["reading"]["held_out_word_f1"] >= 0.9
