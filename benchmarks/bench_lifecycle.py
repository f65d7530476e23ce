"""The lifecycle benchmark: `python -m bbuqc.demo` (make demo) end to end for two training seeds, every figure
and the wall time of each stage, to outputs/bench/lifecycle.json.

Within a demo the summary and verdict chains run side by side (one core each), so a stage's time is its time
beside the other chain. BBUQC_LIFECYCLE_SEEDS (default 42,7) names the seeds (`python -m bbuqc.demo --seed`);
BBUQC_LIFECYCLE_QUICK=1 runs the scaled-down demo instead (a smoke check; its figures mean nothing);
BBUQC_LIFECYCLE_FROM=<demo folder>[,<demo folder>...] records demos that already ran (e.g. outputs/demo after
`make demo`) instead of running them.
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


def figures(metrics: dict, wall: float) -> dict:
    return {
        "seed": metrics.get("seed"),
        "wall_s": round(wall, 1),
        "stage_wall_s": metrics["timings_s"],
        "verdict": metrics["verdict"],
        "attribution": metrics.get("attribution", {}),
        "summary": {run: {k: v for k, v in figs.items()
                          if k in ("summary.format", "summary.parse_ok", "summary.header", "summary.content_f1", "step")}
                    for run, figs in metrics["summary"].items()},
        "stage_a": metrics["stage_a"],
        "targets": metrics["targets"],  # each met or not; a GRPO-over-SFT one with its headroom and whether it is reachable
        "checkpoints": {k: v for k, v in metrics.items() if k.endswith("_checkpoint")},
        # the CPU kernels and libraries the demo ran with (bbuqc/runtime/environment.py); a demo from before
        # it recorded them has none
        "environment": metrics.get("environment"),
    }


def main() -> None:
    quick = os.environ.get("BBUQC_LIFECYCLE_QUICK") == "1"
    existing = [p for p in os.environ.get("BBUQC_LIFECYCLE_FROM", "").split(",") if p]
    runs = []
    if existing:
        for folder in existing:
            metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
            runs.append(figures(metrics, metrics["timings_s"]["total"]))
    else:
        seeds = [int(s) for s in os.environ.get("BBUQC_LIFECYCLE_SEEDS", "42,7").split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            for seed in seeds:
                out = Path(tmp) / f"demo-seed{seed}"
                cmd = [sys.executable, "-m", "bbuqc.demo", "--out", str(out), "--seed", str(seed),
                       *(["--quick"] if quick else [])]
                start = time.perf_counter()
                subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
                wall = time.perf_counter() - start
                runs.append(figures(json.loads((out / "metrics.json").read_text(encoding="utf-8")), wall))
    from bbuqc.runtime.environment import describe

    write_result("lifecycle", {"source": existing or "fresh runs", "quick": quick, "runs": runs,
                               "cpu_count": os.cpu_count(), "environment": describe()})


if __name__ == "__main__":
    main()
