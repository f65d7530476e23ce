"""Which checkpoint a run continues from, and whether a checkpoint can be continued at all.

One completeness rule (`checkpoint_problem`) serves both an explicit `train.resume_from` (refused before
anything loads, naming what is missing) and `train.resume_from=auto` (the latest complete checkpoint of
the run folder; a checkpoint that was being written when the job died is skipped with a warning).

A checkpoint continues a run exactly only with all of: the LoRA adapter, trainer_state.json (step,
logged history, best metric), the optimizer and scheduler state (without them transformers silently
starts a fresh optimizer and restarts the learning-rate schedule) and the RNG state. Files written by
`torch.save` are zip archives, and safetensors files declare their own length, so a file cut short by a
kill is detected from its last bytes without loading it (no torch import: this runs during validation).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zipfile
from pathlib import Path

from omegaconf import OmegaConf

from bbuqc.io.run_folder import STEP_LOGS, TRAINER_STATE, checkpoint_step, checkpoints, trainer_state
from bbuqc.io.run_folder import WANDB_ID as WANDB_ID_FILE  # so a resumed job logs to the same W&B run

log = logging.getLogger(__name__)


def _safetensors_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
    except (OSError, struct.error, ValueError):
        return f"{path.name} is unreadable (cut short?)"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + header_len + end:
        return f"{path.name} is cut short"
    return None


def _torch_file_problem(path: Path) -> str | None:
    # torch.save writes a zip whose central directory comes last: a truncated file has none
    return None if zipfile.is_zipfile(path) else f"{path.name} is cut short"


def checkpoint_problem(folder: str | Path) -> str | None:
    """None when `folder` is a checkpoint a run can continue exactly, else what is missing or broken."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such checkpoint folder"
    missing, broken = [], []
    if not (folder / "adapter_config.json").is_file():
        missing.append("adapter_config.json")
    weights = [folder / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (folder / n).is_file()]
    if not weights:
        missing.append("adapter_model.safetensors")
    elif weights[0].suffix == ".safetensors" and (p := _safetensors_problem(weights[0])):
        broken.append(p)
    if not (folder / TRAINER_STATE).is_file():
        missing.append(TRAINER_STATE)
    elif trainer_state(folder) is None:
        broken.append(f"{TRAINER_STATE} is unreadable (cut short?)")
    deepspeed = any(p.is_dir() for p in folder.glob("global_step*"))  # ZeRO keeps the optimizer there
    if not (folder / "optimizer.pt").is_file() and not deepspeed:
        missing.append("optimizer.pt")
    for name in ("scheduler.pt",):
        if not (folder / name).is_file():
            missing.append(name)
    rng = sorted(folder.glob("rng_state*.pth"))  # rng_state.pth, or rng_state_<rank>.pth on several GPUs
    if not rng:
        missing.append("rng_state.pth")
    for path in [folder / "optimizer.pt", folder / "scheduler.pt", *rng]:
        if path.is_file() and (p := _torch_file_problem(path)):
            broken.append(p)
    if not missing and not broken:
        return None
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + broken
    return "; ".join(parts)


def latest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The highest-step complete checkpoint-N of `run_dir`; later incomplete ones are skipped, with a warning."""
    for path in reversed(checkpoints(run_dir).values()):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("train.resume_from=auto: skipping %s, an incomplete checkpoint (%s); "
                    "it was probably being written when the job stopped", path, problem)
    return None


def resolve_resume(resume_from: str | None, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: `auto` finds one in the run folder (or none: start fresh)."""
    if resume_from is None:
        return None
    if resume_from != "auto":
        return Path(resume_from)
    found = latest_complete_checkpoint(run_dir)
    if found is None:
        log.warning("train.resume_from=auto: no complete checkpoint in %s, starting fresh", run_dir)
    else:
        log.warning("train.resume_from=auto: resuming %s from %s (step %d)", run_dir, found.name, checkpoint_step(found))
    return found


def truncate_logs_to(run_dir: Path, step: int) -> None:
    """Drop what a killed job logged after `step` from logging.jsonl, completions.jsonl and the validation
    files of the run folder, so the resumed job continues the files instead of repeating steps (1,2,3,4,3,4,...)."""
    for name, step_of in STEP_LOGS.items():
        path = run_dir / name
        if not path.is_file():
            continue
        kept, dropped = [], 0
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                s = step_of(json.loads(line))
            except ValueError:  # a line torn by the kill
                dropped += 1
                continue
            if s is not None and s > step:
                dropped += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
        if dropped:
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            tmp.replace(path)  # atomic: a kill now leaves the old or the new file, never half of one
            log.warning("resume: dropped %d line(s) after step %d from %s", dropped, step, path)


def wandb_run_id(run_dir: Path) -> str:
    """The run folder's W&B run id, made on the first call and reused by every resumed job."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    import secrets

    run_id = secrets.token_hex(4)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


DROPOUT_RESUME_NOTE = (
    "resume: adapter, optimizer, scheduler, RNG, data position, CHORD's SFT batch position and mu schedule "
    "are restored; LoRA dropout's masks are not (lora.dropout=%s), so the resumed steps can differ slightly "
    "from an uninterrupted run; lora.dropout=0 continues bitwise"
)


def resume_in_place(cfg, run_dir: Path) -> Path | None:
    """Resolve train.resume_from (auto -> the latest complete checkpoint or None) into the config, and
    when the checkpoint belongs to this run folder cut the run's logs back to its step."""
    resume_from = cfg.train.resume_from
    if os.environ.get("BBUQC_REQUEUED") == "1":  # set by bbuqc.training.slurm in a requeued SLURM job
        # the job's own latest checkpoint is where it stands; the one it started from only until it has one
        if resume_from in (None, "auto") or latest_complete_checkpoint(run_dir) is not None:
            log.warning("requeued job: train.resume_from=auto (was %s)", resume_from)
            resume_from = "auto"
    found = resolve_resume(resume_from, run_dir)
    cfg.train.resume_from = None if found is None else str(found)
    if found is None:
        return None
    if found.resolve().parent == run_dir.resolve():
        truncate_logs_to(run_dir, checkpoint_step(found))
    dropout = OmegaConf.select(cfg, "lora.dropout", default=0) or 0
    if dropout > 0:
        log.warning(DROPOUT_RESUME_NOTE, dropout)
    return found
