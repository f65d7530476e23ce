"""Multi-node training on one CPU machine: two "nodes" of one process each on localhost (two `bbuqc.train`
processes, compute.nnodes=2, node_rank 0/1, one master address and port) against one node of two processes
(compute.nproc_per_node=2): the same world size, data order and result (tests/training/test_multinode_runs.py),
so the difference is what the second launcher and the cross-node rendezvous cost.

`--rounds` rounds (default 5), alternating which layout runs first. Per run: the wall time of the whole run
(for two nodes, until both processes exited) and the training loop's own time (ms-swift's train_runtime);
figures: median and min-max of each, and the median of the per-round ratios (two nodes / one node).
The load average is recorded with every run: on a small shared machine other jobs move these figures.
Figures: outputs/bench/nodes.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write_result

STEPS = 4
OVERRIDES = ["task=verdict", "algo=sft", f"train.max_steps={STEPS}", "train.save_steps=1000", "logger=none"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_runtime(run_dir: Path) -> float | None:
    from bbuqc.io.run_folder import log_rows

    for row in log_rows(run_dir):
        if "train_runtime" in row:
            return float(row["train_runtime"])
    return None


def run(layout: str, run_dir: Path, env: dict) -> dict:
    load = os.getloadavg()[0]
    base = [sys.executable, "-m", "bbuqc.train", *OVERRIDES, f"hydra.run.dir={run_dir}"]
    if layout == "one_node":
        commands = [[*base, "compute.nproc_per_node=2"]]
    else:
        port = _free_port()
        commands = [[*base, "compute.nnodes=2", "compute.master_addr=127.0.0.1", f"compute.master_port={port}",
                     f"compute.node_rank={rank}"] for rank in (0, 1)]
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{layout} failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": round(time.perf_counter() - start, 2), "train_runtime_s": _train_runtime(run_dir),
            "load_avg": round(load, 2)}


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    runs: dict[str, list[dict]] = {"one_node": [], "two_nodes": []}
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        for i in range(args.rounds):
            order = ("one_node", "two_nodes") if i % 2 == 0 else ("two_nodes", "one_node")
            for layout in order:
                runs[layout].append(run(layout, Path(tmp) / f"{layout}-{i}", env))
                print(f"round {i + 1} {layout}: {runs[layout][-1]}", flush=True)
    walls = {k: [r["wall_s"] for r in v] for k, v in runs.items()}
    loops = {k: [r["train_runtime_s"] for r in v if r["train_runtime_s"] is not None] for k, v in runs.items()}
    ratios = [b / a for a, b in zip(walls["one_node"], walls["two_nodes"])]
    write_result("nodes", {
        "what": "two localhost nodes x 1 process (compute.nnodes=2) vs one node x 2 processes, CPU, gloo",
        "overrides": OVERRIDES, "rounds": args.rounds,
        "wall_s": {k: spread(v) for k, v in walls.items()},
        "train_runtime_s": {k: spread(v) for k, v in loops.items() if v},
        "wall_ratio_two_over_one": spread(ratios),
        "runs": runs,
    })


if __name__ == "__main__":
    main()
