"""A training run's folder: the name of every file a run writes, and the one reader of each.

`bbuqc-train` (ms-swift and bbuqc's callbacks) leaves in its Hydra run folder:

- ``logging.jsonl`` (ms-swift): one line per logged step (``"global_step/max_steps": "N/M"``, the loss,
  GRPO's reward and health, bbuqc's ``val/`` figures on a validated step), a last line with ``train_runtime``;
- ``completions.jsonl`` (ms-swift, GRPO with ``train.log_completions_steps``): sampled completions;
- ``validation.jsonl`` / ``validation_answers.jsonl`` (training/validation.py): each validation's figures
  (``{"step": N, "val/...": x}``) and the answers of its first rows;
- ``best_checkpoint.json`` and the ``best-checkpoint`` link (training/validation.py), ``last-checkpoint``
  (ms-swift), ``checkpoint-N/`` folders with ``trainer_state.json`` (transformers);
- ``run_summary.json`` (training/diagnosis.py), ``trainable_parameters.json`` (training/callbacks.py),
  ``wandb_run_id`` (training/checkpoints.py), ``wandb_artifacts.json`` (tracking/lineage.py), ``data/``.

Writers name their files from here; every reader (validation's resume, checkpoints' log cutting, the
end-of-run diagnosis, a sweep job's objective, the sweep report, the demo) reads through the functions
below, so a file is parsed one way. The logs are read leniently (:func:`bbuqc.io.jsonl.read_objects`:
a line torn by a kill is skipped); a JSON file that is missing or unreadable reads as None.

Pure Python, import-light (no torch, no omegaconf): config validation may import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bbuqc.io.jsonl import read_objects

LOGGING = "logging.jsonl"
COMPLETIONS = "completions.jsonl"
VALIDATION = "validation.jsonl"
ANSWERS = "validation_answers.jsonl"
BEST_JSON = "best_checkpoint.json"
BEST_LINK = "best-checkpoint"
LAST_LINK = "last-checkpoint"
SUMMARY = "run_summary.json"
TRAINABLE = "trainable_parameters.json"
WANDB_ID = "wandb_run_id"
ARTIFACTS_JSON = "wandb_artifacts.json"
DATA = "data"
TRAINER_STATE = "trainer_state.json"  # inside each checkpoint folder
CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
#: ms-swift's step key in logging.jsonl ("N/M"); W&B's history has "train/global_step" (a number)
STEP_KEY = "global_step/max_steps"

_STEP = re.compile(r"^\s*(\d+)\s*/")


# ------------------------------------------------------------------------------------------ steps
def number(value: Any) -> float | None:
    """A logged value as a float; None for a missing, boolean or non-numeric one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def step_value(value: Any) -> int | None:
    """A step as logged: ``"N/M"`` (ms-swift) or a number (W&B, bbuqc's own lines); else None."""
    match = _STEP.match(value) if isinstance(value, str) else None
    if match:
        return int(match.group(1))
    as_number = number(value)
    return int(as_number) if as_number is not None else None


def logged_step(row: dict[str, Any]) -> int | None:
    """The step of a line of logging.jsonl (``global_step/max_steps``) or of validation.jsonl (``step``)."""
    if STEP_KEY in row:
        return step_value(row[STEP_KEY])
    step = row.get("step", row.get("global_step"))
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def completion_step(row: dict[str, Any]) -> int | None:
    """The step of a line of completions.jsonl (ms-swift writes a list, one entry per completion)."""
    steps = row.get("step")
    return int(steps[0]) if isinstance(steps, list) and steps else None


#: the logs that grow by step, with the step of one of their lines: what a resumed run cuts back
STEP_LOGS: dict[str, Callable[[dict[str, Any]], int | None]] = {
    LOGGING: logged_step, COMPLETIONS: completion_step, VALIDATION: logged_step, ANSWERS: logged_step,
}


# ------------------------------------------------------------------------------------------ the logs
def log_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of logging.jsonl (steps, the end-of-training line)."""
    return read_objects(Path(run_dir) / LOGGING)


def step_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training steps among logging.jsonl's lines: those with a loss and a step."""
    return [r for r in rows if "loss" in r and STEP_KEY in r]


def training_finished(run_dir: Path) -> bool:
    """ms-swift logged the end of training (its ``train_runtime`` line)."""
    return any("train_runtime" in r for r in log_rows(run_dir))


def read_validations(run_dir: Path) -> list[dict[str, Any]]:
    """Every validation line of a run (``{"step": N, "val/...": x}``), file order."""
    return [r for r in read_objects(Path(run_dir) / VALIDATION) if isinstance(r.get("step"), int)]


def checkpoint_validations(validations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validations a best checkpoint can be picked from: all but the starting model's (step 0, written under
    ``train.val_on_start``), which is a reference with no checkpoint of its own (the start is model.adapter)."""
    return [r for r in validations if r["step"] > 0]


def figures_at(validations: list[dict[str, Any]], step: int | None) -> dict[str, Any]:
    """Every figure of the validation at ``step`` (the last line for that step wins); {} when none."""
    figures: dict[str, Any] = {}
    for row in validations:
        if row["step"] == step:
            figures = {k: v for k, v in row.items() if k != "step"}
    return figures


# ------------------------------------------------------------------------------------------ JSON files
def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """best_checkpoint.json (step, metric, value, checkpoint, constraint), or None."""
    best = _read_json(Path(run_dir) / BEST_JSON)
    return best if isinstance(best, dict) and isinstance(best.get("step"), int) else None


def best_figures(run_dir: Path) -> tuple[int | None, dict[str, Any]]:
    """The best step and every held-out figure logged at it (best_checkpoint.json's own value when its
    validation line is missing)."""
    best = read_best(run_dir)
    if best is None:
        return None, {}
    figures = figures_at(read_validations(run_dir), best["step"])
    if best.get("metric") and best.get("value") is not None:
        figures.setdefault(best["metric"], best["value"])
    return best["step"], figures


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """run_summary.json (training/diagnosis.py: the end-of-run summary and its warnings), or None."""
    summary = _read_json(Path(run_dir) / SUMMARY)
    return summary if isinstance(summary, dict) else None


# ------------------------------------------------------------------------------------------ checkpoints
def trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """A checkpoint's trainer_state.json, or None when it is missing or unreadable."""
    state = _read_json(Path(checkpoint) / TRAINER_STATE)
    return state if isinstance(state, dict) else None


def checkpoint_step(folder: Path) -> int:
    """The optimiser step a checkpoint was saved at (its trainer_state.json, else its name)."""
    folder = Path(folder)
    try:
        return int((trainer_state(folder) or {})["global_step"])
    except (KeyError, TypeError, ValueError):
        return int(CHECKPOINT.match(folder.name).group(1))


def checkpoints(run_dir: Path) -> dict[int, Path]:
    """The run's checkpoint-N folders by N (links such as best-checkpoint are not checkpoints)."""
    run_dir = Path(run_dir)
    out = {}
    for path in run_dir.glob("checkpoint-*") if run_dir.is_dir() else []:
        m = CHECKPOINT.match(path.name)
        if m and path.is_dir() and not path.is_symlink():
            out[int(m.group(1))] = path
    return dict(sorted(out.items()))


def chosen_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a run hands on: its best by held-out validation (best_checkpoint.json), else its last
    one (``last-checkpoint``, else the highest checkpoint-N); None when it saved none. Resolved."""
    best = read_best(run_dir)
    if best is not None and best.get("checkpoint"):
        return Path(best["checkpoint"]).resolve()
    last = Path(run_dir) / LAST_LINK
    if last.exists():
        return last.resolve()
    found = checkpoints(run_dir)
    return found[max(found)].resolve() if found else None
