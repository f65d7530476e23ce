"""`python -m bbuqc.infer`: Stage-A, one summary per image, one JSONL record per group.

Flow of :func:`run_stage_a` (docs/stage_a.md):

1. fail fast: the backend can run here (vLLM installed?), the input tree and the mission
   folder exist — one ``error:`` line and exit code 2, before any model loads and before
   the output file exists;
2. discover the mission's groups (warnings for anything unexpected go to the run summary);
3. open the output (locked; its settings checked against ``<output>.meta.json``; an interrupted
   last line repaired: bbuqc/io/jsonl.py) and skip every group already in it;
4. generate: the images of consecutive groups are flattened into batches of
   ``infer.batch_size`` so batches stay full; a batch that raises is retried image by image,
   and an image that still fails fails only its group;
5. a group is post-processed (``postprocess_summary``), validated against its images
   (``align_summaries``) and written as one line as soon as its last image is done — in
   discovery order; a group that fails is reported and never written;
6. the run summary is printed and written to ``<output>.summary.json``.

``infer.workers > 1`` runs step 4 on Ray Data: the groups go in chunks (consecutive groups, at
least ``infer.batch_size`` images each) to ``infer.workers`` actors that each hold one model
(:class:`StageAWorker`, one GPU each with ``compute.device=cuda``), and step 5 stays here: the
results come back in any order and are written in discovery order as soon as the next group
in order is back (bbuqc/models/ray_data.py).

Every error is a :class:`StageAError` (an ``InputError``): the entry point prints one
``error:`` line and exits 2; inside a sweep the job fails alone and is recorded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bbuqc.data.discovery import Group, discover_groups
from bbuqc.data.records import StageAFormatError, StageARecord, align_summaries, postprocess_summary, record_to_line
from bbuqc.errors import InputError
from bbuqc.io.atomic import write_json_atomic
from bbuqc.io.jsonl import Settings
from bbuqc.missions import Mission
from bbuqc.prompts.summary import resolve_mission
from bbuqc.runtime.offline import use_offline_defaults

from .backends import Backend, BackendError, GenerationSettings, check_backend
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
        decoding={"max_new_tokens": int(cfg.infer.max_new_tokens), "temperature": float(cfg.infer.temperature)},
        prompts=[summary_system_prompt(mission), summary_user_prompt(mission)])


def identity_settings(cfg: DictConfig, out: Path, identity: dict[str, Any]) -> Settings:
    """The resume guard: the output's records must come from this input, model and decoding
    (recorded in ``<output>.meta.json``; a non-empty output without it needs ``infer.force_resume``)."""
    meta = sidecar(out, META_SUFFIX)
    return Settings(identity, meta, force=bool(cfg.infer.get("force_resume", False)),
                    force_hint="infer.force_resume=true",
                    other_output_hint=f"set infer.output to another file, or delete {out} and {meta} to start over")


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
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (perf_counter, images) per finished batch

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def steady_images_per_s(self, skip: int = 1) -> float | None:
        """Throughput once every worker is up: the images of the batches that finished after the
        ``skip``-th one, over the time since it (None with too few batches). Model loading and,
        on Ray, actor start-up are left out: what a long run converges to."""
        if len(self.arrivals) <= skip:
            return None
        t0 = self.arrivals[skip - 1][0]
        dt = self.arrivals[-1][0] - t0
        return sum(n for _, n in self.arrivals[skip:]) / dt if dt > 0 else None


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
        stats.arrivals.append((time.perf_counter(), len(batch)))
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
                        gpu_memory_utilization=cfg.compute.vllm_gpu_memory_utilization,
                        max_model_len=cfg.compute.get("vllm_max_model_len"), adapter=model.adapter)


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
    on_ray = workers > 1 or cfg.infer.get("ray_address") is not None
    use_ray = on_ray and backend is None and any((g.label, g.group_id) not in done_keys(out) for g in groups)
    cluster = nullcontext()
    if use_ray:
        from bbuqc.models.ray_data import ray_cluster

        cluster = ray_cluster(cfg.infer.get("ray_address"), field="infer.ray_address", workers=workers,
                              workers_field="infer.workers", gpus=cfg.compute.device == "cuda")

    with cluster, StageAWriter(out, identity_settings(cfg, out, run_identity(cfg, mission, root))) as writer:
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
            progress = _Progress(bool(cfg.infer.progress), n_images, len(pending))
            try:
                if use_ray:
                    stats = generate_on_ray(cfg, pending, writer, progress, backend_factory)
                else:
                    backend = backend or backend_for(cfg)
                    stats = generate_groups(
                        pending, backend, mission, settings_of(cfg), int(cfg.infer.batch_size), writer.write,
                        on_failure=lambda f: progress.write(f"warning: {f.line()}"),
                        on_images=progress.add_images, on_group=progress.add_group,
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
    }
    write_json_atomic(sidecar(out, SUMMARY_SUFFIX), summary)
    print(format_summary(summary), flush=True)
    return summary


# ------------------------------------------------------------------------------------ Ray workers


def chunk_groups(groups: list[Group], images_per_chunk: int) -> list[list[Group]]:
    """Consecutive groups, at least ``images_per_chunk`` images per chunk (the last one may have
    fewer): a worker's chunk fills its generate() batches as the in-process loop would."""
    chunks: list[list[Group]] = []
    current: list[Group] = []
    n = 0
    for g in groups:
        current.append(g)
        n += len(g.images)
        if n >= images_per_chunk:
            chunks.append(current)
            current, n = [], 0
    if current:
        chunks.append(current)
    return chunks


def _group_payload(g: Group) -> dict:
    # absolute: a Ray worker does not necessarily run in this process's working directory
    return {"group_id": g.group_id, "label": g.label, "dir": str(g.dir), "images": [str(p.resolve()) for p in g.images]}


class StageAWorker:
    """One Ray actor: builds the configured backend once (its own GPU on a GPU run), then runs
    :func:`generate_groups` on each chunk of groups it is given."""

    def __init__(self, cfg: dict, backend_factory: Callable[[DictConfig], Backend] | None = None):
        from omegaconf import OmegaConf

        use_offline_defaults()
        self.cfg = OmegaConf.create(cfg)
        self.mission = resolve_mission(self.cfg.mission)
        self.settings = settings_of(self.cfg)
        self.batch_size = int(self.cfg.infer.batch_size)
        self.backend = (backend_factory or backend_for)(self.cfg)

    def process(self, chunk: list[dict]) -> dict:
        groups = [Group(g["group_id"], g["label"], Path(g["dir"]), [Path(p) for p in g["images"]]) for g in chunk]
        lines: dict[tuple[str, str], str] = {}
        failures: dict[tuple[str, str], dict] = {}
        stats = generate_groups(
            groups, self.backend, self.mission, self.settings, self.batch_size,
            lambda rec: lines.__setitem__((rec.label, rec.group_id), record_to_line(rec)),
            on_failure=lambda f: failures.__setitem__((f.label, f.group_id), f.__dict__),
        )
        results = [{"line": lines[(g.label, g.group_id)]} if (g.label, g.group_id) in lines
                   else {"failure": failures[(g.label, g.group_id)]} for g in groups]
        return {"groups": results, "images": stats.images, "batch_failures": stats.batch_failures}


def generate_on_ray(cfg: DictConfig, pending: list[Group], writer: StageAWriter, progress: _Progress,
                    backend_factory: Callable[[DictConfig], Backend] | None = None) -> GenerationStats:
    """Generate ``pending`` on ``infer.workers`` Ray actors; write each record in discovery order."""
    import ray.exceptions

    from bbuqc.models.ray_data import ordered_map, worker_config

    workers = int(cfg.infer.workers)
    gpus = cfg.compute.device == "cuda"
    chunks = chunk_groups(pending, int(cfg.infer.batch_size))
    stats = GenerationStats()
    start = time.perf_counter()
    container = worker_config(cfg)
    try:
        for index, result in ordered_map([[_group_payload(g) for g in c] for c in chunks], StageAWorker,
                                         (container, backend_factory), workers=workers, gpus=gpus):
            stats.images += int(result["images"])
            stats.arrivals.append((time.perf_counter(), int(result["images"])))
            stats.batch_failures += int(result["batch_failures"])
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
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise StageAError(f"infer.workers={workers}: a Ray worker failed ({first.strip()}); {stats.written} "
                          f"groups of this run are in {writer.path}: re-run the same command to resume") from None
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
    lines.append(f"  {s['images']} images in {s['seconds']:.1f} s: {s['images_per_s']:.2f} images/s "
                 f"(backend {s['backend']}, batch size {s['batch_size']}, workers {s['workers']})")
    lines.append(f"  summary: {s['output']}{SUMMARY_SUFFIX}")
    return "\n".join(lines)
