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


def _require(command: str, *overrides: str) -> None:
    require_devices(_cfg(command, *overrides), command)


def test_cuda_runs_need_a_visible_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _require("train")  # CPU: nothing to check
    with pytest.raises(InputError, match=r"^compute.device=cuda: no CUDA device is visible here"):
        _require("train", "compute=gpu_vllm")
    _require("infer", "infer.backend=vllm")  # vLLM not installed: the backend says so itself
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else
                        real_find_spec(name, *a))  # a `[gpu]` install on a machine without CUDA
    with pytest.raises(InputError, match=r"^infer.backend=vllm: no CUDA device"):
        _require("infer", "infer.backend=vllm")
    # Stage-A / evaluation on Ray: the actors need the GPUs, wherever the cluster is (<node>.ray_address)
    _require("infer", "compute=gpu", "infer.workers=2", "infer.ray_address=auto")
    _require("evaluate", "compute=gpu", "evaluate.ray_address=auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a GPU node (or a Ray job's assigned GPU)
    _require("train", "compute=gpu")
    _require("infer", "infer.backend=vllm")


def test_only_the_commands_own_node_counts(monkeypatch):
    """Every command's config carries both `infer` and `evaluate`: the other command's settings neither refuse
    a run nor let a CUDA run past the check."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else
                        real_find_spec(name, *a))
    _require("infer", "evaluate.backend=vllm")  # Stage-A on HF: evaluation's backend is not its business
    _require("evaluate", "infer.backend=vllm")
    _require("train", "infer.backend=vllm", "evaluate.backend=vllm")
    # Stage-A's Ray settings do not carry an evaluation (or a training run) past the CUDA check
    for command in ("evaluate", "train"):
        with pytest.raises(InputError, match=r"^compute.device=cuda: no CUDA device"):
            _require(command, "compute=gpu", "infer.workers=2", "infer.ray_address=auto")


@pytest.mark.parametrize("module, override", [("bbuqc.train", "compute=gpu"), ("bbuqc.infer", "compute=gpu"),
                                              ("bbuqc.evaluate", "compute=gpu")])
def test_the_command_exits_2_with_one_line_and_writes_nothing(tmp_path, module, override):
    run_dir = tmp_path / "run"
    proc = run_cli(module, override, f"hydra.run.dir={run_dir}", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and "no CUDA device is visible here" in errors[0]
    assert not run_dir.exists()


@pytest.mark.parametrize("node", ["infer", "evaluate"])
def test_a_node_runs_on_ray_with_several_workers_or_a_named_cluster(node):
    from bbuqc.runtime.ray_pool import on_ray

    assert not on_ray(_cfg(node), node)
    assert on_ray(_cfg(node, f"{node}.workers=2"), node)
    assert on_ray(_cfg(node, f"{node}.ray_address=auto"), node)  # one worker, on the cluster's GPU
    other = "evaluate" if node == "infer" else "infer"
    assert not on_ray(_cfg(node, f"{other}.workers=2"), node)
