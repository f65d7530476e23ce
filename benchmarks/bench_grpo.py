"""GRPO step time of `python -m bbuqc.train` against a bare `swift rlhf` with the same arguments.

Both train the same tiny model on the same rows with the same rewards; the bare run gets
the arguments bbuqc passed to ms-swift (the run's args.json) and the reward classes through
ms-swift's own `external_plugins`. Step time = median of `step_time` over the logged steps
after the first (warm-up). Rounds alternate which side runs first; the figure is the median and the
min-max of the per-round ratios. Goal: median ratio <= 1.05.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, wall_time, write_result

STEPS = 8
OVERRIDES = ["task=verdict", "reward=verdict", f"train.max_steps={STEPS}", "train.save_steps=1000", "logger=none"]


def step_times(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    return [r["step_time"] for r in rows if "step_time" in r][1:]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_swift_config(run_dir: Path, out_dir: Path) -> Path:
    """Every ms-swift argument bbuqc set (the keys of bbuqc.training.args.OWNED, with the values ms-swift
    recorded in the run's args.json), pointed at a new output dir: the bare run is the same training."""
    from bbuqc.training.args import OWNED

    args = json.loads((run_dir / "args.json").read_text())
    # unset ones (None, []) are left to the CLI's defaults: it cannot parse an empty list
    kw = {k: args[k] for k in OWNED if k in args and args[k] not in (None, [])}
    plugin = out_dir / "bbuqc_rewards_plugin.py"
    plugin.write_text(
        "from bbuqc.training.rewards import register_rewards\n"
        f"register_rewards({kw['reward_funcs']!r})\n"
    )
    kw.update(output_dir=str(out_dir / "run"), external_plugins=[str(plugin)])
    kw["report_to"] = kw.get("report_to") or ["none"]  # the CLI cannot take an empty list
    config = out_dir / "swift_args.json"
    config.write_text(json.dumps(kw, ensure_ascii=False))
    return config


def main(rounds: int = 5) -> None:
    """`rounds` rounds; each runs both, in alternating order (bbuqc first in even rounds, bare first in
    odd ones), so drift in machine load hits both sides alike. The figure is the per-round ratio of the
    median step times: its median and its min-max over the rounds (the spread says how far to trust it)."""
    from bbuqc.runtime.offline import DEFAULTS

    swift = str(Path(sys.executable).parent / "swift")
    # the environment bbuqc.train gives itself (offline, TOKENIZERS_PARALLELISM=false: on a small machine
    # the tokenizer's threads alone halve the step rate), so the figure is bbuqc's overhead, not an env's
    bare_env = {**DEFAULTS, "PYTHONPATH": str(REPO)}
    ratios, ours_steps, bare_steps, ours_wall, bare_wall, ours_cpu, bare_cpu = [], [], [], [], [], [], []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        # the bare run needs bbuqc's args.json, so one untimed bbuqc run provides the arguments (and warms caches)
        ref_dir = Path(tmp) / "reference"
        wall_time([sys.executable, "-m", "bbuqc.train", *OVERRIDES, f"hydra.run.dir={ref_dir}"])
        for i in range(rounds):
            ours_dir, bare_dir = Path(tmp) / f"bbuqc{i}", Path(tmp) / f"bare{i}"
            bare_dir.mkdir()
            config = bare_swift_config(ref_dir, bare_dir)
            ours_cmd = [sys.executable, "-m", "bbuqc.train", *OVERRIDES, f"hydra.run.dir={ours_dir}"]
            bare_cmd = [swift, "rlhf", str(config)]
            for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                before = _children_cpu()
                if side == 0:
                    ours_wall.append(wall_time(ours_cmd))
                    ours_cpu.append(_children_cpu() - before)
                else:
                    bare_wall.append(wall_time(bare_cmd, env=bare_env))
                    bare_cpu.append(_children_cpu() - before)
            ours, bare = statistics.median(step_times(ours_dir)), statistics.median(step_times(bare_dir / "run"))
            ours_steps.append(ours)
            bare_steps.append(bare)
            ratios.append(ours / bare)
            print(f"round {i + 1}/{rounds}: bbuqc {ours:.4f} s/step, bare {bare:.4f} s/step, ratio {ours / bare:.3f}",
                  flush=True)
    write_result("grpo_overhead", {
        "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3), "ratios": [round(r, 3) for r in ratios], "goal": 1.05,
        "bbuqc_step_s": [round(x, 4) for x in ours_steps], "bare_swift_step_s": [round(x, 4) for x in bare_steps],
        "steps_per_run": STEPS, "rounds": rounds,
        # CPU seconds of each whole command (startup and model load included): far less sensitive than
        # step times to other jobs on a shared machine, whose load average is recorded alongside
        "cpu_ratio_median": round(statistics.median(o / b for o, b in zip(ours_cpu, bare_cpu)), 3),
        "bbuqc_cpu_s": [round(c, 1) for c in ours_cpu], "bare_swift_cpu_s": [round(c, 1) for c in bare_cpu],
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
        "bbuqc_wall_s": [round(w, 1) for w in ours_wall], "bare_swift_wall_s": [round(w, 1) for w in bare_wall],
    })


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
