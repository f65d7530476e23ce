"""One tiny random twin per supported Qwen family (bbuqc/models/tiny.py): each built from its family's
transformers classes with its processor, chat template and ms-swift names, and run for real on CPU.
And the image-size config (`model.min_pixels`/`max_pixels`): training and Stage-A see the same tokens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import compose, run_cli

from bbuqc.models import tiny

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "conf" / "model"
#: Real preset -> its tiny twin (the family a test run stands in for).
TWINS = {
    "qwen2_vl_2b": "tiny_qwen2_vl", "qwen2_vl_7b": "tiny_qwen2_vl",
    "qwen2_5_vl_3b": "tiny_qwen2_5_vl", "qwen2_5_vl_7b": "tiny_qwen2_5_vl",
    "qwen3_vl_2b": "tiny_qwen3_vl", "qwen3_vl_4b": "tiny_qwen3_vl", "qwen3_vl_8b": "tiny_qwen3_vl",
    "qwen2_5_7b": "tiny_qwen2_5",
}
VL_TWINS = {"tiny_qwen2_vl": "Qwen2VL", "tiny_qwen2_5_vl": "Qwen2_5_VL", "tiny_qwen3_vl": "Qwen3VL"}
IMAGE_PAD = 151655


def _preset(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


@pytest.fixture
def clean_image_env(monkeypatch):
    """apply_image_env writes os.environ; keep that inside the test."""
    for key in ("MAX_PIXELS", "MIN_PIXELS", "IMAGE_MAX_TOKEN_NUM", "IMAGE_MIN_TOKEN_NUM"):
        monkeypatch.delenv(key, raising=False)
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --------------------------------------------------------------------------------- presets and names


def test_every_real_preset_names_its_twins_ms_swift_model_type_and_template():
    real = {p.stem for p in PRESETS.glob("qwen*.yaml")}
    assert real == set(TWINS), "a new real preset needs a tiny twin (and an entry here)"
    for name, twin in TWINS.items():
        r, t = _preset(name), _preset(twin)
        assert (r["model_type"], r["template"], r["multimodal"]) == (t["model_type"], t["template"], t["multimodal"]), name
        kind = tiny.PRESET_KINDS[twin]
        assert tiny.SWIFT_TYPES[kind] == (t["model_type"], t["template"]), twin


def test_ms_swift_knows_every_preset_name():
    pytest.importorskip("swift")
    from swift.model import MODEL_MAPPING
    from swift.template import TEMPLATE_MAPPING

    for name in TWINS:
        p = _preset(name)
        assert p["model_type"] in MODEL_MAPPING and p["template"] in TEMPLATE_MAPPING, name


def test_real_vl_presets_state_an_image_budget_of_1024_tokens():
    from bbuqc.models.resolve import VISION_PATCH

    for name in TWINS:
        p = _preset(name)
        if not p["multimodal"]:
            assert "max_pixels" not in p
            continue
        per_token = (VISION_PATCH[p["model_type"]] * 2) ** 2
        assert p["max_pixels"] == 1024 * per_token and p["min_pixels"] == 4 * per_token, name


def test_tiny_alias_and_kinds():
    from bbuqc.models.resolve import tiny_kind

    kinds = {name: tiny_kind(compose("train", [f"model={name}"])) for name in (*VL_TWINS, "tiny", "tiny_qwen2_5")}
    assert kinds == {"tiny": "vl", "tiny_qwen2_vl": "vl", "tiny_qwen2_5_vl": "qwen2_5_vl", "tiny_qwen3_vl": "qwen3_vl",
                     "tiny_qwen2_5": "qwen2_5_text"}
    # the existing kinds keep their folders (caches and tests rely on them)
    assert tiny.MODEL_DIRS["vl"] == "tiny-qwen2-vl-v3" and tiny.MODEL_DIRS["text"] == "tiny-qwen2-v3"


# ------------------------------------------------------------------------------------- the twins


@pytest.fixture(scope="module")
def twin_dirs(session_cache) -> dict[str, Path]:
    return {kind: tiny.ensure_tiny_model(kind) for kind in ("vl", "qwen2_5_vl", "qwen3_vl", "qwen2_5_text")}


def test_twins_use_their_familys_classes(twin_dirs):
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    expected = {"vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", 14),
                "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", 14),
                "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 16)}
    for kind, (arch, proc_cls, patch) in expected.items():
        d = twin_dirs[kind]
        config = AutoConfig.from_pretrained(d)
        assert config.architectures == [arch], kind
        assert config.vision_config.patch_size == patch and config.get_text_config().num_hidden_layers == 4
        processor = AutoProcessor.from_pretrained(d)
        assert type(processor).__name__ == proc_cls and processor.image_processor.patch_size == patch
        assert json.loads((d / "args.json").read_text())["model_type"] == tiny.SWIFT_TYPES[kind][0]
    assert AutoConfig.from_pretrained(twin_dirs["qwen3_vl"]).vision_config.deepstack_visual_indexes == [0]
    # chat templates: Qwen3-VL has no default system prompt, Qwen2.5's names Qwen
    msgs = [{"role": "user", "content": "hi"}]
    q3 = AutoProcessor.from_pretrained(twin_dirs["qwen3_vl"]).apply_chat_template(msgs, tokenize=False)
    assert q3 == "<|im_start|>user\nhi<|im_end|>\n"
    q25 = AutoTokenizer.from_pretrained(twin_dirs["qwen2_5_text"]).apply_chat_template(msgs, tokenize=False)
    assert q25.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    assert AutoConfig.from_pretrained(twin_dirs["qwen2_5_text"]).architectures == ["Qwen2ForCausalLM"]


def test_lora_regex_excludes_every_vision_module_of_each_family(twin_dirs):
    from bbuqc.training.lora import last_k_target_regex, linear_module_names

    for kind in ("vl", "qwen2_5_vl", "qwen3_vl"):
        names = linear_module_names(str(twin_dirs[kind]))
        vision = [n for n in names if n.startswith("model.visual.")]
        assert vision, kind
        regex, selected = last_k_target_regex(names, 2)
        assert selected and all(re.match(r"model\.language_model\.layers\.[23]\.", n) for n in selected), kind
        assert not [n for n in vision if re.fullmatch(regex, n)], kind
    q3 = linear_module_names(str(twin_dirs["qwen3_vl"]))
    assert [n for n in q3 if ".deepstack_merger_list." in n]  # it is there, and excluded above


# ------------------------------------------------------------------- image size: one budget for all


@pytest.fixture
def unconfigured_qwen_vl_utils():
    """qwen_vl_utils as a fresh process has it (ms-swift configures it from the env once per process)."""
    pytest.importorskip("swift")
    from qwen_vl_utils import vision_process

    saved = dict(vars(vision_process))
    vars(vision_process).pop("_patch", None)
    yield vision_process
    for name in set(vars(vision_process)) - set(saved):
        delattr(vision_process, name)
    vars(vision_process).update(saved)


@pytest.mark.parametrize("preset,extra,max_tokens", [
    ("tiny_qwen2_vl", [], 16),
    ("tiny_qwen2_5_vl", [], 16),
    ("tiny_qwen3_vl", [], 16),
    ("tiny_qwen3_vl", ["model.max_pixels=8192", "model.min_pixels=1024"], 8),  # config wins: 8 tokens of 32*32
    ("tiny_qwen2_5_vl", ["model.max_pixels=6272"], 8),  # 8 tokens of 28*28
    # compact vocabulary: <|image_pad|> is not at Qwen's id, and bbuqc's template knows it; slow: the twin's build
    # pretrains it (~5 min of one core)
    pytest.param("tiny_demo", [], 16, marks=pytest.mark.slow),
])
def test_training_and_stage_a_give_an_image_the_same_number_of_tokens(
        preset, extra, max_tokens, twin_dirs, tmp_path, clean_image_env, unconfigured_qwen_vl_utils):
    from PIL import Image
    from swift.model import get_processor
    from swift.template import get_template

    from bbuqc.io.images import rows_with_training_images
    from bbuqc.missions import MISSIONS
    from bbuqc.models.resolve import resolve_model
    from bbuqc.models.swift_template import register_templates
    from bbuqc.stage_a.backends import HFBackend, pixel_bounds

    cfg = compose("train", [f"model={preset}", *extra])
    model = resolve_model(cfg)  # sets the image-size environment, as every command does
    paths = []
    for i, (w, h) in enumerate([(640, 480), (97, 203), (20, 30)]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (w, h), (10 * i, 80, 160)).save(p)
        paths.append(str(p))
    # training: the rows' images as training copies them, encoded by ms-swift's own template
    register_templates()
    processor = get_processor(model.path, model_type=model.model_type)
    template = get_template(processor, template_type=model.template)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (image_pad == IMAGE_PAD) == (preset != "tiny_demo")
    template.set_mode("train")
    rows = [{"messages": [{"role": "user", "content": "<image>描述"}, {"role": "assistant", "content": "通过"}],
             "images": [p]} for p in paths]
    rows = rows_with_training_images(rows, tmp_path / "copies", max_pixels=pixel_bounds().get("max_pixels"))
    train_counts = [template.encode(r)["input_ids"].count(image_pad) for r in rows]
    # Stage-A: the HF processor path of the backend
    backend = HFBackend(model.path)
    mission = MISSIONS["bbu_wind"]
    stage_a_counts = [int((backend.encode([Path(p)], mission)["input_ids"] == image_pad).sum()) for p in paths]
    # held-out validation: the processor call of bbuqc/training/validation.py
    from bbuqc.stage_a.backends import load_image, size_kwargs

    val_counts = [int((backend.processor(text=[backend.prompt(mission)], images=[load_image(p)], return_tensors="pt",
                                         **size_kwargs(backend.processor))["input_ids"] == image_pad).sum())
                  for p in paths]
    assert train_counts == stage_a_counts == val_counts
    # the 640x480 photo is capped near the budget (smart_resize rounds down to whole tokens), the
    # 20x30 one raised to at least min_pixels
    assert max_tokens * 3 // 4 <= train_counts[0] <= max_tokens and train_counts[2] >= 1


def test_max_pixels_below_min_pixels_is_one_line_before_any_model_loads(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "BBUQC_CACHE": str(tmp_path / "empty-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "bbuqc.train", "model=tiny_qwen3_vl", "model.max_pixels=4096", "model.min_pixels=8192",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model.max_pixels=4096" in lines[0] and "model.min_pixels=8192" in lines[0]
    assert not (tmp_path / "empty-cache" / "models").exists()  # no model was built, let alone loaded


# ------------------------------------------------------------------------------- per-family runs


def _train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = run_cli("train", *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _check_summary_grpo(preset: str, run_dir: Path) -> None:
    from safetensors import safe_open

    _train(run_dir, f"model={preset}", "task=summary", "reward=summary_full", "lora.last_k=2", "train.max_steps=2")
    steps = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    assert [r["global_step/max_steps"] for r in steps if "loss" in r and "global_step/max_steps" in r] == ["1/2", "2/2"]
    with safe_open(str(run_dir / "checkpoint-2" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and {int(re.search(r"\.layers\.(\d+)\.", k).group(1)) for k in keys} == {2, 3}
    assert all(".language_model.layers." in k for k in keys)
    assert not [k for k in keys if re.search(r"visual|merger|deepstack|patch_embed", k)]
    adapter_cfg = json.loads((run_dir / "checkpoint-2" / "adapter_config.json").read_text())
    assert "visual" not in json.dumps(adapter_cfg.get("target_modules"))
    # the image size ms-swift was given is in the run's log
    log = (run_dir / "cli.log").read_text() if (run_dir / "cli.log").exists() else ""
    assert "image size: " in log and "IMAGE_MAX_TOKEN_NUM=16" in log


@pytest.mark.slow  # a real Qwen3-VL GRPO run, ~40 s: make test-full; keeps make test under 10 minutes
def test_qwen3_vl_twin_summary_grpo_puts_lora_on_the_last_blocks_only(session_cache, tmp_path):
    _check_summary_grpo("tiny_qwen3_vl", tmp_path / "run")


@pytest.mark.slow
def test_qwen2_5_vl_twin_summary_grpo_puts_lora_on_the_last_blocks_only(session_cache, tmp_path):
    _check_summary_grpo("tiny_qwen2_5_vl", tmp_path / "run")


@pytest.mark.slow
def test_qwen2_vl_twin_summary_grpo(session_cache, tmp_path):
    _check_summary_grpo("tiny_qwen2_vl", tmp_path / "run")


def _image_tree(root: Path, n: int = 3) -> Path:
    from PIL import Image

    from bbuqc.missions import MISSIONS

    group = root / MISSIONS["bbu_wind"].name / "审核通过" / "g1"
    group.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (120 + 30 * i, 90), (40 * i, 100, 200)).save(group / f"{i}.jpg")
    return root


@pytest.mark.parametrize("preset", [pytest.param("tiny_qwen3_vl"), pytest.param("tiny_qwen2_5_vl", marks=pytest.mark.slow)])
def test_stage_a_runs_on_each_vl_twin(preset, session_cache, tmp_path, clean_image_env):
    from bbuqc.stage_a.runner import run_stage_a

    root = _image_tree(tmp_path / "photos")
    out = tmp_path / "stage_a.jsonl"
    cfg = compose("infer", [f"model={preset}", "mission=bbu_wind", f"data.root={root}", f"infer.output={out}",
                             "infer.max_new_tokens=4", "infer.progress=false"])
    from bbuqc.data.records import read_stage_a_jsonl

    summary = run_stage_a(cfg)
    assert summary["images"] == 3
    (record,) = read_stage_a_jsonl(out)
    assert len(record.images) == 3 and record.label == "pass"


@pytest.mark.parametrize("preset", ["tiny_qwen2_5", pytest.param("tiny_text", marks=pytest.mark.slow)])
def test_evaluation_runs_on_each_text_twin(preset, session_cache, tmp_path):
    from bbuqc.data.synth import ensure_synthetic

    root = ensure_synthetic(session_cache / "synth" / "seed0-g6", seed=0, groups_per_mission=6)
    files = sorted((root / "stage_a").glob("*.jsonl"))[:1]
    out = tmp_path / "eval"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "bbuqc.evaluate", f"model={preset}", f"data.stage_a_jsonl=[{files[0]}]",
         f"evaluate.output_dir={out}", "logger=none", "evaluate.max_new_tokens=4", "evaluate.progress=false",
         f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n"] > 0


def test_every_tiny_preset_file_states_its_twins_spec():
    """conf/model/tiny*.yaml repeat what the twin's spec (bbuqc/models/tiny.py SPECS) says, for the user
    to read: a preset whose ms-swift names, depth or pixel limits drift from the twin would train one
    model with another's settings."""
    files = {p.stem: yaml.safe_load(p.read_text()) for p in PRESETS.glob("tiny*.yaml")}
    assert set(files) == set(tiny.PRESET_KINDS), "every preset of a spec has a file, and every file a spec"
    for name, p in files.items():
        spec = tiny.SPECS[tiny.PRESET_KINDS[name]]
        assert p["preset"] == name and p["path"] is None, name
        assert (p["model_type"], p["template"], p["multimodal"]) == (spec.model_type, spec.template, spec.multimodal), name
        assert p["num_llm_layers"] == spec.sizes[2], name
        if "max_pixels" in p:
            assert (p["min_pixels"], p["max_pixels"]) == tiny.pixel_limits(tiny.PRESET_KINDS[name]), name
