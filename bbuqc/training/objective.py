"""What a training job returns to a sweeper: its held-out objective at its best checkpoint.

`bbuqc-train` returns the value of `train.select_by` (the metric that picks the best checkpoint) at
that checkpoint, read back from the run folder (`best_checkpoint.json`, `validation.jsonl`, through
bbuqc.io.run_folder): a held-out figure, comparable across jobs whatever their reward weights, so any
Hydra sweeper (Optuna, Ax, Nevergrad) can optimise it. With `train.objectives` (two or more names) it
returns the tuple of those metrics at the same best step, for multi-objective sweepers. Without
validation it returns None; a search refuses to start in that case (bbuqc/sweep/objective.py
``search_problems``, run by the sweep callback before the first trial).

Pure Python: nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# the run folder's files are named and read in bbuqc.io.run_folder; the two the objective is read from
# are re-exported under the names the sweep objective gave them
from bbuqc.io.run_folder import BEST_JSON, best_figures  # noqa: F401
from bbuqc.io.run_folder import VALIDATION as HISTORY  # noqa: F401
from bbuqc.training.selection import select_metric


def objective_names(cfg: DictConfig) -> list[str]:
    """The metrics the job returns: `train.objectives`, else `[select_metric]`."""
    names = list(OmegaConf.select(cfg, "train.objectives", default=None) or [])
    return names or [select_metric(cfg.task.name, cfg.train.select_by)]


def job_objective(cfg: DictConfig, run_dir: Path) -> float | tuple[float, ...] | None:
    """The job's return value: see the module docstring. None when the run never validated, or a
    named metric is missing at the best step (a sweeper then records the trial as failed)."""
    names = objective_names(cfg)
    _, figures = best_figures(run_dir)
    values = [figures.get(name) for name in names]
    if not figures or any(v is None for v in values):
        return None
    values = [float(v) for v in values]
    return values[0] if len(values) == 1 else tuple(values)
