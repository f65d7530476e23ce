"""The test-only kill hook (bbuqc/runtime/kill_point.py): BBUQC_TEST_KILL_AT=<point>:<n> ends the process with
SIGKILL at the n-th pass of that point, and nowhere else; unset, it does nothing."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from support import cli_env

from bbuqc.runtime.kill_point import ENV

PASSES = """
from bbuqc.runtime.kill_point import kill_point
for i in range(1, 4):
    kill_point("other")
    kill_point("jsonl-append")
    print(i, flush=True)
"""


@pytest.mark.parametrize("spec, code, printed", [
    (None, 0, "1 2 3"),  # unset: nothing happens
    ("jsonl-append:2", -signal.SIGKILL, "1"),  # dies at the second pass, before printing 2
    ("checkpoint:1", 0, "1 2 3"),  # another point is never reached here
])
def test_the_process_dies_at_the_named_pass_only(spec, code, printed):
    env = {} if spec is None else {ENV: spec}
    done = subprocess.run([sys.executable, "-c", PASSES], env=cli_env({ENV: None, **env}), capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout.split()) == (code, printed.split())
