"""`evaluate.backend=vllm` (issue 31): Stage-A's refusals, and bbuqc's side of the engine (the requests it builds,
the adapter as a LoRA request, the answers it reads back) through a stand-in for the `vllm` module. vLLM
itself is not installed here; what it does with the requests is not tested."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from support import run_cli

# pytest puts this folder on sys.path (rootdir-relative imports, no __init__.py)
from test_metrics import TableModel, compose_cfg, make_inputs

from bbuqc.checks import problems
from bbuqc.errors import InputError
from bbuqc.runtime.devices import require_devices
from bbuqc.stage_b.runner import EvaluationInputError, evaluate

REPO = Path(__file__).resolve().parents[2]
no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


def _adapter(folder: Path, rank: int = 16, modules_to_save: list[str] | None = None) -> Path:
    """A LoRA checkpoint of the tiny text twin (hidden size 64), from its files alone."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": rank, "modules_to_save": modules_to_save}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    name = "base_model.model.model.layers.3.self_attn.q_proj"
    save_file({f"{name}.lora_A.weight": np.zeros((rank, 64), np.float32),
               f"{name}.lora_B.weight": np.zeros((64, rank), np.float32)}, str(folder / "adapter_model.safetensors"))
    return folder


class FakeVLLM(types.ModuleType):
    """What bbuqc calls of vLLM: LLM(**kwargs).chat(conversations, params, use_tqdm, lora_request),
    SamplingParams(**kwargs), vllm.lora.request.LoRARequest(name, id, path). Answers from a table."""

    def __init__(self, answers: dict[str, list[str]]):
        super().__init__("vllm")
        self.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
        fake = self
        self.engines: list[dict] = []
        self.calls: list[dict] = []

        class LLM:
            def __init__(self, **kwargs):
                fake.engines.append(kwargs)

            def chat(self, conversations, params, use_tqdm=True, lora_request=None):
                fake.calls.append({"conversations": conversations, "params": params, "lora": lora_request})
                out = types.SimpleNamespace
                return [out(outputs=[out(text=t) for t in answers[c[-1]["content"]][:params["n"]]])
                        for c in conversations]

        self.LLM = LLM
        self.SamplingParams = dict
        lora = types.ModuleType("vllm.lora")
        request = types.ModuleType("vllm.lora.request")
        request.LoRARequest = lambda name, lora_id, path: {"name": name, "id": lora_id, "path": path}
        lora.request = request
        self.modules = {"vllm": self, "vllm.lora": lora, "vllm.lora.request": request}


@pytest.fixture
def inputs(tmp_path):
    return make_inputs(tmp_path / "in")


@no_vllm
def test_vllm_missing_is_one_line_before_anything_is_read(inputs, tmp_path):
    files, _ = inputs
    out = tmp_path / "out"
    with pytest.raises(EvaluationInputError) as exc:
        evaluate(compose_cfg(files, out, "evaluate.backend=vllm"))
    assert str(exc.value) == "evaluate.backend=vllm: vLLM is not installed (pip install -e '.[gpu]' on a GPU machine)"
    assert not out.exists()
    proc = run_cli("evaluate", "evaluate.backend=vllm", f"evaluate.output_dir={out}",
                   f"data.stage_a_jsonl=[{','.join(map(str, files))}]", "logger=none", f"hydra.run.dir={tmp_path / 'hydra'}",
                   env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {exc.value}"]
    assert not out.exists()


def test_vllm_installed_without_a_gpu_is_refused(inputs, tmp_path, monkeypatch):
    files, _ = inputs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    with pytest.raises(InputError, match=r"^evaluate.backend=vllm: no CUDA device is visible here"):
        require_devices(compose_cfg(files, tmp_path / "out", "evaluate.backend=vllm"), "evaluate")


def test_an_adapter_vllm_cannot_apply_is_refused(inputs, tmp_path):
    files, _ = inputs
    adapter = _adapter(tmp_path / "ckpt", modules_to_save=["lm_head"])
    with pytest.raises(AssertionError):  # compose_cfg asserts the config is clean
        compose_cfg(files, tmp_path / "out", "evaluate.backend=vllm", f"model.adapter={adapter}")
    cfg = compose_cfg(files, tmp_path / "out2", f"model.adapter={adapter}")  # the HF backend merges it
    cfg.evaluate.backend = "vllm"
    assert problems(cfg, "evaluate") == [
        f"model.adapter={adapter}: trains whole modules (lm_head; lora.modules_to_save), which evaluate.backend=vllm "
        "cannot apply; merge it (bbuqc-export) and pass the merged folder as model.path, or use evaluate.backend=hf"]


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_the_engine_gets_the_adapter_as_a_lora_request_and_answers_like_hf(session_cache, inputs, tmp_path,
                                                                           monkeypatch, temperature):
    files, answers = inputs
    adapter = _adapter(tmp_path / "ckpt")
    fake = FakeVLLM(answers)
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    extra = ["compute.vllm_gpu_memory_utilization=0.3", f"evaluate.temperature={temperature}", "evaluate.seed=5"]
    cfg = compose_cfg(files, tmp_path / "vllm", "evaluate.backend=vllm", f"model.adapter={adapter}", *extra)
    got = evaluate(cfg)
    (engine,) = fake.engines
    assert engine["enable_lora"] is True and engine["max_lora_rank"] == 16 and engine["seed"] == 5
    assert engine["gpu_memory_utilization"] == 0.3 and engine["dtype"] == "float32"
    assert Path(engine["model"]).is_dir() and "max_model_len" not in engine
    groups = len(answers)
    assert [len(c["conversations"]) for c in fake.calls] == [3] * (groups // 3) + ([groups % 3] if groups % 3 else [])
    for call in fake.calls:
        assert call["lora"] == {"name": "adapter", "id": 1, "path": str(adapter)}
        assert call["params"] == {"n": 3 if temperature else 1, "temperature": temperature, "max_tokens": 96,
                                  "skip_special_tokens": True}
        assert all(c[0]["role"] == "system" and c[-1]["role"] == "user" for c in call["conversations"])
    # the answers read back are scored exactly as the same answers from the HF path
    # (greedy: the first answer of each prompt, repeated per sample)
    table = answers if temperature else {k: [v[0]] * len(v) for k, v in answers.items()}
    want = evaluate(compose_cfg(files, tmp_path / "hf", *extra), model=TableModel(table))
    assert got["overall"] == want["overall"] and got["overall"]["n"] == groups
