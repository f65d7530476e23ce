"""Wall time of one 4-job sweep: the Ray launcher with 2 parallel workers against the basic
(sequential, in-process) launcher, same jobs, same invocation.

The sweep is `experiment=sweep_smoke` (2 header weights x 2 LoRA K, one short GRPO step each on
the tiny model, W&B offline). A single training run first builds the tiny model and synthetic
data into the cache and warms the file cache, so neither launcher pays for that. Each sweep
runs in its own process, timed from start to exit, and must finish with 4 completed jobs.
Writes `outputs/bench/sweep.json` {basic_s, ray_s, ratio, goal}. Goal: ray / basic <= 0.65.

The basic launcher runs every job in the sweep's own process, so it pays the imports (torch,
transformers, ms-swift) once; each Ray worker pays them again, in parallel, after starting
Ray. Every job trains with one torch thread (OMP_NUM_THREADS=1, both launchers), so 2
workers can use the 2 cores the basic launcher leaves half idle; `--steps` (default 60) makes
the training, not the fixed start-up, most of each job, as in any real sweep.

    python benchmarks/bench_sweep.py [--steps 60] [--repeats 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.65
WORKERS = 2
SWEEP = ["experiment=sweep_smoke"]
LAUNCHERS = {
    "basic": [],
    # a fresh local Ray instance (never a cluster already running here) with 2 CPU workers
    "ray": ["hydra/launcher=ray", "hydra.launcher.ray.init.address=local", f"hydra.launcher.ray.init.num_cpus={WORKERS}"],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["OMP_NUM_THREADS"] = "1"  # one core per job: what "2 parallel workers" means on 2 cores
    env.pop("RAY_ADDRESS", None)
    return env


def _run(args: list[str], log: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "bbuqc.train", *args], cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT
        )
    return time.perf_counter() - start, proc.returncode


def _completed(sweep_dir: Path) -> int:
    summary = sweep_dir / "sweep_summary.json"
    if not summary.is_file():
        return 0
    return json.loads(summary.read_text())["counts"].get("completed", 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="GRPO steps per job")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per launcher (alternating); the best counts")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "sweep.json")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folders (printed)")
    args = parser.parse_args(argv)

    sweep = [*SWEEP, f"train.max_steps={args.steps}", f"train.save_steps={args.steps}"]
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    print(f"warm-up run (builds the tiny model and data on first use) in {work}", flush=True)
    warm_s, rc = _run([*sweep, f"hydra.run.dir={work / 'warmup'}"], work / "warmup.log")
    if rc:
        print(f"error: the warm-up run failed (exit {rc}); see {work / 'warmup.log'}", file=sys.stderr)
        return 1

    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    order = list(LAUNCHERS)
    for rep in range(args.repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            sweep_dir = work / f"{name}-{rep}"
            seconds, rc = _run(["-m", *sweep, *LAUNCHERS[name], f"hydra.sweep.dir={sweep_dir}"], work / f"{name}-{rep}.log")
            done = _completed(sweep_dir)
            print(f"{name:>5} #{rep}: {seconds:6.1f} s, {done}/4 jobs completed, exit {rc}", flush=True)
            if rc or done != 4:
                print(f"error: the {name} sweep did not complete its 4 jobs; see {work / f'{name}-{rep}.log'}", file=sys.stderr)
                return 1
            times[name].append(seconds)

    basic_s, ray_s = min(times["basic"]), min(times["ray"])
    result = {
        "basic_s": round(basic_s, 2),
        "ray_s": round(ray_s, 2),
        "ratio": round(ray_s / basic_s, 3),
        "goal": GOAL,
        "meets_goal": ray_s / basic_s <= GOAL,
        "jobs": 4,
        "ray_workers": WORKERS,
        "sweep": " ".join(sweep),
        "steps_per_job": args.steps,
        "warmup_s": round(warm_s, 2),
        "all_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews both
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"sweep folders kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
