"""Stage-A throughput: Ray Data workers (``infer.workers=2`` against 1) and batching (batch 8 against 1).

Same process, same tiny VL model (``model=tiny``), same images (the synthetic world's
``bbu_wind`` groups), same greedy decoding with a fixed ``max_new_tokens``. The untrained
tiny model never emits an end-of-sequence token, so every image costs exactly
``max_new_tokens`` decoding steps in every run.

**Workers** (goal >= 1.5x on a 2-core machine, one torch thread per worker): whole
``run_stage_a`` calls on a fresh output, ``infer.workers=1`` (in process) and
``infer.workers=2`` (a local Ray cluster, started once for the benchmark, two CPU actors)
alternating for ``--rounds`` rounds. The figure is the steady throughput each run reports
(``images_per_s_steady``: images finished after every worker delivered its first chunk, over
the time since): at cluster scale (thousands of groups) that is what a run converges to.
The end-to-end figure of the same runs (actor start-up and model loading included, which a
small run like this one is dominated by) is reported beside it.

**Batch size** (goal >= 3x): the runner's own batching loop (``generate_groups``) at batch 8
and batch 1, alternated (1, 8, 8, 1).

Writes ``outputs/bench/stage_a.json`` and prints it.

    python benchmarks/bench_stage_a.py [--images 32] [--worker-images 96] [--max-new-tokens 128] [--rounds 5]

What limits the batch ratio on CPU: the Stage-A prompt is ~1100 tokens (the system prompt
states the whole output contract), and prefilling it is compute-bound, so it costs the same per
image at any batch size; batching amortises the per-step overhead of decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL = 3.0  # batch 8 / batch 1
WORKERS_GOAL = 1.5  # workers=2 / workers=1
MISSION_ID = "bbu_wind"


def images_for(n_images: int, seed: int = 0):
    """Whole groups of the synthetic world's mission, ``n_images`` images in all (the last group cut)."""
    from bbuqc.data.discovery import Group, discover_groups
    from bbuqc.data.synth import ensure_synthetic
    from bbuqc.runtime.paths import cache_dir

    per_mission = max(6, n_images)  # groups have 1-4 images: plenty
    world = ensure_synthetic(cache_dir() / "synth" / f"seed{seed}-g{per_mission}", seed=seed,
                             groups_per_mission=per_mission)
    groups, _ = discover_groups(world / "images", MISSION_ID)
    out, total = [], 0
    for g in groups:
        take = g.images[: n_images - total]
        if not take:
            break
        out.append(Group(g.group_id, g.label, g.dir, take))
        total += len(take)
    if total < n_images:
        raise SystemExit(f"only {total} images in {world}; ask for fewer with --images")
    return out


def timed(backend, groups, mission, settings, batch_size: int) -> tuple[float, int]:
    from bbuqc.stage_a.runner import generate_groups

    start = time.perf_counter()
    stats = generate_groups(groups, backend, mission, settings, batch_size, emit=lambda rec: None)
    return time.perf_counter() - start, stats.images


def write_images(groups, root: Path) -> Path:
    """The benchmark's groups as an image tree (``<root>/<mission name>/<label>/<group>/``), so the
    worker runs go through the real command path (discovery included)."""
    import shutil

    from bbuqc.data.discovery import LABEL_DIRS
    from bbuqc.missions import MISSIONS

    base = root / MISSIONS[MISSION_ID].name
    folder_of = {label: folder for folder, label in LABEL_DIRS.items()}
    for g in groups:
        folder = base / folder_of[g.label] / g.dir.name
        folder.mkdir(parents=True, exist_ok=True)
        for p in g.images:
            shutil.copy2(p, folder / p.name)
    return root


def worker_round(tree: Path, out: Path, model: Path, workers: int, batch_size: int, max_new_tokens: int) -> dict:
    from hydra import compose, initialize_config_dir

    import bbuqc.config.store  # noqa: F401
    from bbuqc.runtime.paths import CONF_DIR
    from bbuqc.stage_a.runner import run_stage_a

    out.unlink(missing_ok=True)
    for side in out.parent.glob(out.name + ".*"):
        side.unlink()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[
            f"mission={MISSION_ID}", f"data.root={tree}", f"infer.output={out}", f"model.path={model}",
            f"infer.max_new_tokens={max_new_tokens}", f"infer.batch_size={batch_size}", f"infer.workers={workers}",
            "infer.progress=false"])
    start = time.perf_counter()
    summary = run_stage_a(cfg)
    summary["wall_s"] = time.perf_counter() - start
    return summary


def bench_workers(groups, args) -> dict:
    import statistics
    import tempfile

    import ray

    from bbuqc.models.tiny import ensure_tiny_model

    model = ensure_tiny_model("vl")
    tmp = Path(tempfile.mkdtemp(prefix="bench-stage-a-"))
    tree = write_images(groups, tmp / "tree")
    # one local cluster for every round (the runner uses it instead of starting its own); each
    # workers=2 round still starts its two actors, as a real run does
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    steady: dict[int, list[float]] = {1: [], 2: []}
    end_to_end: dict[int, list[float]] = {1: [], 2: []}
    try:
        worker_round(tree, tmp / "warm.jsonl", model, 1, args.batch_size, args.max_new_tokens)  # loads the model once
        for r in range(args.rounds):
            for workers in ((1, 2) if r % 2 == 0 else (2, 1)):  # alternated: machine load hits both alike
                s = worker_round(tree, tmp / f"w{workers}.jsonl", model, workers, args.batch_size, args.max_new_tokens)
                steady[workers].append(s["images_per_s_steady"])
                end_to_end[workers].append(s["images"] / s["wall_s"])
        identical = (tmp / "w1.jsonl").read_bytes() == (tmp / "w2.jsonl").read_bytes()
    finally:
        ray.shutdown()

    def spread(xs):
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}

    ratios = [b / a for a, b in zip(steady[1], steady[2])]
    return {
        "images_per_s_workers1": spread(steady[1]),
        "images_per_s_workers2": spread(steady[2]),
        "ratio": spread(ratios),  # per round: workers=2 / workers=1
        "goal": WORKERS_GOAL,
        "end_to_end_images_per_s_workers1": spread(end_to_end[1]),
        "end_to_end_images_per_s_workers2": spread(end_to_end[2]),
        "rounds": args.rounds,
        "images": args.worker_images,
        "batch_size": args.batch_size,
        "same_file": identical,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32, help="images of the batch-size figure")
    parser.add_argument("--worker-images", type=int, default=96, help="images of the workers figure")
    parser.add_argument("--max-new-tokens", type=int, default=128)  # a summary JSON line: ~100-200 tokens
    parser.add_argument("--rounds", type=int, default=5, help="alternating workers=1 / workers=2 rounds (>= 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="infer.batch_size of the worker rounds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a small shared machine OpenMP threads competing with "
                             "other processes slow small ops down several times, batch size 1 most; 0: torch's choice)")
    parser.add_argument("--skip-workers", action="store_true", help="only the batch-size figure")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "stage_a.json"))
    args = parser.parse_args(argv)

    from bbuqc.runtime.offline import use_offline_defaults

    use_offline_defaults()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the Ray actors' torch threads too
    import torch

    from bbuqc.missions import MISSIONS
    from bbuqc.models.tiny import ensure_tiny_model, tiny_env
    from bbuqc.stage_a.backends import GenerationSettings, HFBackend

    for key, value in tiny_env().items():
        os.environ.setdefault(key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    mission = MISSIONS[MISSION_ID]
    groups = images_for(args.images)
    backend = HFBackend(ensure_tiny_model("vl"))
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    timed(backend, groups[:2], mission, settings, 8)  # warm-up (first-call allocations, lazy imports)

    seconds = {1: 0.0, 8: 0.0}
    images = {1: 0, 8: 0}
    for batch_size in (1, 8, 8, 1):  # alternated, so a change of machine load hits both sides alike
        dt, n = timed(backend, groups, mission, settings, batch_size)
        seconds[batch_size] += dt
        images[batch_size] += n
    bs1 = images[1] / seconds[1]
    bs8 = images[8] / seconds[8]
    result = {
        "images_per_s_bs8": round(bs8, 3),
        "images_per_s_bs1": round(bs1, 3),
        "ratio": round(bs8 / bs1, 2),
        "goal": GOAL,
        "images": args.images,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "model": "tiny (model=tiny, untrained Qwen2-VL, fp32, CPU)",
        "prompt_tokens": int(backend.encode(groups[0].images[:1], mission)["input_ids"].shape[1]),
    }
    if not args.skip_workers:
        result["workers"] = bench_workers(images_for(args.worker_images), args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
