"""W&B runs for every entry point: offline by default, named after the run's overrides,
grouped by sweep, the whole composed config attached, and always finished."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def run_identity(cfg: DictConfig, job_type: str) -> dict[str, Any]:
    """name / group / job_type of this Hydra job, from its own overrides, and its tags."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    name, group = cfg.logger.name, cfg.logger.group or cfg.experiment
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        overrides = [o for o in hc.overrides.task if not o.startswith("hydra.")]
        name = name or (",".join(overrides) if overrides else "defaults")
        if group is None and hc.mode == RunMode.MULTIRUN:
            # every job of one sweep shares a group: multirun/<date>/<time> -> sweep-<date>_<time>
            sweep_dir = Path(hc.sweep.dir)
            group = f"sweep-{sweep_dir.parent.name}_{sweep_dir.name}"
    return {"name": name or "defaults", "group": group, "job_type": job_type, "tags": run_tags(cfg)}


def run_tags(cfg: DictConfig) -> list[str]:
    """`task:<name>`, `mission:<id>`, `model:<family>` (ms-swift model_type): filters on a dashboard.
    A node the command does not use (Stage-A has no task) gives no tag."""
    tags = []
    for tag, key in (("task", "task.name"), ("mission", "mission.id"), ("model", "model.model_type")):
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None and not OmegaConf.is_missing(cfg, key):
            tags.append(f"{tag}:{value}")
    return tags


@contextlib.contextmanager
def wandb_run(cfg: DictConfig, run_dir: Path, job_type: str, run_id: str | None = None) -> Iterator[Any]:
    """A W&B run for the body, finished with its exit status even when the body raises.

    Yields the run, or None with `logger=none`. `run_id`: continue that run if it exists (a resumed job).
    """
    if cfg.logger.backend != "wandb" or int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    ident = run_identity(cfg, job_type)
    kwargs = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        mode=cfg.logger.mode,
        dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        reinit="finish_previous",
        **({"id": run_id, "resume": "allow"} if run_id else {}),
        **ident,
    )
    run = wandb.init(**kwargs)
    try:
        yield run
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()

