"""`python -m bbuqc.evaluate`: judge held-out Stage-A groups with a Stage-B model and report.

inputs (Stage-A JSONL -> verdict prompts, the ones GRPO trains on) -> generation (resumable,
one flushed line per group in predictions.jsonl) -> metrics (recomputed from the whole
predictions file) -> metrics.json + report.md (atomic) -> W&B (logger=wandb).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.data.records import StageAFormatError, iter_stage_a_files
from bbuqc.data.rows import verdict_row
from bbuqc.errors import InputError
from bbuqc.offline import use_offline_defaults

from .metrics import compute_metrics, score_answers, vote
from .report import (
    PREDICTIONS,
    PredictionsError,
    PredictionWriter,
    check_settings,
    prediction_key,
    read_predictions,
    write_outputs,
)

log = logging.getLogger(__name__)


class EvaluationInputError(InputError):
    """Inputs that cannot be evaluated; the message is one line (file:line where there is one).
    The entry point prints it as `error: ...` and exits with status 2 (bbuqc.cli)."""


@dataclass
class Group:
    source: str  # the Stage-A file, resolved
    line: int
    row: dict  # the verdict row (bbuqc.data.rows.verdict_row): messages, group_label, summaries, ...
    mission: str  # Chinese mission name, as in the Stage-A record

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.row["group_id"], self.row["group_label"])


def load_groups(files: list[Path], max_rows: int | None = None) -> list[Group]:
    """Every group of the Stage-A files (in file then line order, at most ``max_rows``), as
    verdict rows. Any bad file or line fails here, before a model loads or a file is written."""
    groups: list[Group] = []
    try:
        # the one Stage-A reader (verdict training uses it too): file:line messages, duplicates,
        # empty files, encoding and nesting problems refused the same way
        for path, lineno, rec in iter_stage_a_files(files):
            if max_rows is not None and len(groups) >= max_rows:
                return groups
            row = verdict_row(rec, source=path, lineno=lineno)
            groups.append(Group(str(path.resolve()), lineno, row, rec.mission))
    except (StageAFormatError, FileNotFoundError) as exc:
        raise EvaluationInputError(str(exc)) from None
    return groups


def prediction_record(group: Group, answers: list[str]) -> dict:
    row = group.row
    v = vote(answers)
    return {
        "source": group.source,
        "line": group.line,
        "group_id": row["group_id"],
        "mission": group.mission,
        "mission_id": row["mission"],
        "label": row["group_label"],
        "answers": answers,
        "votes": v.votes,
        "verdict": v.verdict,
        "reason": v.reason,
        "valid": v.valid,
        "tie": v.tie,
        "rewards": score_answers(answers, row["group_label"], row["summaries"]),
    }


def output_dir(cfg: DictConfig) -> Path:
    if cfg.evaluate.output_dir:
        return Path(cfg.evaluate.output_dir)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise EvaluationInputError("evaluate.output_dir: required outside a Hydra run")
    return Path(HydraConfig.get().runtime.output_dir)


def settings_of(cfg: DictConfig) -> dict:
    ev = cfg.evaluate
    return {
        "model": cfg.model.preset,
        "model_path": cfg.model.path,
        "adapter": str(Path(cfg.model.adapter).resolve()) if cfg.model.adapter else None,
        "samples_per_group": ev.samples_per_group,
        "temperature": ev.temperature,
        "max_new_tokens": ev.max_new_tokens,
        "seed": ev.seed,
    }


def evaluate(cfg: DictConfig, model=None) -> dict:
    """Evaluate and write the outputs; returns metrics.json's content.

    ``model``: a ``VerdictModel`` to use instead of loading the config's (tests).
    Raises ``EvaluationInputError`` on bad inputs, before anything is written.
    """
    from bbuqc.data.sources import stage_a_files

    from .generate import iter_answers, load_verdict_model

    ev = cfg.evaluate
    out_dir = output_dir(cfg)
    files = stage_a_files(cfg)
    if not files:
        raise EvaluationInputError("no Stage-A files: set data.stage_a_jsonl=[...]")
    groups = load_groups(files, cfg.data.max_rows)
    if not groups:
        raise EvaluationInputError(f"no groups in {', '.join(map(str, files))}")
    predictions = out_dir / PREDICTIONS
    settings = settings_of(cfg)
    try:
        done = {prediction_key(r) for r in read_predictions(predictions)}
        check_settings(out_dir, settings, has_predictions=bool(done))
        read_predictions(predictions, repair=True)  # only now touch the file: the checks passed
    except PredictionsError as exc:
        raise EvaluationInputError(str(exc)) from None
    pending = [g for g in groups if g.key not in done]
    log.info(
        "Stage-B: %d groups from %d files; %d already in %s, %d to answer",
        len(groups), len(files), len(groups) - len(pending), predictions, len(pending),
    )

    from bbuqc.tracking import wandb_run

    with wandb_run(cfg, out_dir, job_type="evaluate") as wb:
        if pending:
            model = model if model is not None else load_verdict_model(cfg)
            with PredictionWriter(predictions) as writer:
                for group, answers in iter_answers(
                    model,
                    pending,
                    lambda g: g.row["messages"],
                    batch_size=ev.batch_size,
                    n_samples=ev.samples_per_group,
                    progress=ev.progress,
                    total=len(groups),
                    initial=len(groups) - len(pending),
                ):
                    writer.write(prediction_record(group, answers))
        records = read_predictions(predictions)
        keys = {g.key for g in groups}
        extra = sum(prediction_key(r) not in keys for r in records)
        if extra:
            log.warning("%s holds %d groups that are not in this run's inputs; they are counted too", predictions, extra)
        metrics = {
            "settings": settings,
            "sources": [str(Path(f).resolve()) for f in files],
            **compute_metrics(records),
        }
        write_outputs(out_dir, metrics, records)
        if wb is not None:
            log_to_wandb(wb, metrics, records)
    _print_summary(metrics, out_dir)
    return metrics


def flat_metrics(metrics: dict, prefix: str = "evaluate") -> dict[str, float | int | bool]:
    """Scalar metrics as W&B keys: evaluate/overall/accuracy, evaluate/bbu_wind/false_pass_rate, ..."""
    flat: dict[str, float | int | bool] = {}
    scopes = {"overall": metrics["overall"], **metrics["per_mission"]}
    for scope, stats in scopes.items():
        for key, value in stats.items():
            if key == "rewards":
                for rid, mean in value.items():
                    flat[f"{prefix}/{scope}/{rid}"] = mean
            elif key == "confusion":
                for human, row in value.items():
                    for model, count in row.items():
                        flat[f"{prefix}/{scope}/confusion/{human}/{model}"] = count
            elif isinstance(value, (bool, int, float)):
                flat[f"{prefix}/{scope}/{key}"] = value
    return flat


def log_to_wandb(wb, metrics: dict, records: list[dict]) -> None:
    import wandb

    flat = flat_metrics(metrics)
    wb.summary.update(flat)
    rids = list(metrics["overall"]["rewards"])
    missions = wandb.Table(
        columns=["mission_id", "mission", "n", "accuracy", "false_pass_rate", "false_pass_ok", "false_fail_rate",
                 "invalid_rate", *rids]
    )
    for mid, m in {"overall": {**metrics["overall"], "mission": "overall"}, **metrics["per_mission"]}.items():
        missions.add_data(mid, m["mission"], m["n"], m["accuracy"], m["false_pass_rate"], m["false_pass_ok"],
                          m["false_fail_rate"], m["invalid_rate"], *[m["rewards"].get(r) for r in rids])
    predictions = wandb.Table(columns=["group_id", "mission", "label", "verdict", "valid", "votes", "reason", "answers"])
    for r in records:
        v = vote(r["answers"])
        predictions.add_data(r["group_id"], r["mission"], r["label"], v.verdict, v.valid, str(v.votes), v.reason,
                             "\n---\n".join(r["answers"]))
    wb.log({**flat, "evaluate/per_mission": missions, "evaluate/predictions": predictions})


def _print_summary(metrics: dict, out_dir: Path) -> None:
    o = metrics["overall"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    ok = {True: "ok", False: "OVER the 5% limit", None: "n/a"}[o["false_pass_ok"]]
    print(
        f"Stage-B: {o['n']} groups, accuracy {pct(o['accuracy'])}, "
        f"false pass {o['false_pass']}/{o['human_fail']} ({pct(o['false_pass_rate'])}, {ok}), "
        f"false fail {o['false_fail']}/{o['human_pass']} ({pct(o['false_fail_rate'])}), "
        f"invalid answers {pct(o['invalid_rate'])}\nreport: {out_dir / 'report.md'}"
    )


def run(cfg: DictConfig) -> dict:
    """The Hydra runner. A bad input raises EvaluationInputError (an InputError) before any
    model loads or file is written; the entry point reports it as one `error:` line, exit 2."""
    use_offline_defaults()
    return evaluate(cfg)
