"""`hydra/launcher=slurm`: Hydra's submitit SLURM launcher, with a requeued job resuming by itself.

submitit sends the job a signal (USR2) `signal_delay_s` before its time limit, or when SLURM preempts
it, and calls the submitted callable's `checkpoint` method: what it returns is what gets requeued.
Hydra's launcher (hydra_plugins.hydra_submitit_launcher) requeues the same call, so training would
start again from step 0. Here the requeued call is marked: it runs with BBUQC_REQUEUED=1, and the
training runner then resumes as with `train.resume_from=auto` (bbuqc.training.checkpoints), from the
latest complete checkpoint of the same run folder, skipping one the signal interrupted. The overrides
are left alone on purpose: they name the job's folder (hydra.job.override_dirname), so changing them
would requeue the job into a new, empty folder.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

REQUEUED_ENV = "BBUQC_REQUEUED"


class ResumeWhenRequeued:
    """Mixin for a submitit callable: its requeued copy runs with BBUQC_REQUEUED=1."""

    requeued = False

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        again = copy.copy(self)
        again.requeued = True
        return submitit.helpers.DelayedSubmission(again, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.requeued:
            os.environ[REQUEUED_ENV] = "1"
        return super().__call__(*args, **kwargs)


class NodeZeroWritesTheJob:
    """Mixin for Hydra's submitit launcher: a job of several nodes (`hydra.launcher.nodes`) runs the callable
    once per node. Node 0 runs the job as Hydra does (its folder, records, the run); another node only starts
    its training processes (bbuqc/runtime/nodes.py), so the job folder has one writer. Hydra reads node 0's
    result only."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict) -> Any:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_nodes <= 1 or env.node == 0:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        from pathlib import Path

        from hydra.core.hydra_config import HydraConfig
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals
        from omegaconf import OmegaConf, open_dict

        from bbuqc.runtime.nodes import launch

        # the job's config as the launcher composes it for node 0 (hydra_submitit_launcher's __call__)
        Singleton.set_state(singleton_state)
        setup_globals()
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        with open_dict(cfg.hydra.job) as job:
            job.id = env.job_id
            job.num = job_num
        HydraConfig.instance().set_config(cfg)
        job_dir = Path(str(OmegaConf.select(cfg, job_dir_key))) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        if cfg.hydra.job.config_name != "train":
            return None  # only training spans nodes; node 0 runs anything else alone
        code = launch("bbuqc.train", cfg.hydra, cfg.compute, job_dir)
        if code:
            raise RuntimeError(f"node {env.node}: torch.distributed.run exited {code}")
        return None


class ResumingSlurmLauncher(NodeZeroWritesTheJob, ResumeWhenRequeued, SlurmLauncher):
    pass
