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


class ResumingSlurmLauncher(ResumeWhenRequeued, SlurmLauncher):
    pass
