"""`python -m bbuqc.infer`: Stage-A, one summary per image, one JSONL record per group.

Flow of :func:`run_stage_a` (docs/stage_a.md):

1. fail fast: the backend can run here (vLLM installed?), the input tree and the mission
   folder exist — one ``error:`` line and exit code 2, before any model loads and before
   the output file exists;
2. discover the mission's groups (warnings for anything unexpected go to the run summary);
3. open the output (locked; its settings checked against ``<output>.meta.json``; an interrupted
   last line repaired: bbuqc/io/jsonl.py) and skip every group already in it;
4. generate (batches.py): the images of consecutive groups are flattened into batches of
   ``infer.batch_size`` so batches stay full; a batch that raises is retried image by image,
   and an image that still fails fails only its group; an image whose summary is unusable (neither JSON
   nor 无关图片) is sampled again, seeded by its bytes (``infer.resample``, resample.py);
5. a group is post-processed (``postprocess_summary``), validated against its images
   (``align_summaries``) and written as one line as soon as its last image is done — in
   discovery order; a group that fails is reported and never written (progress.py: the bars
   and the warning lines);
6. the run summary is printed and written to ``<output>.summary.json``.

``infer.workers > 1`` runs step 4 on Ray Data: the groups go in chunks (consecutive groups, at
least ``infer.batch_size`` images each) to ``infer.workers`` actors that each hold one model
(workers.py :class:`StageAWorker`, one GPU each with ``compute.device=cuda``), and step 5 stays
here: the results come back in any order and are written in discovery order as soon as the next
group in order is back (bbuqc/runtime/ray_pool.py, shared with evaluation).

Every error is a :class:`StageAError` (an ``InputError``): the entry point prints one
``error:`` line and exits 2; inside a sweep the job fails alone and is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bbuqc.data.discovery import Group, discover_groups
from bbuqc.errors import InputError
from bbuqc.io.atomic import write_json_atomic
from bbuqc.io.jsonl import Settings
from bbuqc.missions import Mission
from bbuqc.prompts.summary import resolve_mission
from bbuqc.runtime.offline import use_offline_defaults
from bbuqc.runtime.ray_pool import cluster_for, fan_out, on_ray

from .backends import Backend, BackendError, backend_for, check_backend, settings_of
from .batches import GenerationStats, GroupFailure, generate_groups
from .progress import Progress
from .resample import resample_of
from .writer import StageAWriter

DEFAULT_OUTPUT_DIR = Path("outputs") / "stage_a"
META_SUFFIX = ".meta.json"
SUMMARY_SUFFIX = ".summary.json"


class StageAError(InputError):
    """A Stage-A run that cannot start or go on; the message is one line naming the path or field."""


# --------------------------------------------------------------------------------------- entry point


def run(cfg: DictConfig) -> dict:
    """Hydra hands the validated config here (bbuqc/infer.py). Errors are raised, never ``sys.exit``:
    the entry point turns them into one ``error:`` line, and a sweep records the job and goes on."""
    use_offline_defaults()
    try:
        return run_stage_a(cfg)
    except BackendError as exc:
        raise StageAError(str(exc)) from None


# ------------------------------------------------------------------------------------------- paths


def output_path(cfg: DictConfig) -> Path:
    """``infer.output``, or the stable default ``outputs/stage_a/<mission id>.jsonl`` (relative to
    the working directory, not Hydra's timestamped run folder) so that re-running the same
    command resumes the same file."""
    return Path(cfg.infer.output) if cfg.infer.output else DEFAULT_OUTPUT_DIR / f"{cfg.mission.id}.jsonl"


def sidecar(output: Path, suffix: str) -> Path:
    return output.with_name(output.name + suffix)


def done_keys(out: Path) -> set[tuple[str, str]]:
    """The groups already in ``out`` (read only, no lock: only to decide whether work is left)."""
    from .writer import read_output, record_key

    return {record_key(r) for r in read_output(out)}


def input_root(cfg: DictConfig) -> Path:
    from bbuqc.data.sources import images_root

    root = images_root(cfg)
    if not root.is_dir():
        field_ = "data.root" if cfg.data.root else "data.synthetic_dir"
        raise StageAError(f"{field_}={root}: no such folder (expected <root>/<mission name>/<审核通过|审核不通过>/<group>/)")
    return root


def discover(root: Path, mission: Mission) -> tuple[list[Group], list[str]]:
    try:
        return discover_groups(root, mission)
    except FileNotFoundError as exc:
        raise StageAError(str(exc)) from None


def run_identity(cfg: DictConfig, mission: Mission, root: Path) -> dict[str, Any]:
    """What a resumed run must share with the run that started the file (bbuqc/models/identity.py)."""
    from bbuqc.models.identity import output_identity
    from bbuqc.prompts.summary import summary_system_prompt, summary_user_prompt

    return output_identity(
        cfg, inputs={"mission": mission.id, "root": str(root.resolve())},
        decoding={"max_new_tokens": int(cfg.infer.max_new_tokens), "temperature": float(cfg.infer.temperature),
                  **resample_of(cfg).identity()},
        prompts=[summary_system_prompt(mission), summary_user_prompt(mission)])


def identity_settings(cfg: DictConfig, out: Path, identity: dict[str, Any]) -> Settings:
    """The resume guard: the output's records must come from this input, model and decoding
    (recorded in ``<output>.meta.json``; a non-empty output without it needs ``infer.force_resume``)."""
    meta = sidecar(out, META_SUFFIX)
    return Settings(identity, meta, force=bool(cfg.infer.get("force_resume", False)),
                    force_hint="infer.force_resume=true",
                    other_output_hint=f"set infer.output to another file, or delete {out} and {meta} to start over")


# -------------------------------------------------------------------------------------------- run


def run_stage_a(cfg: DictConfig, backend: Backend | None = None, *,
                backend_factory: Callable[[DictConfig], Backend] | None = None) -> dict:
    """Run Stage-A for ``cfg``; returns the run summary (also written to ``<output>.summary.json``).

    ``backend``: an already-built backend for the in-process path (tests, benchmarks); default:
    built from ``cfg``, and only when there is something to generate. ``backend_factory``: how each
    Ray worker builds its backend from the config (default :func:`backend_for`; tests pass one that
    kills its own process to exercise retries). It must be picklable.
    """
    check_backend(cfg.infer.backend)
    mission = resolve_mission(cfg.mission)
    root = input_root(cfg)
    groups, warnings = discover(root, mission)
    out = output_path(cfg)
    order = [(g.label, g.group_id) for g in groups]
    by_key = {(g.label, g.group_id): g for g in groups}
    workers = int(cfg.infer.get("workers", 1))
    # The Ray cluster is joined before the output is opened, so an unreachable infer.ray_address
    # leaves nothing behind; and only when there is work (a finished output starts nothing).
    # a named cluster (infer.ray_address) runs even one worker there: the model actor on the cluster's GPU
    use_ray = on_ray(cfg, "infer") and backend is None and bool(set(order) - done_keys(out))  # the output read once
    with (cluster_for(cfg, "infer", use=use_ray),
          StageAWriter(out, identity_settings(cfg, out, run_identity(cfg, mission, root))) as writer):
        warnings += writer.warnings
        done = writer.done
        for rec in writer.scan.records:
            g = by_key.get((rec.label, rec.group_id))
            if g is None:
                warnings.append(f"{out}: group {rec.group_id} ({rec.label}) is not in the input any more; kept")
            elif rec.images != g.image_names:
                warnings.append(f"{out}: group {rec.group_id} ({rec.label}) was written for other images; "
                                "kept (delete its line to redo it)")
        if writer.scan.repaired_bytes:
            warnings.append(f"{out}: removed an incomplete last line ({writer.scan.repaired_bytes} bytes) "
                            "left by an interrupted run")
        pending = [g for g in groups if (g.label, g.group_id) not in done]
        skipped = len(groups) - len(pending)
        n_images = sum(len(g.images) for g in pending)
        stats = GenerationStats()
        if pending:
            progress = Progress(bool(cfg.infer.progress), n_images, len(pending))
            try:
                if use_ray:
                    stats = generate_on_ray(cfg, pending, writer, progress, backend_factory)
                else:
                    backend = backend or backend_for(cfg)
                    stats = generate_groups(
                        pending, backend, mission, settings_of(cfg), int(cfg.infer.batch_size), writer.write,
                        on_failure=lambda f: progress.write(f"warning: {f.line()}"),
                        on_images=progress.add_images, on_group=progress.add_group, resample=resample_of(cfg),
                    )
            finally:
                progress.close()
        # still under the lock: nobody appends to the file while it is replaced by its sorted copy
        if writer.sort(order):
            warnings.append(f"{out}: records re-sorted into discovery order (a resumed run completed earlier failures)")

    summary = {
        "mission": mission.id,
        "mission_name": mission.name,
        "root": str(root),
        "output": str(out),
        "backend": cfg.infer.backend,
        "batch_size": int(cfg.infer.batch_size),
        "workers": workers,
        "groups": len(groups),
        "written": stats.written,
        "skipped": skipped,
        "failed": [f.__dict__ for f in stats.failed],
        "warnings": warnings,
        "images": stats.images,
        "seconds": round(stats.seconds, 3),
        "images_per_s": round(stats.images_per_s, 3),
        "images_per_s_steady": _round(stats.steady_images_per_s(skip=workers if use_ray else 1)),
        "batch_failures": stats.batch_failures,
        "resampled": stats.resampling(),
    }
    write_json_atomic(sidecar(out, SUMMARY_SUFFIX), summary)
    print(format_summary(summary), flush=True)
    return summary


def generate_on_ray(cfg: DictConfig, pending: list[Group], writer: StageAWriter, progress: Progress,
                    backend_factory: Callable[[DictConfig], Backend] | None = None) -> GenerationStats:
    """Generate ``pending`` on Ray actors (bbuqc/runtime/ray_pool.py); write each record in discovery order."""
    from .workers import StageAWorker, chunk_groups, group_payload

    chunks = chunk_groups(pending, int(cfg.infer.batch_size))
    stats = GenerationStats()
    start = time.perf_counter()
    for index, result in fan_out(cfg, "infer", [[group_payload(g) for g in c] for c in chunks], StageAWorker,
                                 backend_factory, error=StageAError, written=lambda: stats.written, output=writer.path):
        stats.images += int(result["images"])
        stats.arrivals.append((time.perf_counter(), int(result["images"])))
        stats.batch_failures += int(result["batch_failures"])
        stats.add_resampling(result["resampled"])
        for outcome in result["groups"]:
            if "line" in outcome:
                writer.write_line(outcome["line"])
                stats.written += 1
            else:
                failure = GroupFailure(**outcome["failure"])
                stats.failed.append(failure)
                progress.write(f"warning: {failure.line()}")
            progress.add_group()
        progress.add_images(sum(len(g.images) for g in chunks[index]))
    stats.seconds = time.perf_counter() - start
    return stats


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def format_summary(s: dict) -> str:
    lines = [
        f"Stage-A {s['mission_name']} ({s['mission']}): {s['groups']} groups -> {s['output']}",
        f"  written {s['written']}, skipped {s['skipped']} (already done), failed {len(s['failed'])}",
    ]
    lines += [f"  failed {f['group_id']} ({f['label']}): {f['reason']}" for f in s["failed"]]
    lines += [f"  warning: {w}" for w in s["warnings"]]
    if s["resampled"]["images"]:
        r = s["resampled"]
        lines.append(f"  resampled {r['images']} images whose summary was neither JSON nor 无关图片: "
                     f"{r['fixed']} fixed in {r['tries']} samples")
    lines.append(f"  {s['images']} images in {s['seconds']:.1f} s: {s['images_per_s']:.2f} images/s "
                 f"(backend {s['backend']}, batch size {s['batch_size']}, workers {s['workers']})")
    lines.append(f"  summary: {s['output']}{SUMMARY_SUFFIX}")
    return "\n".join(lines)
