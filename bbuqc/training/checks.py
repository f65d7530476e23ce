"""The config's training rules that need training's own knowledge: the ms-swift arguments bbuqc sets
(args.OWNED), the val/ metrics validation produces (selection.py) and what makes a checkpoint complete
(checkpoints.py).

They sit here, beside what they read, so that bbuqc/config stays a leaf; bbuqc/checks.py lists them in
`bbuqc-train`'s checks. Each returns one line per problem naming the field; none imports torch or ms-swift.
"""

from __future__ import annotations

from omegaconf import DictConfig

from bbuqc.config.schema import Algo, Task
from bbuqc.config.validate import reward_weights


def extra_arguments(cfg: DictConfig) -> list[str]:
    """train.extra must be an argument of the algorithm's ms-swift class, and not one bbuqc sets."""
    import difflib

    from bbuqc.config import swift_fields as sf
    from bbuqc.training.args import OWNED

    grpo, out = cfg.algo.name == Algo.grpo, []
    fields, cls = (sf.RLHF_FIELDS, "RLHFArguments") if grpo else (sf.SFT_FIELDS, "SftArguments")
    for key in cfg.train.extra:
        if key in OWNED:
            out.append(f"train.extra.{key}: bbuqc sets {key}; use {OWNED[key]} instead")
        elif key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            out.append(f"train.extra.{key}: not an ms-swift {cls} argument (ms-swift {sf.SWIFT_VERSION}){hint}")
    return out


def swift_rows(cfg: DictConfig) -> list[str]:
    """data.swift_jsonl (your ms-swift rows): read now, each row against the columns the run's rewards and its
    validation read (bbuqc/data/swift_rows.py), so a row that lacks one never reaches a loaded model."""
    if not cfg.data.get("swift_jsonl"):
        return []
    from bbuqc.data.swift_rows import config_problems

    return config_problems(cfg, reward_weights(cfg))


def resume_checkpoint(cfg: DictConfig) -> list[str]:
    """train.resume_from must name a complete checkpoint (auto finds one itself)."""
    from bbuqc.training.checkpoints import checkpoint_problem

    t = cfg.train
    if t.resume_from is None or t.resume_from == "auto":
        return []
    problem = checkpoint_problem(t.resume_from)
    if not problem:
        return []
    return [f"train.resume_from={t.resume_from}: {problem} (an incomplete checkpoint cannot "
            "continue a run; train.resume_from=auto picks the latest complete one)"]


def validation_data(cfg: DictConfig) -> list[str]:
    """Validation needs a validation set, and train.select_by / select_constraint must name its metrics."""
    from bbuqc.training.selection import parse_constraint, validation_metric_names

    t, d, task, out = cfg.train, cfg.data, cfg.task.name, []
    verdict = task == Task.verdict
    has_validation = d.val_fraction > 0 or bool(d.val_stage_a_jsonl if verdict else d.val_summary_jsonl)
    if t.eval_steps is not None and not has_validation:
        out.append(f"train.eval_steps={t.eval_steps}: no validation set; set data.val_fraction or "
                   + ("data.val_stage_a_jsonl" if verdict else "data.val_summary_jsonl"))
    names = validation_metric_names(task, list(reward_weights(cfg)))
    if t.select_by is not None and t.select_by not in names:
        out.append(f"train.select_by={t.select_by}: validation of task={task} does not produce it; "
                   f"expected one of {', '.join(names)}")
    if t.get("select_constraint") is not None:
        try:
            constraint = parse_constraint(t.select_constraint)
        except ValueError as exc:
            out.append(f"train.select_constraint={t.select_constraint!r}: {exc}")
        else:
            if constraint.metric not in names:
                out.append(f"train.select_constraint={t.select_constraint!r}: validation of task={task} does not "
                           f"produce {constraint.metric}; expected one of {', '.join(names)}")
    return out
