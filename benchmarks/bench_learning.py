"""Learning check: GRPO + CHORD on the verdict task with the tiny text model, on CPU.

Evidence that rewards, weights and CHORD are wired right: the per-step means of
`verdict.format` and `verdict.label` must rise. Records the curve (CSV + PNG) and the
first and last 20-step means.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import OUT, wall_time, write_result

from bbuqc.io import run_folder

STEPS = int(os.environ.get("BBUQC_LEARNING_STEPS", "400"))
# the experiment holds the settings (experiments/verdict_chord.yaml); the bench only shortens it
OVERRIDES = ["experiment=verdict_chord", "logger=none", f"train.max_steps={STEPS}", f"train.save_steps={STEPS}"]
METRICS = ("verdict.format", "verdict.label", "verdict.consistency")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        # one torch thread: on 2 shared cores two threads contend and a step gets ~10x slower
        wall = wall_time([sys.executable, "-m", "bbuqc.train", *OVERRIDES, f"hydra.run.dir={run_dir}"],
                         env={"OMP_NUM_THREADS": "1"})
        rows = run_folder.log_rows(run_dir)
    steps = [r for r in rows if f"rewards/{METRICS[0]}/mean" in r]
    curve = [{"step": i + 1, "reward": r["reward"], "chord_mu": r.get("chord/mu"),
              **{m: r[f"rewards/{m}/mean"] for m in METRICS}} for i, r in enumerate(steps)]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "learning_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    _plot(curve, OUT / "learning_curve.png")

    def window(metric: str, part: slice) -> float:
        return round(statistics.mean(p[metric] for p in curve[part]), 4)

    write_result("learning", {
        "steps": len(curve), "wall_s": round(wall, 1),
        **{f"{m}_first20": window(m, slice(0, 20)) for m in METRICS},
        **{f"{m}_last20": window(m, slice(-20, None)) for m in METRICS},
        "reward_first20": window("reward", slice(0, 20)), "reward_last20": window("reward", slice(-20, None)),
        "overrides": " ".join(OVERRIDES),
    })


def _plot(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    steps = [p["step"] for p in curve]
    for metric in METRICS:
        values = [p[metric] for p in curve]
        smooth = [statistics.mean(values[max(0, i - 9): i + 1]) for i in range(len(values))]
        ax.plot(steps, smooth, label=f"{metric} (10-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("reward mean")
    ax.set_title("GRPO + CHORD, verdict task, tiny text model (CPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
