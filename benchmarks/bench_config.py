"""`python -m bbuqc.train --cfg job` against a minimal one-file Hydra app doing the same.

Whole-process wall time, median of several runs, side by side. Goal: ratio <= 1.5.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, wall_time, write_result

MINIMAL_APP = '''
import hydra
from omegaconf import OmegaConf

@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg):
    pass

if __name__ == "__main__":
    main()
'''


def main(runs: int = 15) -> None:
    ours_cmd = [sys.executable, "-m", "bbuqc.train", "reward=summary_full", "lora.last_k=4", "--cfg", "job"]
    baseline_runs, ours_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(MINIMAL_APP)
        (Path(tmp) / "config.yaml").write_text("lora:\n  last_k: 2\ntrain:\n  max_steps: 4\n")
        for _ in range(runs):  # alternating, so both see the same machine
            baseline_runs.append(wall_time([sys.executable, str(app), "--cfg", "job"], cwd=Path(tmp)))
            ours_runs.append(wall_time(ours_cmd, cwd=REPO))
    baseline, ours = statistics.median(baseline_runs), statistics.median(ours_runs)
    ratios = [o / b for o, b in zip(ours_runs, baseline_runs)]  # round by round: one noisy round cannot decide
    write_result("config", {
        "bbuqc_cfg_job_s": round(ours, 4), "minimal_hydra_app_s": round(baseline, 4),
        "ratio": round(ours / baseline, 3), "round_ratio_median": round(statistics.median(ratios), 3),
        "round_ratio_min": round(min(ratios), 3), "round_ratio_max": round(max(ratios), 3),
        "goal": 1.5, "runs": runs,
    })


if __name__ == "__main__":
    main()
