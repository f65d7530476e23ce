"""Stage-A's second chance for an unusable summary (``infer.resample``, docs/stage_a.md "Resampling").

A summary model that writes broken JSON for an image usually writes a usable summary when it is sampled
again: the demo's summary model, greedy on 480 images, wrote 15 | 4 answers that were not JSON (seeds 42 | 7),
and for 14 | 4 of them some of 16 samples at temperature 1 was (docs/demo.md, fourth-session probes). An
unusable summary costs the whole group its verdict, so the few images that need it are sampled again, one at
a time, until an answer is usable (:func:`bbuqc.protocol.summary_usable`) or the tries run out; then the
first (greedy) answer stays, as without resampling.

Each try is seeded by the image's bytes, ``infer.seed`` and the try's number, not by the process's random
state: a resumed run (which generates a group again whole) and a Ray worker write the same text as an
uninterrupted run in one process, whatever the batch the image came in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.missions import Mission
from bbuqc.protocol import summary_usable

from .backends import Backend, GenerationSettings


@dataclass(frozen=True)
class Resample:
    attempts: int = 0  # 0: off
    temperature: float = 1.0
    seed: int = 0

    def identity(self) -> dict:
        """The resume identity's entry (bbuqc/models/identity.py): none when off, so that files written
        before resampling existed, or with it off, resume as before."""
        return {"resample": {"attempts": self.attempts, "temperature": self.temperature, "seed": self.seed}} \
            if self.attempts else {}


NO_RESAMPLING = Resample()


def resample_of(cfg: DictConfig) -> Resample:
    """``infer.resample``, ``infer.resample_temperature`` and ``infer.seed``."""
    return Resample(int(cfg.infer.resample), float(cfg.infer.resample_temperature), int(cfg.infer.seed))


def try_seed(image: Path, seed: int, attempt: int) -> int:
    """The seed of try ``attempt`` (1, 2, ...) for ``image``: from its bytes (not its path: a Ray worker sees
    absolute paths), ``seed`` and the try, below 2**31 (what every backend's seed accepts)."""
    h = hashlib.sha256(image.read_bytes())
    h.update(f"\0{seed}\0{attempt}".encode())
    return int.from_bytes(h.digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class Outcome:
    text: str
    tries: int = 0  # samples drawn for this image
    fixed: bool = False  # an unusable first answer was replaced by a usable sample


def usable_summary(backend: Backend, image: Path, mission: Mission, settings: GenerationSettings, first: str,
                   resample: Resample) -> Outcome:
    """``first`` when it is usable or resampling is off; else the first usable sample of up to
    ``resample.attempts`` tries, or ``first`` when none is. A try that raises propagates (the batching loop
    then fails the image's group, as for any failed generation)."""
    if not resample.attempts or summary_usable(first):
        return Outcome(first)
    for attempt in range(1, resample.attempts + 1):
        sampled = replace(settings, temperature=resample.temperature, seed=try_seed(image, resample.seed, attempt))
        [text] = backend.generate([image], mission, sampled)
        if summary_usable(text):
            return Outcome(text, attempt, True)
    return Outcome(first, resample.attempts)
