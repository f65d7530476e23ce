"""W&B lineage: a training run's checkpoints as artifacts, and the evaluation that uses one.

At the end of `bbuqc-train`, the best checkpoint (alias `best`) and the last one (alias `latest`;
one version when they are the same folder) are logged as versions of the artifact
`model-<W&B run id>`, type `model`, **by reference** (`file://<checkpoint folder>`): nothing is
copied or uploaded, so it works offline and for large checkpoints; W&B records each file's
checksum. The run folder gets `wandb_artifacts.json` (artifact name, and per checkpoint its
aliases and manifest digest), which is how an evaluation finds the artifact of the adapter it
scores without a W&B server.

`bbuqc-evaluate model.adapter=<checkpoint>` builds the same artifact (same name, same reference,
so the same digest) and declares it as the run's input (`run.use_artifact`). W&B deduplicates
by digest: once both runs are synced, the evaluation is linked to that artifact version and,
through it, to the training run that logged it (the Lineage tab of either).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bbuqc.io.atomic import write_json_atomic
from bbuqc.io.run_folder import ARTIFACTS_JSON, read_best
from bbuqc.io.run_folder import checkpoints as _checkpoints

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "model"


def checkpoint_artifact(name: str, checkpoint: Path, metadata: dict[str, Any] | None = None):
    """The artifact for one checkpoint folder: a reference to it, so training and evaluation
    build the same manifest (and digest) from the same files."""
    import wandb

    artifact = wandb.Artifact(name, type=ARTIFACT_TYPE, metadata=metadata or {})
    artifact.add_reference(Path(checkpoint).resolve().as_uri())
    return artifact


def log_checkpoints(wb, cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Log the best and the last checkpoint of a finished training run; None without W&B or checkpoints."""
    if wb is None:
        return None
    run_dir = Path(run_dir)
    checkpoints = _checkpoints(run_dir)
    if not checkpoints:
        return None
    aliases: dict[int, list[str]] = {}
    best = read_best(run_dir)
    if best is not None and best["step"] in checkpoints:
        aliases.setdefault(best["step"], []).append("best")
    aliases.setdefault(max(checkpoints), []).append("latest")
    name = f"model-{wb.id}"
    record: dict[str, Any] = {"name": name, "type": ARTIFACT_TYPE, "run_id": wb.id, "project": wb.project,
                              "checkpoints": {}}
    for step, tags in sorted(aliases.items()):
        checkpoint = checkpoints[step]
        metadata = {"step": step, "task": cfg.task.name, "mission": cfg.mission.id, "model": cfg.model.model_type,
                    "algo": cfg.algo.name, "path": str(checkpoint.resolve())}
        if best is not None and best["step"] == step:
            metadata.update({"metric": best.get("metric"), "value": best.get("value")})
        artifact = checkpoint_artifact(name, checkpoint, metadata)
        wb.log_artifact(artifact, aliases=[*tags, f"step-{step}"])
        record["checkpoints"][checkpoint.name] = {"step": step, "aliases": [*tags, f"step-{step}"],
                                                  "digest": artifact.manifest.digest()}
    write_json_atomic(run_dir / ARTIFACTS_JSON, record, indent=1)
    log.info("W&B artifact %s: %s", name, ", ".join(f"{c} ({', '.join(v['aliases'])})"
                                                    for c, v in record["checkpoints"].items()))
    return record


def adapter_artifact_name(adapter: Path) -> tuple[str, bool]:
    """The artifact name for an adapter folder, and whether a bbuqc training run recorded it.

    `best-checkpoint` and other links resolve to the checkpoint folder first; a checkpoint whose run
    folder has no `wandb_artifacts.json` (trained elsewhere, or with logger=none) gets a name of its
    own, so the evaluation still records what it scored."""
    checkpoint = Path(adapter).resolve()
    record_file = checkpoint.parent / ARTIFACTS_JSON
    try:
        record = json.loads(record_file.read_text())
        if checkpoint.name in record.get("checkpoints", {}):
            return str(record["name"]), True
    except (OSError, ValueError, AttributeError):
        pass
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{checkpoint.parent.name}-{checkpoint.name}")
    return f"adapter-{slug}"[:128], False


def use_adapter_artifact(wb, adapter: str | Path | None):
    """Declare the adapter an evaluation scores as its input artifact; returns the artifact (or None)."""
    if wb is None or not adapter:
        return None
    name, recorded = adapter_artifact_name(Path(adapter))
    if not recorded:
        log.info("%s: no %s beside it (not logged by a bbuqc-train W&B run); recorded as %s", adapter,
                 ARTIFACTS_JSON, name)
    artifact = checkpoint_artifact(name, Path(adapter))
    if not wb.settings._offline:
        return wb.use_artifact(artifact)
    # wandb refuses use_artifact offline (it would ask the server for the artifact). For a draft
    # artifact, use_artifact is _log_artifact(is_user_created=True, use_after_commit=True) and a wait:
    # that record, replayed by `wandb sync`, commits the artifact (deduplicated by digest into the
    # training run's version) and marks it as this run's input, exactly as online.
    wb._log_artifact(artifact, is_user_created=True, use_after_commit=True)
    return artifact
