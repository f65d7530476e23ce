"""A search's objective, checked before anything runs: a sweeper that optimises the jobs' return value
(Optuna, Ax, Nevergrad: anything but Hydra's grid) needs jobs that validate and `train.objectives` /
`hydra.sweeper.direction` that name what validation produces. What a job returns is
bbuqc/training/objective.py's (the held-out objective at its best checkpoint).

Pure Python: nothing here imports torch, so the check runs on the config path.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from bbuqc.training.objective import objective_names

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


# ----------------------------------------------------------------------------------------
# bad input, before anything runs
# ----------------------------------------------------------------------------------------
def is_search(cfg: DictConfig) -> bool:
    """A sweeper that consumes the jobs' return values (anything but Hydra's grid, BasicSweeper)."""
    target = OmegaConf.select(cfg, "hydra.sweeper._target_", default=None)
    return target is not None and target != BASIC_SWEEPER


def _directions(cfg: DictConfig) -> list[str] | None:
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None)
    if direction is None:
        return None
    if isinstance(direction, str) or not OmegaConf.is_list(direction):
        return [str(direction)]
    return [str(d) for d in direction]


def objective_problems(cfg: DictConfig) -> list[str]:
    """`train.objectives` entries that validation of this task does not produce."""
    from bbuqc.training.selection import validation_metric_names

    names = validation_metric_names(cfg.task.name)
    out = []
    for name in OmegaConf.select(cfg, "train.objectives", default=None) or []:
        if name not in names:
            out.append(f"train.objectives: {name}: validation of task={cfg.task.name} does not produce it; "
                       f"expected names from {', '.join(names)}")
    return out


def search_problems(cfg: DictConfig) -> list[str]:
    """Why a search (Optuna, ...) over this config would have nothing to optimise; [] when it can run."""
    from bbuqc.training.selection import validation_metric_names

    out = objective_problems(cfg)
    t, d, task = cfg.train, cfg.data, cfg.task.name
    sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default="?")
    has_set = d.val_fraction > 0 or bool(d.val_stage_a_jsonl if task == "verdict" else d.val_summary_jsonl)
    if t.eval_steps is None or not has_set:
        missing = [] if has_set else ["a validation set (data.val_fraction or "
                                      + ("data.val_stage_a_jsonl" if task == "verdict" else "data.val_summary_jsonl") + ")"]
        if t.eval_steps is None:
            missing.append("train.eval_steps")
        out.append(f"hydra.sweeper={sweeper}: a search optimises the jobs' held-out objective, and these jobs "
                   f"do not validate: set {' and '.join(missing)}")
    names = validation_metric_names(task)
    if t.select_by is not None and t.select_by not in names:
        out.append(f"train.select_by={t.select_by}: validation of task={task} does not produce it; "
                   f"expected one of {', '.join(names)}")
    directions = _directions(cfg)
    wanted = len(objective_names(cfg))
    if directions is not None and len(directions) != wanted:
        out.append(f"hydra.sweeper.direction={directions}: {len(directions)} direction(s) for {wanted} objective(s) "
                   f"({', '.join(objective_names(cfg))}); train.objectives lists one name per direction")
    return out
