"""Stage-A's batching loop: the images of consecutive groups flattened into batches of ``infer.batch_size``
(batches stay full), a batch that raises retried image by image (an image that still fails fails only its
group), and each group turned into one record (``postprocess_summary``, ``align_summaries``) and emitted
in the order of the groups as soon as it and every group before it are finished.

The same loop runs in the command's process and in each Ray worker (bbuqc/stage_a/workers.py). An image
whose answer is unusable is sampled again before its group is finished (``infer.resample``: resample.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bbuqc.data.discovery import Group
from bbuqc.data.records import StageAFormatError, StageARecord, align_summaries
from bbuqc.missions import Mission
from bbuqc.protocol import postprocess_summary

from .backends import Backend, BackendError, GenerationSettings
from .resample import NO_RESAMPLING, Resample, usable_summary


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
    # infer.resample: images whose first answer was unusable, those a sample fixed, and the samples drawn
    resampled: int = 0
    resample_fixed: int = 0
    resample_tries: int = 0

    def resampling(self) -> dict[str, int]:
        """The counts the run summary shows (and a Ray worker sends back: :meth:`add_resampling`)."""
        return {"images": self.resampled, "fixed": self.resample_fixed, "tries": self.resample_tries}

    def add_resampling(self, counts: dict[str, int]) -> None:
        self.resampled += counts["images"]
        self.resample_fixed += counts["fixed"]
        self.resample_tries += counts["tries"]

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
    resample: Resample = NO_RESAMPLING,
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
        outcomes = [usable_summary(backend, path, mission, settings, text, resample)
                    for path, text in zip(paths, texts)]
        for (gi, ii), outcome in zip(batch, outcomes):
            states[gi].raw[ii] = outcome.text
            stats.resampled += outcome.tries > 0
            stats.resample_fixed += outcome.fixed
            stats.resample_tries += outcome.tries
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
