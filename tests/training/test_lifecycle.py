"""SFT, trained adapters in every command, and merged export, on the tiny models (real ms-swift, CPU).

The chain a researcher runs: `bbuqc-train algo=sft`, then GRPO from that adapter, Stage-A and
evaluation with it, and `bbuqc-export` to a folder every command loads as `model.path`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import error_lines, run_cli
from test_train_runs import adapter_blocks, step_logs

from bbuqc.models.tiny import tiny_model_dir

REPO = Path(__file__).resolve().parents[2]


def command(name: str, *overrides: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = run_cli(name, *overrides)
    if ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return error_lines(proc.stderr)


@pytest.fixture(scope="module")
def sft_verdict(session_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sft_verdict") / "run"
    # a high learning rate so two steps move the LoRA far enough to change logits visibly
    command("train", "algo=sft", "task=verdict", "lora.last_k=2", "train.max_steps=2", "train.learning_rate=5e-2",
            "logger=none", f"hydra.run.dir={run}")
    return run


@pytest.fixture(scope="module")
def sft_summary(session_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sft_summary") / "run"
    command("train", "algo=sft", "task=summary", "lora.last_k=2", "train.max_steps=4", "train.save_steps=4",
            "train.learning_rate=5e-2", "logger=none", f"hydra.run.dir={run}")
    return run


@pytest.mark.parametrize("which", ["sft_verdict", "sft_summary"])
def test_sft_trains_lora_on_the_last_k_blocks_only(which, request):
    run = request.getfixturevalue(which)
    checkpoint = sorted(run.glob("checkpoint-*"))[-1]
    blocks, keys = adapter_blocks(checkpoint)
    assert blocks == {2, 3}  # both tiny models have 4 LLM blocks
    assert not [k for k in keys if any(v in k for v in ("visual", "merger", "embed_tokens", "lm_head"))]
    logs = step_logs(run)
    assert logs and all(r["loss"] > 0 for r in logs)  # cross-entropy on the reference outputs
    # SFT trains on conversations that end with the reference answer
    row = json.loads((run / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["content"]


def _logits(model_dir: Path, adapter: Path | None, text: str):
    import torch

    from bbuqc.models.loading import load_model_and_processor

    model, tok = load_model_and_processor(model_dir, multimodal=False, adapter=adapter)
    with torch.inference_mode():
        return model(**tok(text, return_tensors="pt")).logits[0, -1]


PROMPT = "挡风板安装检查 图片_1: BBU设备"


def test_grpo_from_an_sft_adapter_starts_from_its_weights(sft_verdict, tmp_path):
    import torch

    sft = sft_verdict / "checkpoint-2"
    run = tmp_path / "grpo"
    # one step at a negligible learning rate: the saved LoRA is the one GRPO started from
    command("train", "task=verdict", f"model.adapter={sft}", "lora.last_k=2", "train.max_steps=1",
            "train.save_steps=1", "train.learning_rate=1e-12", "logger=none", f"hydra.run.dir={run}")
    base = tiny_model_dir("text")
    after_grpo = _logits(base, run / "checkpoint-1", PROMPT)
    assert torch.allclose(after_grpo, _logits(base, sft, PROMPT), atol=1e-4)
    assert not torch.allclose(after_grpo, _logits(base, None, PROMPT), atol=1e-3)  # a fresh LoRA would equal the base


def test_an_adapter_for_another_base_is_refused_naming_both(sft_verdict, tmp_path):
    proc = command("infer", f"model.adapter={sft_verdict / 'checkpoint-2'}", f"hydra.run.dir={tmp_path / 'run'}",
                   ok=False)
    assert proc.returncode == 2
    (line,) = errors(proc)
    assert str(sft_verdict / "checkpoint-2") in line and "tiny-qwen2-v3" in line and "qwen2_vl" in line
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_lora_checkpoint_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    proc = command("evaluate", f"model.adapter={tmp_path / 'ckpt'}", ok=False)
    assert proc.returncode == 2 and "expected LORA" in errors(proc)[0]


def test_continuing_an_adapter_needs_its_lora_shape(sft_verdict):
    proc = command("train", "task=verdict", f"model.adapter={sft_verdict / 'checkpoint-2'}", "lora.last_k=4",
                   ok=False)
    assert proc.returncode == 2
    assert "lora.last_k=4" in errors(proc)[0] and "set lora.last_k=2" in errors(proc)[0]


def test_sft_refuses_rows_without_a_reference_output(tmp_path, session_cache):
    from bbuqc.data.synth import ensure_synthetic
    from bbuqc.runtime.paths import cache_dir

    world = ensure_synthetic(cache_dir() / "synth" / "seed0-g6", seed=0, groups_per_mission=6)
    rows = [json.loads(line) for line in (world / "summary_rows.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[1]["solution"] = ""
    bad = tmp_path / "rows.jsonl"
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = command("train", "algo=sft", "data.source=files", f"data.summary_jsonl={bad}", "logger=none",
                   f"hydra.run.dir={tmp_path / 'run'}", ok=False)
    assert proc.returncode == 2
    assert "algo=sft" in errors(proc)[0] and "row 1" in errors(proc)[0] and "reference output" in errors(proc)[0]


def test_stage_a_with_an_adapter_differs_from_without(sft_summary, tmp_path):
    from bbuqc.missions import MISSIONS
    from bbuqc.stage_a.backends import GenerationSettings, make_backend

    images = sorted((Path(os.environ["BBUQC_CACHE"]) / "synth" / "seed0-g6" / "images").rglob("*.jpg"))[:3]
    settings = GenerationSettings(max_new_tokens=24, temperature=0.0)
    mission = MISSIONS["bbu_wind"]
    base = tiny_model_dir("vl")
    plain = make_backend("hf", base).generate(images, mission, settings)
    adapter = sorted(sft_summary.glob("checkpoint-*"))[-1]
    tuned = make_backend("hf", base, adapter=adapter).generate(images, mission, settings)
    assert tuned != plain


@pytest.mark.parametrize("which,kind", [("sft_verdict", "text"), ("sft_summary", "vl")])
def test_export_round_trip_equals_base_plus_adapter(which, kind, request, tmp_path):
    import torch

    from bbuqc.models.loading import load_model_and_processor

    run = request.getfixturevalue(which)
    adapter = sorted(run.glob("checkpoint-*"))[-1]
    out = tmp_path / "merged"
    command("export", f"model.adapter={adapter}", f"export.output={out}", f"hydra.run.dir={tmp_path / 'run'}")
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "bbuqc_export.json"):
        assert (out / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]  # nothing left beside it
    multimodal = kind == "vl"
    merged, proc_m = load_model_and_processor(out, multimodal=multimodal)
    ref, proc_r = load_model_and_processor(tiny_model_dir(kind), multimodal=multimodal, adapter=adapter)
    tok = getattr(proc_m, "tokenizer", proc_m)
    assert (getattr(proc_m, "chat_template", None) or tok.chat_template)  # the chat template travelled along
    enc = tok([PROMPT, "图片_2: 挡风板"], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=12, do_sample=False, temperature=None, top_p=None, top_k=None,
              pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        assert torch.equal(merged.generate(**enc, **kw), ref.generate(**enc, **kw))


def test_export_refuses_a_non_empty_output_and_keeps_it(sft_verdict, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = command("export", f"model.adapter={sft_verdict / 'checkpoint-2'}", f"export.output={out}", ok=False)
    assert proc.returncode == 2
    assert f"export.output={out}" in errors(proc)[0] and "export.overwrite=true" in errors(proc)[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_merged_export_is_a_model_path_for_evaluate(sft_verdict, tmp_path):
    out = tmp_path / "merged"
    command("export", f"model.adapter={sft_verdict / 'checkpoint-2'}", f"export.output={out}")
    command("evaluate", f"model.path={out}", "data.max_rows=4", f"evaluate.output_dir={tmp_path / 'eval'}",
            "evaluate.progress=false", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["overall"]["n"] == 4 and metrics["settings"]


def test_modules_to_save_train_the_embeddings_and_travel_with_the_adapter(session_cache, tmp_path):
    """lora.modules_to_save (the demo twins' setting): the checkpoint carries trained copies of the
    embeddings and output layer beside the LoRA, and a merged export of it generates exactly what the
    base + adapter does."""
    import torch
    from safetensors import safe_open

    from bbuqc.models.loading import load_model_and_processor

    run = tmp_path / "run"
    command("train", "algo=sft", "task=verdict", "model=tiny_text_demo", "lora.last_k=1",
            "lora.modules_to_save=[embed_tokens,lm_head]", "train.max_steps=2", "train.learning_rate=5e-2",
            "logger=none", f"hydra.run.dir={run}")
    adapter = run / "checkpoint-2"
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(config["modules_to_save"]) == ["embed_tokens", "lm_head"]
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("embed_tokens" in k for k in keys) and any("lm_head" in k for k in keys)
    base = tiny_model_dir("text_demo")
    tuned, tok = load_model_and_processor(base, multimodal=False, adapter=adapter)
    plain, _ = load_model_and_processor(base, multimodal=False)
    assert not torch.equal(tuned.lm_head.weight, plain.lm_head.weight)  # the output layer trained
    assert not torch.equal(tuned.get_input_embeddings().weight, plain.get_input_embeddings().weight)

    out = tmp_path / "merged"
    command("export", f"model.adapter={adapter}", f"export.output={out}", f"hydra.run.dir={tmp_path / 'export'}")
    merged, _ = load_model_and_processor(out, multimodal=False)
    enc = tok([PROMPT], return_tensors="pt")
    kw = dict(max_new_tokens=8, do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        assert torch.equal(merged.generate(**enc, **kw), tuned.generate(**enc, **kw))
