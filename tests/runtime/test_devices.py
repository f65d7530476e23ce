"""A GPU run on a machine without a visible CUDA device is refused before anything loads or is written
(issue 32: a `[gpu]` install on a machine without CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support import compose, error_lines, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.errors import InputError
from bbuqc.runtime.devices import local_gpu_count, require_devices

REPO = Path(__file__).resolve().parents[2]


def _cfg(command: str, *overrides: str):
    return compose(command, overrides)


@pytest.mark.parametrize("visible, count", [("", 0), ("-1", 0), ("0", 1), ("0,3", 2)])
def test_cuda_visible_devices_decides_the_count(monkeypatch, visible, count):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert local_gpu_count() == count


def test_cuda_runs_need_a_visible_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    require_devices(_cfg("train"))  # CPU: nothing to check
    with pytest.raises(InputError, match=r"^compute.device=cuda: no CUDA device is visible here"):
        require_devices(_cfg("train", "compute=gpu_vllm"))
    require_devices(_cfg("infer", "infer.backend=vllm"))  # vLLM not installed: the backend says so itself
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else
                        real_find_spec(name, *a))  # a `[gpu]` install on a machine without CUDA
    with pytest.raises(InputError, match=r"^infer.backend=vllm: no CUDA device"):
        require_devices(_cfg("infer", "infer.backend=vllm"))
    # Stage-A / evaluation on Ray: the actors need the GPUs, wherever the cluster is (infer.ray_address)
    require_devices(_cfg("infer", "compute=gpu", "infer.workers=2", "infer.ray_address=auto"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a GPU node (or a Ray job's assigned GPU)
    require_devices(_cfg("train", "compute=gpu"))
    require_devices(_cfg("infer", "infer.backend=vllm"))


@pytest.mark.parametrize("module, override", [("bbuqc.train", "compute=gpu"), ("bbuqc.infer", "compute=gpu"),
                                              ("bbuqc.evaluate", "compute=gpu")])
def test_the_command_exits_2_with_one_line_and_writes_nothing(tmp_path, module, override):
    run_dir = tmp_path / "run"
    proc = run_cli(module, override, f"hydra.run.dir={run_dir}", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and "no CUDA device is visible here" in errors[0]
    assert not run_dir.exists()
