"""Stage-A on Ray (``infer.workers > 1``, or a named ``infer.ray_address``): the chunks of groups the
actors get, and the actor itself (:class:`StageAWorker`: one model, the batching loop of batches.py on each
chunk). The cluster, the ordered map and the error line are bbuqc/runtime/ray_pool.py's, shared with
evaluation; the driver writes the results (runner.py ``generate_on_ray``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.data.discovery import Group
from bbuqc.data.records import record_to_line
from bbuqc.prompts.summary import resolve_mission
from bbuqc.runtime.offline import use_offline_defaults

from .backends import Backend, backend_for, settings_of
from .batches import generate_groups
from .resample import resample_of


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


def group_payload(g: Group) -> dict:
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
        self.resample = resample_of(self.cfg)
        self.backend = (backend_factory or backend_for)(self.cfg)

    def process(self, chunk: list[dict]) -> dict:
        groups = [Group(g["group_id"], g["label"], Path(g["dir"]), [Path(p) for p in g["images"]]) for g in chunk]
        lines: dict[tuple[str, str], str] = {}
        failures: dict[tuple[str, str], dict] = {}
        stats = generate_groups(
            groups, self.backend, self.mission, self.settings, self.batch_size,
            lambda rec: lines.__setitem__((rec.label, rec.group_id), record_to_line(rec)),
            on_failure=lambda f: failures.__setitem__((f.label, f.group_id), f.__dict__), resample=self.resample,
        )
        results = [{"line": lines[(g.label, g.group_id)]} if (g.label, g.group_id) in lines
                   else {"failure": failures[(g.label, g.group_id)]} for g in groups]
        return {"groups": results, "images": stats.images, "batch_failures": stats.batch_failures,
                "resampled": stats.resampling()}
