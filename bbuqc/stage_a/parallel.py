"""Data-parallel Stage-A: ``infer.num_gpus=N`` runs one worker process per GPU.

The parent (``run_stage_a`` holding the final output's writer) splits the pending groups
round-robin into N shards (:func:`shard_groups`), starts one worker per shard with
``CUDA_VISIBLE_DEVICES`` naming one GPU (``python -m bbuqc.stage_a.parallel <spec.json>``),
and each worker runs the ordinary single-process runner on its groups only, streaming
into its own shard file ``<output>.shard-<i>-of-<N>.jsonl`` (resumable like any output).
When the workers are done, :func:`merge_shards` appends the shard records to the final
output **in discovery order** and removes the shard files.

Crash safety: shard files left by an interrupted run are merged first (whatever their N),
so their records are never generated twice; the final order is restored by the runner's
``sort_output``. With ``compute.device=cpu`` the workers are plain CPU processes (used by
the slow end-to-end test; no GPU is needed anywhere in the tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from bbuqc.data.discovery import Group
from bbuqc.data.records import StageARecord

from .writer import Key, StageAWriter, record_key, scan_and_repair

T = TypeVar("T")
SHARD_GLOB = "{name}.shard-*-of-*.jsonl"


def shard_items(items: list[T], n: int) -> list[list[T]]:
    """Round-robin split: shard i gets items i, i+n, i+2n, ... (balanced, stable, order kept)."""
    if n < 1:
        raise ValueError(f"number of shards must be >= 1, got {n}")
    return [items[i::n] for i in range(n)]


def shard_groups(groups: list[Group], n: int) -> list[list[Group]]:
    """Round-robin shards of groups (each in discovery order); empty shards dropped."""
    return [s for s in shard_items(groups, n) if s]


def shard_path(output: Path, index: int, count: int) -> Path:
    return output.with_name(f"{output.name}.shard-{index}-of-{count}.jsonl")


def existing_shards(output: Path) -> list[Path]:
    return sorted(output.parent.glob(SHARD_GLOB.format(name=glob_escape(output.name))))


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def merge_records(shard_records: Iterable[Iterable[StageARecord]], order: list[Key],
                  done: set[Key]) -> list[StageARecord]:
    """The records of all shards that are not ``done``, in ``order`` (keys not in it last, stably)."""
    rank = {key: i for i, key in enumerate(order)}
    found: dict[Key, StageARecord] = {}
    for records in shard_records:
        for rec in records:
            key = record_key(rec)
            if key not in done and key not in found:
                found[key] = rec
    return sorted(found.values(), key=lambda r: rank.get(record_key(r), len(rank)))


def merge_shards(writer: StageAWriter, shards: list[Path], order: list[Key]) -> int:
    """Append the shard files' new records to ``writer`` in ``order``; delete the shard files
    (and their summaries) afterwards. Returns the number of records appended."""
    records = merge_records((scan_and_repair(p).records for p in shards if p.exists()), order, writer.done)
    for rec in records:
        writer.write(rec)
    for p in shards:
        for f in (p, p.with_name(p.name + ".summary.json")):
            f.unlink(missing_ok=True)
    return len(records)


def _devices(count: int, device: str) -> list[str | None]:
    """The CUDA_VISIBLE_DEVICES value of each worker (None: leave the environment alone)."""
    if device != "cuda":
        return [None] * count
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else None
    if ids is None:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if len(ids) < count:
        from .runner import StageAError

        raise StageAError(f"infer.num_gpus={count}: only {len(ids)} CUDA device(s) visible")
    return ids[:count]


def _worker_env(device_id: str | None, count: int, device: str) -> dict[str, str]:
    env = dict(os.environ)
    # the workers import bbuqc from where this process did, installed or not
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    if device_id is not None:
        env["CUDA_VISIBLE_DEVICES"] = device_id
    if device == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
    return env


def run_sharded(cfg: DictConfig, pending: list[Group], writer: StageAWriter, *, progress: bool = True):
    """Generate ``pending`` with ``infer.num_gpus`` worker processes; merge into ``writer``."""
    from .runner import GenerationStats, GroupFailure, StageAError

    output = writer.path
    order = [(g.label, g.group_id) for g in pending]
    stats = GenerationStats()
    start = time.perf_counter()
    leftovers = existing_shards(output)
    if leftovers:  # an interrupted parallel run: keep its work
        stats.written += merge_shards(writer, leftovers, order)
        pending = [g for g in pending if (g.label, g.group_id) not in writer.done]
        if not pending:
            stats.seconds = time.perf_counter() - start
            return stats
    n = int(cfg.infer.num_gpus)
    shards = shard_groups(pending, n)
    devices = _devices(len(shards), cfg.compute.device)
    paths = [shard_path(output, i, len(shards)) for i in range(len(shards))]
    base = OmegaConf.to_container(cfg, resolve=True)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bbuqc-stage-a-") as tmp:
        for i, (groups, path) in enumerate(zip(shards, paths)):
            spec = {"config": base, "output": str(path), "keys": [[g.label, g.group_id] for g in groups]}
            spec_path = Path(tmp) / f"shard-{i}.json"
            spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
            procs.append(subprocess.Popen([sys.executable, "-m", "bbuqc.stage_a.parallel", str(spec_path)],
                                          env=_worker_env(devices[i], len(shards), cfg.compute.device)))
        try:
            _watch(procs, paths, pending, progress)
        except BaseException:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            raise
    codes = [p.returncode for p in procs]
    # failures reported by the workers (before their summaries are deleted by the merge)
    for path in paths:
        summary = path.with_name(path.name + ".summary.json")
        if summary.is_file():
            data = json.loads(summary.read_text(encoding="utf-8"))
            stats.failed += [GroupFailure(**f) for f in data.get("failed", [])]
            stats.images += int(data.get("images", 0))
            stats.batch_failures += int(data.get("batch_failures", 0))
    stats.written += merge_shards(writer, paths, order)
    stats.seconds = time.perf_counter() - start
    bad = [f"worker {i} exited with {c}" for i, c in enumerate(codes) if c != 0]
    if bad:
        raise StageAError(f"{'; '.join(bad)}: {stats.written} groups merged into {output}; "
                          "re-run the same command to resume")
    return stats


def _watch(procs: list[subprocess.Popen], paths: list[Path], pending: list[Group], progress: bool) -> None:
    """Wait for the workers, with one groups/images progress bar fed by the shard files."""
    bar_groups = bar_images = None
    if progress:
        from tqdm import tqdm

        bar_images = tqdm(total=sum(len(g.images) for g in pending), desc="images", unit="img", position=0)
        bar_groups = tqdm(total=len(pending), desc="groups", unit="group", position=1)
    images_of = {(g.label, g.group_id): len(g.images) for g in pending}
    offsets = [0] * len(paths)
    try:
        while True:
            running = any(p.poll() is None for p in procs)
            if bar_groups is not None:
                for i, path in enumerate(paths):
                    if not path.exists():
                        continue
                    with path.open("rb") as handle:
                        handle.seek(offsets[i])
                        data = handle.read()
                    complete = data[: data.rfind(b"\n") + 1]
                    offsets[i] += len(complete)
                    for line in complete.splitlines():
                        if line.strip():
                            obj = json.loads(line)
                            bar_groups.update(1)
                            bar_images.update(images_of.get((obj["label"], obj["group_id"]), 0))
            if not running:
                return
            time.sleep(0.5)
    finally:
        if bar_groups is not None:
            bar_groups.close()
            bar_images.close()


def worker_main(spec_path: str) -> int:
    """One shard: the single-process runner on the spec's groups, into the spec's shard file."""
    from bbuqc.offline import use_offline_defaults

    from .runner import StageAError, run_stage_a

    use_offline_defaults()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    cfg = OmegaConf.create(spec["config"])
    cfg.infer.output = spec["output"]
    cfg.infer.num_gpus = 1
    cfg.infer.progress = False
    try:
        run_stage_a(cfg, select=[tuple(k) for k in spec["keys"]], shard=True)
    except StageAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
