"""Multi-node training on CPU with gloo (issue 31): two "nodes" of one process each on localhost train exactly
as one node of two processes (same world size, same data order), and every file of the shared run folder has
one writer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
# SFT learns from the first step (GRPO on the tiny twin often has no signal), and the held-out validation gives figures
RUN = ["task=verdict", "algo=sft", "train.max_steps=2", "train.save_steps=2", "data.val_fraction=0.34",
       "train.eval_steps=2"]
# every Python-level open for writing, per process, under the run folder (the audit hook of PEP 578)
AUDIT = """
import os, sys
_root, _log = os.environ["AUDIT_ROOT"], os.environ["AUDIT_LOG"]
def _hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(_root):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            with open(f"{_log}/{os.getpid()}.txt", "a") as f:
                f.write(os.path.relpath(args[0], _root) + "\\n")
sys.addaudithook(_hook)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path, run_dir: Path, name: str) -> dict:
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(AUDIT)
    log = tmp / f"writes-{name}"
    log.mkdir()
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": path,
            "AUDIT_ROOT": str(run_dir), "AUDIT_LOG": str(log)}


def _writers(tmp: Path, name: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for f in (tmp / f"writes-{name}").iterdir():
        for path in f.read_text().splitlines():
            out[path].add(f.stem)
    return out


def _steps(run_dir: Path) -> list[dict]:
    keep = ("loss", "grad_norm", "learning_rate", "global_step/max_steps")
    rows = [json.loads(x) for x in (run_dir / "logging.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in keep if k in r} for r in rows if "loss" in r or any(k.startswith("val/") for k in r)]


def _figures(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "validation.jsonl").read_text().splitlines()]


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and "wandb" not in p.parts}


@pytest.fixture(scope="module")
def runs(session_cache, tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("nodes")
    one, two = tmp / "one-node", tmp / "two-nodes"
    proc = subprocess.run([sys.executable, "-m", "bbuqc.train", *RUN, "compute.nproc_per_node=2",
                           f"hydra.run.dir={one}"], cwd=REPO, capture_output=True, text=True,
                          env=_env(tmp, one, "one"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    layout = ["compute.nnodes=2", "compute.master_addr=127.0.0.1", f"compute.master_port={_free_port()}",
              f"hydra.run.dir={two}"]
    env = _env(tmp, two, "two")
    nodes = [subprocess.Popen([sys.executable, "-m", "bbuqc.train", *RUN, *layout, f"compute.node_rank={rank}"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    for node in nodes:
        out, _ = node.communicate(timeout=1200)
        assert node.returncode == 0, out[-4000:]
    return tmp, one, two


@pytest.mark.slow
def test_two_nodes_train_as_one_node_of_two_processes(runs):
    _, one, two = runs
    a, b = (load_file(str(d / "checkpoint-2" / "adapter_model.safetensors")) for d in (one, two))
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert any(not torch.all(a[k] == 0) for k in a if "lora_B" in k)  # it learned: lora_B starts at zero
    assert _steps(one) == _steps(two) and _steps(one)
    assert _figures(one) == _figures(two) and _figures(one)[0]["step"] == 2
    assert _files(one) == _files(two)
    assert {"rank0.log", "rank1.log", "cli.log", "run_summary.json", "checkpoint-2/rng_state_1.pth"} <= _files(two)
    (wandb_run,) = (two / "wandb").glob("offline-run-*")  # one W&B run, opened by global rank 0


@pytest.mark.slow
def test_every_file_of_the_run_folder_has_one_writer(runs):
    tmp, _, two = runs
    writers = _writers(tmp, "two")
    assert {"data/train.jsonl", ".hydra/config.yaml", "cli.log", "logging.jsonl", "rank1.log"} <= writers.keys()
    assert {p: w for p, w in writers.items() if len(w) > 1} == {}
    # node 1's launcher wrote nothing: every writer is node 0's launcher or a worker
    config = (two / ".hydra" / "overrides.yaml").read_text()
    assert "compute.node_rank=0" in config and "compute.node_rank=1" not in config
