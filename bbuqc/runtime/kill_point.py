"""Test-only: a process SIGKILLs itself at a named point, so that kill-and-resume tests are deterministic.

``BBUQC_TEST_KILL_AT=<point>:<n>`` makes the n-th call of ``kill_point(<point>)`` in this process end it
with SIGKILL, as an OOM kill or a scheduler's would, at exactly that point. Unset (always, outside tests)
it does nothing. A test that polled a file and then killed from outside could lose the race to a job
that finished first; this cannot. The points:

- ``jsonl-append``: a line of a resumable JSONL (Stage-A output, predictions.jsonl) is durable on disk;
- ``checkpoint``: the trainer has saved a checkpoint (its ``on_save``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "BBUQC_TEST_KILL_AT"
_passed: Counter[str] = Counter()


def kill_point(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, n = spec.rpartition(":")
    if name != point:
        return
    _passed[point] += 1
    if _passed[point] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
