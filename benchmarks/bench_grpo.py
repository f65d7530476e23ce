"""GRPO overhead of `python -m bbuqc.train` against bare ms-swift with the same arguments, and the step
time of every tiny twin.

Both sides train the same tiny text model on the same rows (byte-identical `data/train.jsonl`) with the
same rewards, steps, logging and `report_to` (none on both sides: `logger=none` for bbuqc, so neither
opens W&B). The bare run gets every argument bbuqc passed to ms-swift (the keys of
`bbuqc.training.args.OWNED`, values from the run's args.json) and the reward classes through ms-swift's
own `external_plugins`; it is the process `swift rlhf <config.json>` launches (`swift/cli/rlhf.py` with
the config's flags), without the launcher process in front of it, which would add an interpreter and an
ms-swift import (~3 s) to the bare side only. Both get bbuqc's offline environment (bbuqc.runtime.offline).

`--rounds` rounds (default 5), alternating which side runs first. Per round: the ratio of the median
step time (ms-swift's `step_time`, steps after the first), of the whole command's wall time, of its "own"
wall time (wall minus the time its threads waited runnable for a CPU, from Linux schedstat: the other jobs'
share taken out), of its CPU seconds (children included: RUSAGE_CHILDREN deltas) and of the training loop's
own time (train_runtime minus the CPU wait inside it); the figures are the median, geometric mean and
min-max of the per-round ratios. Goal: median step-time ratio <= 1.05. The load average is recorded with
every run: on a small shared machine other jobs move step times far more than bbuqc does.

Then one run of each tiny twin (`model=<twin>`; VL twins on the summary task, text twins on the verdict
task) for its mean step time. Figures: outputs/bench/grpo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from common import REPO, write_result

STEPS = 12
TWIN_STEPS = 4
COMMON = ["train.save_steps=1000", "logger=none"]
OVERRIDES = ["task=verdict", "reward=verdict", f"train.max_steps={STEPS}", *COMMON]
# preset -> the task it runs (VL twins: summary rows with images; text twins: Stage-B verdicts)
TWINS = {
    "tiny_qwen2_vl": "summary",  # = model=tiny
    "tiny_qwen2_5_vl": "summary",
    "tiny_qwen3_vl": "summary",
    "tiny_text": "verdict",  # the overhead rounds' model: its step time comes from their bbuqc runs
    "tiny_qwen2_5": "verdict",
}
# args.json keys that name the run's own folders or the plugin path: they differ by construction
PATH_KEYS = {"output_dir", "logging_dir", "run_name", "training_args", "external_plugins", "report_to"}


def log_rows(run_dir: Path) -> list[dict]:
    from bbuqc.io.run_folder import log_rows as read_log

    return read_log(run_dir)


def step_times(run_dir: Path) -> list[float]:
    """ms-swift's per-step wall time for every logged step after the first (the first pays warm-up)."""
    return [r["step_time"] for r in log_rows(run_dir) if "step_time" in r][1:]


def train_runtime(run_dir: Path) -> float | None:
    return next((float(r["train_runtime"]) for r in log_rows(run_dir) if "train_runtime" in r), None)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree(root: int) -> list[int]:
    pids, i = [root], 0
    while i < len(pids):
        for task in _listdir(f"/proc/{pids[i]}/task"):
            try:
                pids += [int(c) for c in Path(f"/proc/{pids[i]}/task/{task}/children").read_text().split()]
            except (OSError, ValueError):
                pass
        i += 1
    return pids


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _sched(root: int, seen: dict) -> None:
    """Every thread of the process tree: (ns on a CPU, ns runnable but waiting for one) from schedstat."""
    for pid in _tree(root):
        for task in _listdir(f"/proc/{pid}/task"):
            try:
                on_cpu, waiting, _ = map(int, Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split())
            except (OSError, ValueError):
                continue
            seen[(pid, task)] = (on_cpu, waiting)


def timed_run(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Wall and CPU seconds (the command and every child it waited for) of one command, and how long its
    threads sat runnable waiting for a CPU (Linux schedstat, sampled every 0.2 s): on a shared machine that
    wait is the other jobs' doing, so `wall_s - cpu_wait_s` is the wall time the command itself took."""
    load = os.getloadavg()[0]
    seen: dict = {}
    cpu0, start = _children_cpu(), time.perf_counter()
    series: list[tuple[float, float]] = []  # (seconds since start, total CPU wait so far)
    train_end = None  # when ms-swift printed train_runtime (end of the training loop), to 0.2 s
    with log.open("w") as out, log.open() as reader:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            _sched(proc.pid, seen)
            now = time.perf_counter() - start
            series.append((now, sum(w for _, w in seen.values()) / 1e9))
            if train_end is None and "train_runtime" in reader.read():
                train_end = now
            time.sleep(0.2)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if proc.returncode:
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd[:6])} ...")
    wait = sum(w for _, w in seen.values()) / 1e9
    return {"wall_s": wall, "cpu_s": cpu, "cpu_wait_s": wait, "own_wall_s": wall - wait, "load_1min": load,
            "series": series, "train_end_s": train_end}


def own_train_s(timing: dict, runtime: float | None) -> float | None:
    """ms-swift's train_runtime minus the CPU wait inside the training loop (the window of `runtime`
    seconds ending when train_runtime was printed): the loop's time with the other jobs' share taken out."""
    series, end = timing.pop("series"), timing.pop("train_end_s")
    if runtime is None or end is None or not series:
        return None

    def wait_at(t: float) -> float:
        before = [w for s, w in series if s <= t]
        return before[-1] if before else 0.0

    return runtime - (wait_at(end) - wait_at(end - runtime))


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


def bare_swift_command(config: Path) -> list[str]:
    """What `swift rlhf <config.json>` runs (swift.cli.main: the JSON's keys as `--key value` flags, lists
    as several values, dicts as JSON), minus the launcher process."""
    argv = [sys.executable, str(Path(sysconfig.get_paths()["purelib"]) / "swift" / "cli" / "rlhf.py")]
    for key, value in json.loads(config.read_text()).items():
        argv.append(f"--{key}")
        if isinstance(value, list):
            argv += [str(v) for v in value]
        else:
            argv.append(json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value))
    return argv


def argument_differences(ours: Path, bare: Path) -> dict:
    """args.json keys whose values differ between the two runs (paths excluded): should be none that matter."""
    a, b = json.loads((ours / "args.json").read_text()), json.loads((bare / "args.json").read_text())
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if k not in PATH_KEYS and a.get(k) != b.get(k)}


def _spread(values: list[float | None]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {}
    return {"median": round(statistics.median(values), 3), "geomean": round(statistics.geometric_mean(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3), "per_round": [round(v, 3) for v in values]}


def overhead_rounds(tmp: Path, rounds: int) -> tuple[dict, list[float]]:
    from bbuqc.runtime.offline import DEFAULTS

    bbuqc = [sys.executable, "-m", "bbuqc.train", *OVERRIDES]
    # the bare run needs bbuqc's args.json, so one untimed bbuqc run provides the arguments (and warms caches)
    ref_dir = tmp / "reference"
    timed_run([*bbuqc, f"hydra.run.dir={ref_dir}"], tmp / "reference.log")
    runs: list[dict] = []
    ours_steps_all: list[float] = []
    for i in range(rounds):
        ours_dir, bare_root = tmp / f"bbuqc{i}", tmp / f"bare{i}"
        bare_root.mkdir()
        config = bare_swift_config(ref_dir, bare_root)
        bare_cmd, bare_dir = bare_swift_command(config), bare_root / "run"
        # the environment bbuqc.train gives itself (offline, TOKENIZERS_PARALLELISM=false) and what the
        # `swift` launcher would have set (SWIFT_CONFIG_FILE), so the figure is bbuqc's overhead, not an env's
        bare_env = {**DEFAULTS, "PYTHONPATH": str(REPO), "SWIFT_CONFIG_FILE": str(config)}
        record = {"round": i + 1, "first": "bbuqc" if i % 2 == 0 else "bare"}
        for side in (("bbuqc", "bare") if i % 2 == 0 else ("bare", "bbuqc")):
            if side == "bbuqc":
                record["bbuqc"] = timed_run([*bbuqc, f"hydra.run.dir={ours_dir}"], tmp / f"bbuqc{i}.log")
            else:
                record["bare"] = timed_run(bare_cmd, tmp / f"bare{i}.log", env=bare_env)
                record["bare"]["steps"] = step_times(bare_dir)
                record["bare"]["train_runtime_s"] = train_runtime(bare_dir)
                record["bare"]["own_train_s"] = own_train_s(record["bare"], record["bare"]["train_runtime_s"])
                if i == 0:
                    record["argument_differences"] = argument_differences(ref_dir, bare_dir)
        record["bbuqc"]["steps"] = step_times(ours_dir)
        record["bbuqc"]["train_runtime_s"] = train_runtime(ours_dir)
        record["bbuqc"]["own_train_s"] = own_train_s(record["bbuqc"], record["bbuqc"]["train_runtime_s"])
        if (ours_dir / "data" / "train.jsonl").read_bytes() != (ref_dir / "data" / "train.jsonl").read_bytes():
            raise SystemExit(f"round {i + 1}: bbuqc trained on other rows than the bare run")
        ours_steps_all += record["bbuqc"]["steps"]
        o, b = record["bbuqc"], record["bare"]
        record["step_ratio"] = statistics.median(o["steps"]) / statistics.median(b["steps"])
        record["wall_ratio"] = o["wall_s"] / b["wall_s"]
        record["own_wall_ratio"] = o["own_wall_s"] / b["own_wall_s"]
        record["own_train_ratio"] = o["own_train_s"] / b["own_train_s"] if o["own_train_s"] and b["own_train_s"] else None
        record["cpu_ratio"] = o["cpu_s"] / b["cpu_s"]
        runs.append(record)
        print(f"round {i + 1}/{rounds} ({record['first']} first): step {statistics.median(o['steps']):.3f} / "
              f"{statistics.median(b['steps']):.3f} s = {record['step_ratio']:.3f}; wall {o['wall_s']:.1f} / "
              f"{b['wall_s']:.1f} s = {record['wall_ratio']:.3f} (own {o['own_wall_s']:.1f} / {b['own_wall_s']:.1f} s = "
              f"{record['own_wall_ratio']:.3f}); own train {o['own_train_s']} / {b['own_train_s']} s = "
              f"{record['own_train_ratio']}; cpu {o['cpu_s']:.1f} / {b['cpu_s']:.1f} s = "
              f"{record['cpu_ratio']:.3f}; load {o['load_1min']:.2f}, {b['load_1min']:.2f}", flush=True)
        for done in (ours_dir, bare_root):  # checkpoints of ~1 MB each; keep the temp folder small
            shutil.rmtree(done, ignore_errors=True)
    summary = {
        "step_time_ratio": _spread([r["step_ratio"] for r in runs]),
        "wall_ratio": _spread([r["wall_ratio"] for r in runs]),
        "own_wall_ratio": _spread([r["own_wall_ratio"] for r in runs]),
        "own_train_ratio": _spread([r["own_train_ratio"] for r in runs]),
        "cpu_ratio": _spread([r["cpu_ratio"] for r in runs]),
        "bare_command": "python <site-packages>/swift/cli/rlhf.py --<key> <value> ... (what `swift rlhf` runs)",
        "argument_differences": runs[0].pop("argument_differences", {}),
        "runs": [_rounded(r) for r in runs],
    }
    return summary, ours_steps_all


def _rounded(record: dict) -> dict:
    out = dict(record)
    for side in ("bbuqc", "bare"):
        s = dict(out[side])
        s["median_step_s"] = round(statistics.median(s.pop("steps")), 4)
        out[side] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
    for key in ("step_ratio", "wall_ratio", "own_wall_ratio", "own_train_ratio", "cpu_ratio"):
        out[key] = None if out[key] is None else round(out[key], 3)
    return out


def twin_step_times(tmp: Path, tiny_text_steps: list[float], rounds: list[dict]) -> dict:
    out = {}
    for preset, task in TWINS.items():
        if preset == "tiny_text":
            own = [r["bbuqc"]["own_train_s"] for r in rounds if r["bbuqc"]["own_train_s"] is not None]
            steps, run = tiny_text_steps, {"from": "the overhead rounds' bbuqc runs", "steps": len(tiny_text_steps),
                                           "own_step_s": round(statistics.mean(own) / STEPS, 3) if own else None}
        else:
            run_dir = tmp / f"twin-{preset}"
            cmd = [sys.executable, "-m", "bbuqc.train", f"task={task}", f"model={preset}",
                   f"train.max_steps={TWIN_STEPS}", *COMMON, f"hydra.run.dir={run_dir}"]
            timing = timed_run(cmd, tmp / f"twin-{preset}.log")
            steps = step_times(run_dir)
            own = own_train_s(timing, train_runtime(run_dir))
            run = {"steps": TWIN_STEPS, "train_runtime_s": train_runtime(run_dir), "wall_s": round(timing["wall_s"], 1),
                   "cpu_s": round(timing["cpu_s"], 1), "cpu_wait_s": round(timing["cpu_wait_s"], 1),
                   "own_step_s": None if own is None else round(own / TWIN_STEPS, 3),
                   "load_1min": round(timing["load_1min"], 2)}
        out[preset] = {"task": task, "mean_step_s": round(statistics.mean(steps), 3),
                       "median_step_s": round(statistics.median(steps), 3), **run}
        print(f"{preset} ({task}): {out[preset]['mean_step_s']:.3f} s/step", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating bbuqc/bare rounds (default 5)")
    parser.add_argument("--no-twins", action="store_true", help="skip the per-twin step times")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # both sides alike; on 2 shared cores it is also faster
    started = time.time()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        overhead, tiny_text_steps = overhead_rounds(Path(tmp), args.rounds)
        twins = {} if args.no_twins else twin_step_times(Path(tmp), tiny_text_steps, overhead["runs"])
    ratio = overhead["step_time_ratio"]["median"]
    write_result("grpo", {
        "goal": "median step-time ratio (bbuqc / bare ms-swift) <= 1.05",
        "goal_met": ratio <= 1.05,
        **{k: overhead[k] for k in ("step_time_ratio", "own_train_ratio", "wall_ratio", "own_wall_ratio", "cpu_ratio")},
        "own_train": "ms-swift's train_runtime minus the CPU wait inside the training loop: the step time's "
                     "load-independent counterpart (same steps on both sides)",
        "own_wall": "wall time minus the time the command's threads waited runnable for a CPU (schedstat): "
                    "the wall time with the other jobs' share of the 2 cores taken out",
        "rounds": args.rounds, "steps_per_run": STEPS, "model": "tiny_text (task=verdict, reward=verdict)",
        "report_to": "none on both sides (bbuqc logger=none): W&B is not part of the comparison",
        "bare_command": overhead["bare_command"],
        "argument_differences": overhead["argument_differences"],
        "twins": twins, "twin_steps_per_run": TWIN_STEPS,
        "twin_fields": "mean_step_s / median_step_s: ms-swift's step_time, steps after the first; own_step_s: "
                       "(train_runtime - CPU wait in the loop) / steps, the first step included",
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started),
        "runs": overhead["runs"],
    })


if __name__ == "__main__":
    main()
