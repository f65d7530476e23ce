"""The lifecycle benchmark: `python -m bbuqc.demo` (make demo) end to end, its figures and the wall time
of each stage, to outputs/bench/lifecycle.json.

The stages run one after another in one demo, so each stage's time is its time alone on this machine
(other agents' load aside). BBUQC_LIFECYCLE_QUICK=1 runs the scaled-down demo instead (a smoke check;
its figures mean nothing). BBUQC_LIFECYCLE_FROM=<demo folder> records a demo that already ran (e.g.
outputs/demo after `make demo`) instead of running one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write_result


def main() -> None:
    quick = os.environ.get("BBUQC_LIFECYCLE_QUICK") == "1"
    existing = os.environ.get("BBUQC_LIFECYCLE_FROM")
    if existing:
        metrics = json.loads((Path(existing) / "metrics.json").read_text(encoding="utf-8"))
        wall = metrics["timings_s"]["total"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "demo"
            cmd = [sys.executable, "-m", "bbuqc.demo", "--out", str(out), *(["--quick"] if quick else [])]
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
            wall = time.perf_counter() - start
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    result = {
        "source": existing or "fresh run",
        "quick": quick,
        "wall_s": round(wall, 1),
        "stage_wall_s": metrics["timings_s"],
        "verdict": metrics["verdict"],
        "summary": {k: v for k, v in metrics["summary"].items() if k in ("summary.format", "summary.parse_ok", "summary.header", "summary.content_f1", "step")},
        "stage_a": metrics["stage_a"],
        "targets": {k: {"value": t["value"], "target": t["target"], "met": t["met"]} for k, t in metrics["targets"].items()},
        "cpu_count": os.cpu_count(),
    }
    write_result("lifecycle", result)


if __name__ == "__main__":
    main()
