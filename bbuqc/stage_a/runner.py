"""`python -m bbuqc.infer`: Stage-A, one summary per image, one JSONL record per group.

Flow of :func:`run_stage_a` (docs/stage_a.md):

1. fail fast: the backend can run here (vLLM installed?), the input tree and the mission
   folder exist — one ``error:`` line and exit code 2, before any model loads and before
   the output file exists;
2. discover the mission's groups (warnings for anything unexpected go to the run summary);
3. open the output (repairing an interrupted last line) and skip every group already in it;
4. generate: the images of consecutive groups are flattened into batches of
   ``infer.batch_size`` so batches stay full; a batch that raises is retried image by image,
   and an image that still fails fails only its group;
5. a group is post-processed (``postprocess_summary``), validated against its images
   (``align_summaries``) and written as one line as soon as its last image is done — in
   discovery order; a group that fails is reported and never written;
6. the run summary is printed and written to ``<output>.summary.json``.

``infer.num_gpus > 1`` hands step 4-5 to one worker process per GPU (bbuqc.stage_a.parallel).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bbuqc.atomic import write_json_atomic
from bbuqc.data.discovery import Group, discover_groups
from bbuqc.data.records import StageAFormatError, StageARecord, align_summaries, postprocess_summary
from bbuqc.missions import Mission
from bbuqc.offline import use_offline_defaults
from bbuqc.prompts.summary import resolve_mission

from .backends import Backend, BackendError, GenerationSettings, check_backend
from .writer import Key, OutputError, StageAWriter, sort_output

DEFAULT_OUTPUT_DIR = Path("outputs") / "stage_a"
META_SUFFIX = ".meta.json"
SUMMARY_SUFFIX = ".summary.json"
# What a resumed run must share with the run that started the file, or the file would mix
# records of different inputs / models / decoding settings.
IDENTITY_FIELDS = ("mission", "root", "model", "max_new_tokens", "temperature")


class StageAError(RuntimeError):
    """A Stage-A run that cannot start; the message is one line naming the path or field."""


# --------------------------------------------------------------------------------------- entry point


def run(cfg: DictConfig) -> dict:
    """Hydra hands the validated config here (bbuqc/infer.py)."""
    use_offline_defaults()
    try:
        return run_stage_a(cfg)
    except (StageAError, OutputError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------------------------------- paths


def output_path(cfg: DictConfig) -> Path:
    """``infer.output``, or the stable default ``outputs/stage_a/<mission id>.jsonl`` (relative to
    the working directory, not Hydra's timestamped run folder) so that re-running the same
    command resumes the same file."""
    return Path(cfg.infer.output) if cfg.infer.output else DEFAULT_OUTPUT_DIR / f"{cfg.mission.id}.jsonl"


def sidecar(output: Path, suffix: str) -> Path:
    return output.with_name(output.name + suffix)


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
    m = cfg.model
    return {
        "mission": mission.id,
        "root": str(root.resolve()),
        "model": str(Path(m.path).resolve()) if m.path else f"<{m.preset}>",
        "max_new_tokens": int(cfg.infer.max_new_tokens),
        "temperature": float(cfg.infer.temperature),
    }


def check_identity(output: Path, identity: dict[str, Any]) -> None:
    """Refuse to resume an output started with a different input, model or decoding."""
    import json

    meta = sidecar(output, META_SUFFIX)
    if output.exists() and output.stat().st_size and meta.is_file():
        try:
            before = json.loads(meta.read_text(encoding="utf-8"))
        except ValueError:
            before = {}
        changed = [f"{k}: {before.get(k)!r} -> {identity[k]!r}" for k in IDENTITY_FIELDS
                   if k in before and before.get(k) != identity[k]]
        if changed:
            raise StageAError(f"{output} was started by a run with other settings ({'; '.join(changed)}); "
                              f"set infer.output to another file, or delete {output} and {meta} to start over")
    write_json_atomic(meta, identity)


# ------------------------------------------------------------------------------------- generation


@dataclass
class GroupFailure:
    group_id: str
    label: str
    dir: str
    reason: str

    def line(self) -> str:
        return f"failed {self.group_id} ({self.label}): {self.reason}"


@dataclass
class _State:
    group: Group
    raw: list[str | None]
    remaining: int
    failure: str | None = None

    @property
    def finished(self) -> bool:
        return self.failure is not None or self.remaining == 0


@dataclass
class GenerationStats:
    images: int = 0  # images generated (not counting skipped images of failed groups)
    seconds: float = 0.0
    batch_failures: int = 0  # batches that raised and were retried image by image
    written: int = 0
    failed: list[GroupFailure] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _image_failure(path: Path, exc: BaseException) -> str:
    return f"image {path.name}: {type(exc).__name__}: {exc}".replace("\n", " ")


def build_record(group: Group, mission: Mission, raw: list[str]) -> StageARecord:
    """Post-process a group's raw outputs into a record; StageAFormatError if they do not align."""
    summaries = [postprocess_summary(r) for r in raw]
    try:
        per_image = align_summaries(group.image_names, summaries)
    except StageAFormatError as exc:
        empty = [i for i, s in enumerate(summaries) if not s.strip()]
        hint = f" (raw output {_short(raw[empty[0]])})" if empty else ""
        raise StageAFormatError(f"{exc}{hint}") from None
    return StageARecord(group.group_id, mission.name, group.label, group.image_names, per_image)


def generate_groups(
    groups: list[Group],
    backend: Backend,
    mission: Mission,
    settings: GenerationSettings,
    batch_size: int,
    emit: Callable[[StageARecord], None],
    *,
    on_failure: Callable[[GroupFailure], None] | None = None,
    on_images: Callable[[int], None] | None = None,
    on_group: Callable[[], None] | None = None,
) -> GenerationStats:
    """Generate every group's summaries, batching images across groups; ``emit`` each valid
    record in the order of ``groups``, as soon as it and every group before it are finished."""
    stats = GenerationStats()
    states = [_State(g, [None] * len(g.images), len(g.images)) for g in groups]
    queue: list[tuple[int, int]] = [(gi, ii) for gi, g in enumerate(groups) for ii in range(len(g.images))]
    cursor = 0
    next_emit = 0
    start = time.perf_counter()

    def fail(gi: int, reason: str) -> None:
        if states[gi].failure is None:
            states[gi].failure = reason

    def next_batch() -> list[tuple[int, int]]:
        nonlocal cursor
        batch = []
        while cursor < len(queue) and len(batch) < batch_size:
            item = queue[cursor]
            cursor += 1
            if states[item[0]].failure is None:  # a failed group's other images are not worth generating
                batch.append(item)
        return batch

    def run_batch(batch: list[tuple[int, int]]) -> None:
        paths = [states[gi].group.images[ii] for gi, ii in batch]
        texts = backend.generate(paths, mission, settings)
        if len(texts) != len(paths):
            raise BackendError(f"backend returned {len(texts)} outputs for {len(paths)} images")
        for (gi, ii), text in zip(batch, texts):
            states[gi].raw[ii] = text
            states[gi].remaining -= 1
        stats.images += len(batch)
        if on_images:
            on_images(len(batch))

    def flush() -> None:
        """Write every finished group at the head of the order."""
        nonlocal next_emit
        while next_emit < len(states) and states[next_emit].finished:
            state = states[next_emit]
            group = state.group
            if state.failure is None:
                try:
                    emit(build_record(group, mission, [r or "" for r in state.raw]))
                    stats.written += 1
                except StageAFormatError as exc:
                    state.failure = f"summaries do not align with the images: {exc}"
            if state.failure is not None:
                failure = GroupFailure(group.group_id, group.label, str(group.dir), state.failure)
                stats.failed.append(failure)
                if on_failure:
                    on_failure(failure)
            state.raw = []  # free the texts of written groups
            next_emit += 1
            if on_group:
                on_group()

    while True:
        batch = next_batch()
        if not batch:
            break
        try:
            run_batch(batch)
        except Exception as batch_exc:  # noqa: BLE001 - any failure of a batch is retried image by image
            retry = batch if len(batch) > 1 else []
            if retry:
                stats.batch_failures += 1
            else:
                gi, ii = batch[0]
                fail(gi, _image_failure(states[gi].group.images[ii], batch_exc))
            for gi, ii in retry:
                if states[gi].failure is not None:
                    continue
                try:
                    run_batch([(gi, ii)])
                except Exception as exc:  # noqa: BLE001
                    fail(gi, _image_failure(states[gi].group.images[ii], exc))
        flush()
    flush()
    stats.seconds = time.perf_counter() - start
    return stats


# -------------------------------------------------------------------------------------------- run


class _Progress:
    """Two tqdm bars (images, groups), or nothing when ``infer.progress=false``."""

    def __init__(self, enabled: bool, images: int, groups: int):
        self.enabled = enabled
        if enabled:
            from tqdm import tqdm

            self.images = tqdm(total=images, desc="images", unit="img", position=0, dynamic_ncols=True)
            self.groups = tqdm(total=groups, desc="groups", unit="group", position=1, dynamic_ncols=True)

    def add_images(self, n: int) -> None:
        if self.enabled:
            self.images.update(n)

    def add_group(self, n: int = 1) -> None:
        if self.enabled:
            self.groups.update(n)

    def write(self, line: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.enabled:
            self.images.close()
            self.groups.close()


def settings_of(cfg: DictConfig) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=int(cfg.infer.max_new_tokens), temperature=float(cfg.infer.temperature))


def backend_for(cfg: DictConfig) -> Backend:
    """The configured backend, with its model loaded (once per process)."""
    from bbuqc.models.resolve import resolve_model

    from .backends import make_backend

    model = resolve_model(cfg)
    return make_backend(cfg.infer.backend, model.path, device=cfg.compute.device, precision=cfg.compute.precision,
                        gpu_memory_utilization=cfg.compute.vllm_gpu_memory_utilization, adapter=model.adapter)


def run_stage_a(cfg: DictConfig, backend: Backend | None = None, *, select: Iterable[Key] | None = None,
                shard: bool = False) -> dict:
    """Run Stage-A for ``cfg``; returns the run summary (also written to ``<output>.summary.json``).

    ``backend``: an already-built backend (tests, benchmarks); default: built from ``cfg``, and
    only when there is something to generate. ``select``/``shard``: a worker of a multi-GPU run
    (bbuqc.stage_a.parallel) doing only the groups ``select`` into its own shard file.
    """
    check_backend(cfg.infer.backend)
    mission = resolve_mission(cfg.mission)
    root = input_root(cfg)
    groups, warnings = discover(root, mission)
    if select is not None:
        wanted = set(map(tuple, select))
        groups = [g for g in groups if (g.label, g.group_id) in wanted]
    out = output_path(cfg)
    order = [(g.label, g.group_id) for g in groups]
    by_key = {(g.label, g.group_id): g for g in groups}

    with StageAWriter(out) as writer:  # locked: one run per output file
        if not shard:
            check_identity(out, run_identity(cfg, mission, root))
        done = writer.done
        for rec in writer.scan.records:
            g = by_key.get((rec.label, rec.group_id))
            if g is None:
                if not shard:
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
        if pending and cfg.infer.num_gpus > 1 and backend is None and not shard:
            from .parallel import run_sharded

            stats = run_sharded(cfg, pending, writer, progress=cfg.infer.progress)
        elif pending:
            backend = backend or backend_for(cfg)
            progress = _Progress(bool(cfg.infer.progress) and not shard, n_images, len(pending))
            try:
                stats = generate_groups(
                    pending, backend, mission, settings_of(cfg), int(cfg.infer.batch_size), writer.write,
                    on_failure=lambda f: progress.write(f"warning: {f.line()}"),
                    on_images=progress.add_images, on_group=progress.add_group,
                )
            finally:
                progress.close()
        else:
            stats = GenerationStats()
        # still under the lock: nobody appends to the file while it is replaced by its sorted copy
        if not shard and sort_output(out, order):
            warnings.append(f"{out}: records re-sorted into discovery order (a resumed run completed earlier failures)")

    summary = {
        "mission": mission.id,
        "mission_name": mission.name,
        "root": str(root),
        "output": str(out),
        "backend": cfg.infer.backend,
        "batch_size": int(cfg.infer.batch_size),
        "num_gpus": int(cfg.infer.num_gpus),
        "groups": len(groups),
        "written": stats.written,
        "skipped": skipped,
        "failed": [f.__dict__ for f in stats.failed],
        "warnings": warnings,
        "images": stats.images,
        "seconds": round(stats.seconds, 3),
        "images_per_s": round(stats.images_per_s, 3),
        "batch_failures": stats.batch_failures,
    }
    write_json_atomic(sidecar(out, SUMMARY_SUFFIX), summary)
    if not shard:
        print(format_summary(summary), flush=True)
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"Stage-A {s['mission_name']} ({s['mission']}): {s['groups']} groups -> {s['output']}",
        f"  written {s['written']}, skipped {s['skipped']} (already done), failed {len(s['failed'])}",
    ]
    lines += [f"  failed {f['group_id']} ({f['label']}): {f['reason']}" for f in s["failed"]]
    lines += [f"  warning: {w}" for w in s["warnings"]]
    lines.append(f"  {s['images']} images in {s['seconds']:.1f} s: {s['images_per_s']:.2f} images/s "
                 f"(backend {s['backend']}, batch size {s['batch_size']})")
    lines.append(f"  summary: {s['output']}{SUMMARY_SUFFIX}")
    return "\n".join(lines)
