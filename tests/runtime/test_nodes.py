"""Multi-node training's layout (compute.nnodes / node_rank / master_addr / master_port, or SLURM's), its
torchrun flags (ms-swift's launcher's), and the bad layouts refused before anything loads (issue 31)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import compose, error_lines, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.errors import InputError
from bbuqc.runtime.nodes import NodeLayout, node_layout, require_rendezvous, torchrun_command, worker_overrides

REPO = Path(__file__).resolve().parents[2]
SLURM_JOB = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
             "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}


def _cfg(*overrides: str):
    return compose("train", overrides)


@pytest.fixture
def no_slurm(monkeypatch):
    for key in (*SLURM_JOB, "BBUQC_WORKER"):
        monkeypatch.delenv(key, raising=False)


def test_config_layout_gives_ms_swifts_torchrun_flags(no_slurm, monkeypatch):
    cfg = _cfg("compute.nproc_per_node=2", "compute.nnodes=3", "compute.node_rank=1", "compute.master_addr=10.1.2.3",
               "compute.master_port=29617")
    layout = node_layout(cfg.compute)
    assert layout == NodeLayout(3, 1, "10.1.2.3", 29617, "compute")
    # ms-swift's own launcher (`NNODES=3 NODE_RANK=1 ... swift rlhf`) turns its environment into these flags
    from swift.cli.main import get_torchrun_args

    for key, value in {"NPROC_PER_NODE": "2", "MASTER_PORT": "29617", "NNODES": "3", "NODE_RANK": "1",
                       "MASTER_ADDR": "10.1.2.3"}.items():
        monkeypatch.setenv(key, value)
    ours = torchrun_command(2, layout)[3:]
    assert dict(zip(ours[::2], ours[1::2])) == dict(zip(get_torchrun_args()[::2], get_torchrun_args()[1::2]))


def test_one_node_gets_a_free_port(no_slurm):
    layout = node_layout(_cfg("compute.nproc_per_node=2").compute)
    assert layout == NodeLayout() and torchrun_command(2, layout)[3:] == ["--nproc_per_node", "2", "--standalone"]


def test_a_slurm_job_of_several_nodes_gives_the_layout(no_slurm, monkeypatch):
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    cfg = _cfg("compute.nproc_per_node=8")
    layout = node_layout(cfg.compute)
    assert layout == NodeLayout(2, 1, "gpu07", None, "SLURM") and layout.rendezvous == ("gpu07", 29500)
    assert torchrun_command(8, layout)[5:] == ["--master_port", "29500", "--nnodes", "2", "--node_rank", "1",
                                               "--master_addr", "gpu07"]
    # the workers get it spelled out, so each checks its batch sizes against 16 processes
    hydra = OmegaConf.create({"overrides": {"task": ["compute.nproc_per_node=8", "hydra.run.dir=/elsewhere"]},
                              "job_logging": {"handlers": {"file": {}}}})
    assert worker_overrides(hydra, Path("/runs/a"), node_layout(cfg.compute)) == [
        "compute.nproc_per_node=8", "compute.nnodes=2", "compute.node_rank=1", "compute.master_addr=gpu07",
        "compute.master_port=29500", "hydra.run.dir=/runs/a", "hydra.output_subdir=null",
        "hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/rank${oc.env:RANK}.log"]
    with pytest.raises(InputError, match=r"^compute.nnodes=2: this SLURM job has 2 nodes"):
        require_rendezvous(_cfg("compute.nnodes=2", "compute.master_addr=gpu07"), "train")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(InputError, match=r"^hydra.launcher.nodes=2: hydra.launcher.tasks_per_node must be 1"):
        require_rendezvous(cfg, "train")


@pytest.mark.parametrize("overrides, line", [
    (["compute.nnodes=0"], "compute.nnodes=0: expected an integer >= 1"),
    (["compute.nnodes=2", "compute.node_rank=2", "compute.master_addr=127.0.0.1"],
     "compute.node_rank=2: expected 0 <= node_rank < compute.nnodes=2"),
    (["compute.nnodes=2"], "compute.master_addr: required with compute.nnodes=2"),
    (["compute.node_rank=1"], "compute.node_rank=1: needs compute.nnodes"),
    (["compute.nnodes=2", "compute.master_addr=h", "compute.master_port=70000"], "compute.master_port=70000"),
    (["compute.nnodes=2", "compute.master_addr=127.0.0.1", "train.per_device_batch_size=4",
      "train.generation_batch_size=4"], "train.generation_batch_size=4: must be divisible by train.per_device_batch_size=4 "
     "x compute.nproc_per_node=1 x compute.nnodes=2"),
])
def test_bad_layouts_are_named(overrides, line):
    found = problems(_cfg(*overrides), "train")
    assert len(found) == 1 and found[0].startswith(line), found


def test_several_nodes_need_one_named_run_folder(no_slurm):
    layout = ["compute.nnodes=2", "compute.master_addr=127.0.0.1"]
    # with the hydra node, as the callback sees it
    dated = compose("train", layout, return_hydra_config=True)
    named = compose("train", [*layout, "hydra.run.dir=/shared/run"], return_hydra_config=True)
    with pytest.raises(InputError, match=r"^compute.nnodes=2: every node works in one run folder; set hydra.run.dir="):
        require_rendezvous(dated, "train")
    require_rendezvous(named, "train")


@pytest.mark.parametrize("overrides, line", [
    (["compute.nnodes=0"], "error: compute.nnodes=0: expected an integer >= 1"),
    (["compute.nnodes=2", "compute.node_rank=2", "compute.master_addr=127.0.0.1"],
     "error: compute.node_rank=2: expected 0 <= node_rank < compute.nnodes=2"),
    # .invalid never resolves (RFC 2606); without DNS the lookup fails or is given up after 5 s
    (["compute.nnodes=2", "compute.master_addr=node0.bbuqc.invalid"],
     "error: compute.master_addr=node0.bbuqc.invalid: does not resolve to an address from this node"),
])
def test_the_command_exits_2_with_one_line_before_anything_is_written(tmp_path, overrides, line):
    run_dir = tmp_path / "run"
    proc = run_cli("train", *overrides, f"hydra.run.dir={run_dir}", env={"BBUQC_WORKER": None})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    assert not run_dir.exists()
