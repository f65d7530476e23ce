"""The environment a figure is recorded with names the CPU kernels torch really uses: the one thing that makes the
same code give other weights on another machine (bbuqc/runtime/environment.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _describe(**env: str) -> dict:
    code = "import json; from bbuqc.runtime.environment import describe; print(json.dumps(describe()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=True)
    return json.loads(proc.stdout)


def test_the_recorded_kernels_follow_what_torch_was_told_to_use():
    lowered = _describe(ATEN_CPU_CAPABILITY="default")
    assert lowered["torch_cpu_kernels"] == "DEFAULT"
    assert lowered["versions"]["torch"] and lowered["versions"]["ms-swift"] and lowered["cpu"]


def test_one_line_names_the_kernels_and_versions():
    from bbuqc.runtime.environment import describe, one_line

    env = describe()
    line = one_line(env)
    assert f"torch CPU kernels {env['torch_cpu_kernels']}" in line
    assert f"torch {env['versions']['torch']}" in line and f"ms-swift {env['versions']['ms-swift']}" in line
    assert "\n" not in line
