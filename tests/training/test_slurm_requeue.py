"""`hydra/launcher=slurm`: a preempted / timed-out job is requeued by submitit and its requeued run
resumes (BBUQC_REQUEUED=1 -> train.resume_from=auto). The requeue goes through submitit's real
machinery, on its local executor."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.training.slurm import REQUEUED_ENV, ResumeWhenRequeued, ResumingSlurmLauncher

submitit = pytest.importorskip("submitit")


class Work:
    """Stands for Hydra's launcher call: the first run waits to be preempted, a requeued one reports."""

    def __call__(self, marker: str) -> str:
        if not Path(marker).exists():
            Path(marker).write_text("started")
            time.sleep(120)  # preempted long before this
            return "not preempted"
        return os.environ.get(REQUEUED_ENV, "unset")


class Job(ResumeWhenRequeued, Work):
    pass


@pytest.mark.slow  # a real time limit (4 s, signalled at 2 s): on a loaded machine the child may not have started
def test_a_timed_out_job_is_requeued_and_runs_as_a_resume(tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the child imports no test module
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit", max_num_timeout=1)
    # a 4 s time limit, warned 2 s before: the first run is signalled while it works, as on SLURM
    executor.update_parameters(timeout_min=4 / 60, signal_delay_s=2)
    job = executor.submit(Job(), str(tmp_path / "started"))
    assert job.result() == "1"  # the requeued copy ran, with BBUQC_REQUEUED=1
    assert "timed-out" in job.stdout()


def test_the_slurm_launcher_config_builds_the_resuming_launcher():
    cfg = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "bbuqc.training.slurm.ResumingSlurmLauncher"
    assert launcher.max_num_timeout > 0
    assert issubclass(ResumingSlurmLauncher, ResumeWhenRequeued)


def test_a_requeued_job_resumes_its_own_latest_checkpoint(tmp_path, monkeypatch):
    from omegaconf import OmegaConf
    from test_checkpoints import complete_checkpoint

    from bbuqc.training.checkpoints import resume_in_place

    cfg = OmegaConf.create({"train": {"resume_from": None}, "chord": {"enabled": False}, "algo": {"name": "grpo"}})
    assert resume_in_place(cfg, tmp_path) is None  # not requeued: resume_from=null starts fresh
    complete_checkpoint(tmp_path / "checkpoint-2")
    monkeypatch.setenv(REQUEUED_ENV, "1")
    assert resume_in_place(cfg, tmp_path) == tmp_path / "checkpoint-2"
    assert cfg.train.resume_from == str(tmp_path / "checkpoint-2")
