"""Helpers the evaluation's Ray workers import (the tests put this folder on their PYTHONPATH)."""

from __future__ import annotations

import os
import signal


def verdict_model_killed_once(cfg, marker: str):
    """The config's real verdict model, except that the first ``answer`` call of the whole run
    (whichever Ray actor makes it) SIGKILLs its own process, as an OOM kill would."""
    from bbuqc.stage_b.generate import load_verdict_model

    real = load_verdict_model(cfg)

    class KilledOnce:
        def answer(self, batch_of_messages, n_samples):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return real.answer(batch_of_messages, n_samples)
            os.kill(os.getpid(), signal.SIGKILL)

    return KilledOnce()
