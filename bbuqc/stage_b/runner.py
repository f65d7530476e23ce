"""`python -m bbuqc.evaluate`: judge held-out Stage-A groups with a Stage-B model and report.

inputs (Stage-A JSONL -> verdict prompts, the ones GRPO trains on) -> generation (resumable,
one flushed line per group in predictions.jsonl) -> metrics (recomputed from the whole
predictions file) -> metrics.json + report.md (atomic) -> W&B (logger=wandb).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.config.reward_sets import reward_params
from bbuqc.data.records import StageAFormatError, iter_stage_a_files
from bbuqc.data.rows import verdict_row
from bbuqc.errors import InputError
from bbuqc.runtime.offline import use_offline_defaults
from bbuqc.runtime.ray_pool import cluster_for, fan_out, on_ray

from .metrics import attribution, compute_metrics, score_answers, vote
from .outputs import (
    PREDICTIONS,
    PredictionsError,
    append_prediction,
    false_pass_kinds_line,
    open_predictions,
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


def summaries_of(group: Group) -> dict[str, str]:
    """The group's ``{图片_i: summary}``, as its verdict prompt shows them."""
    return json.loads(group.row["summaries"])


def prediction_record(group: Group, answers: list[str], params: dict | None = None) -> dict:
    row = group.row
    v = vote(answers)
    record = {
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
        "rules_verdict": None,
        "error_source": None,
        "rewards": score_answers(answers, row["group_label"], row["summaries"], params),
        "summaries": summaries_of(group),
    }
    record["rules_verdict"], record["error_source"] = attribution(record)
    return record


def with_summaries(records: list[dict], groups: list[Group]) -> list[dict]:
    """``records``, where one written before predictions carried ``summaries`` gets them (in memory
    only) from the input group of the same key, so error attribution covers it; a record of a group
    that is not in the inputs stays without (its rules verdict is then unknown)."""
    by_key = {g.key: g for g in groups}
    out = []
    for r in records:
        group = by_key.get(prediction_key(r))
        if "summaries" not in r and group is not None:
            r = {**r, "summaries": summaries_of(group)}
        out.append(r)
    return out


def output_dir(cfg: DictConfig) -> Path:
    if cfg.evaluate.output_dir:
        return Path(cfg.evaluate.output_dir)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise EvaluationInputError("evaluate.output_dir: required outside a Hydra run")
    return Path(HydraConfig.get().runtime.output_dir)


def settings_of(cfg: DictConfig) -> dict:
    """What a resumed evaluation must share with the run that started its predictions (bbuqc/models/identity.py).
    The prompts are every mission's, not only the inputs': a resumed run may read more groups (data.max_rows);
    the command's own missions (hydra.searchpath) included."""
    from bbuqc.missions import all_missions
    from bbuqc.models.identity import output_identity
    from bbuqc.prompts.verdict import verdict_system_prompt, verdict_user_prompt

    ev = cfg.evaluate
    missions = sorted(all_missions())
    return output_identity(
        cfg, inputs={},
        # the reward parameters too: each record stores its answers' reward values
        decoding={"samples_per_group": ev.samples_per_group, "temperature": ev.temperature,
                  "max_new_tokens": ev.max_new_tokens, "seed": ev.seed, "reward_params": reward_params(cfg)},
        prompts=[text for m in missions for text in (verdict_system_prompt(m), verdict_user_prompt(m, {}))])


def evaluate(cfg: DictConfig, model=None, *, model_factory=None) -> dict:
    """Evaluate and write the outputs; returns metrics.json's content.

    ``model``: a ``VerdictModel`` to use instead of loading the config's (tests; in-process only).
    ``model_factory``: how each Ray worker (``evaluate.workers > 1``) builds its model from the
    config; default ``load_verdict_model``. Must be picklable (tests pass one that kills its process).
    Raises ``EvaluationInputError`` on bad inputs, before anything is written.
    """
    from bbuqc.data.sources import stage_a_files

    from .generate import iter_answers, load_verdict_model

    ev = cfg.evaluate
    if model is None and str(ev.get("backend", "hf")) == "vllm":
        from bbuqc.models.vllm_engine import require_vllm

        try:  # as infer.backend=vllm: refused before anything is read, loaded or written
            require_vllm("evaluate.backend")
        except InputError as exc:
            raise EvaluationInputError(str(exc)) from None
    out_dir = output_dir(cfg)
    files = stage_a_files(cfg)
    if not files:
        raise EvaluationInputError("no Stage-A files: set data.stage_a_jsonl=[...]")
    groups = load_groups(files, cfg.data.max_rows)
    if not groups:
        raise EvaluationInputError(f"no groups in {', '.join(map(str, files))}")
    predictions = out_dir / PREDICTIONS
    settings = settings_of(cfg)
    params = reward_params(cfg)  # the rewards of every record are scored with the run's parameters
    try:
        done = {prediction_key(r) for r in read_predictions(predictions)}  # read only, to decide on Ray
    except PredictionsError as exc:
        raise EvaluationInputError(str(exc)) from None
    # Ray is joined before predictions.jsonl is opened: an unreachable evaluate.ray_address writes nothing
    # several workers, or a named cluster (evaluate.ray_address: even one worker runs there), as in Stage-A
    use_ray = on_ray(cfg, "evaluate") and model is None and any(g.key not in done for g in groups)
    from bbuqc.tracking.runs import wandb_run

    with cluster_for(cfg, "evaluate", use=use_ray), ExitStack() as stack:
        try:
            # locked (a second evaluation of this folder is refused), settings checked, tail repaired
            file = stack.enter_context(open_predictions(out_dir, settings, force=bool(ev.get("force_resume", False))))
        except PredictionsError as exc:
            raise EvaluationInputError(str(exc)) from None
        for warning in file.warnings:
            log.warning("%s", warning)
        done = file.keys
        pending = [g for g in groups if g.key not in done]
        log.info(
            "Stage-B: %d groups from %d files; %d already in %s, %d to answer",
            len(groups), len(files), len(groups) - len(pending), predictions, len(pending),
        )
        wb = stack.enter_context(wandb_run(cfg, out_dir, job_type="evaluate"))
        if wb is not None and cfg.model.adapter:
            from bbuqc.tracking.lineage import use_adapter_artifact

            use_adapter_artifact(wb, cfg.model.adapter)  # links this evaluation to the training run in W&B
        if pending and use_ray:
            answer_on_ray(cfg, pending, file, params, total=len(groups), model_factory=model_factory)
        elif pending:
            model = model if model is not None else load_verdict_model(cfg)
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
                append_prediction(file, prediction_record(group, answers, params))
        records = with_summaries(list(file.records), groups)
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


class VerdictWorker:
    """One Ray actor (``evaluate.workers > 1``): the config's verdict model, loaded once
    (``load_verdict_model``; its own GPU on a GPU run), answering one batch per call."""

    def __init__(self, cfg: dict, model_factory=None):
        from omegaconf import OmegaConf

        from .generate import load_verdict_model

        use_offline_defaults()
        self.cfg = OmegaConf.create(cfg)
        self.n_samples = int(self.cfg.evaluate.samples_per_group)
        self.model = (model_factory or load_verdict_model)(self.cfg)

    def process(self, batch_of_messages: list) -> list[list[str]]:
        return [list(a) for a in self.model.answer(batch_of_messages, self.n_samples)]


def answer_on_ray(cfg: DictConfig, pending: list[Group], file, params: dict, *, total: int,
                  model_factory=None) -> None:
    """Answer ``pending`` on ``evaluate.workers`` Ray actors in batches of ``evaluate.batch_size``
    (the in-process batches); write each group's line in input order as soon as it is its turn."""
    from tqdm.auto import tqdm

    ev = cfg.evaluate
    n = int(ev.samples_per_group)
    batches = [pending[i : i + int(ev.batch_size)] for i in range(0, len(pending), int(ev.batch_size))]
    payloads = [[g.row["messages"] for g in b] for b in batches]
    with tqdm(total=total, initial=total - len(pending), unit="group", desc="Stage-B", disable=not ev.progress,
              dynamic_ncols=True) as bar:
        for index, answers in fan_out(cfg, "evaluate", payloads, VerdictWorker, model_factory,
                                      error=EvaluationInputError, written=lambda: file.written, output=file.path):
            batch = batches[index]
            if len(answers) != len(batch) or any(len(a) != n for a in answers):
                raise RuntimeError(f"a Ray worker returned {[len(a) for a in answers]} answers for "
                                   f"{len(batch)} prompts x {n} samples")
            for group, texts in zip(batch, answers):
                append_prediction(file, prediction_record(group, texts, params))
            bar.update(len(batch))


def flat_metrics(metrics: dict, prefix: str = "evaluate") -> dict[str, float | int | bool]:
    """Scalar metrics as W&B keys: evaluate/overall/accuracy, evaluate/bbu_wind/false_pass_rate, ..."""
    flat: dict[str, float | int | bool] = {}
    scopes = {"overall": metrics["overall"], **metrics["per_mission"]}
    for scope, stats in scopes.items():
        for key, value in stats.items():
            if key == "rewards":
                for rid, mean in value.items():
                    flat[f"{prefix}/{scope}/{rid}"] = mean
            elif key in ("confusion", "attribution"):
                # …/confusion/<human>/<model>, …/attribution/stage_a, …/attribution/rules/accuracy,
                # …/attribution/false_pass_by_kind/missing/false_pass
                flat.update(_flat_tree(value, f"{prefix}/{scope}/{key}"))
            elif isinstance(value, (bool, int, float)):
                flat[f"{prefix}/{scope}/{key}"] = value
    return flat


def _flat_tree(tree: dict, prefix: str) -> dict[str, float]:
    """A nested block's numbers, keyed by their path (lists and None left out)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_tree(value, f"{prefix}/{key}"))
        elif isinstance(value, (bool, int, float)):
            flat[f"{prefix}/{key}"] = value
    return flat


def log_to_wandb(wb, metrics: dict, records: list[dict]) -> None:
    import wandb

    flat = flat_metrics(metrics)
    wb.summary.update(flat)
    rids = list(metrics["overall"]["rewards"])
    missions = wandb.Table(
        columns=["mission_id", "mission", "n", "accuracy", "false_pass_rate", "false_pass_ok", "false_fail_rate",
                 "invalid_rate", "wrong_stage_a", "wrong_verdict_model", "wrong_unknown", "rules_accuracy", *rids]
    )
    for mid, m in {"overall": {**metrics["overall"], "mission": "overall"}, **metrics["per_mission"]}.items():
        a = m["attribution"]
        missions.add_data(mid, m["mission"], m["n"], m["accuracy"], m["false_pass_rate"], m["false_pass_ok"],
                          m["false_fail_rate"], m["invalid_rate"], a["stage_a"], a["verdict_model"], a["unknown"],
                          a["rules"]["accuracy"], *[m["rewards"].get(r) for r in rids])
    predictions = wandb.Table(columns=["group_id", "mission", "label", "verdict", "valid", "votes", "reason",
                                       "rules_verdict", "error_source", "answers"])
    for r in records:
        v = vote(r["answers"])
        rules, source = attribution(r)
        predictions.add_data(r["group_id"], r["mission"], r["label"], v.verdict, v.valid, str(v.votes), v.reason,
                             rules, source, "\n---\n".join(r["answers"]))
    wb.log({**flat, "evaluate/per_mission": missions, "evaluate/predictions": predictions})


def _print_summary(metrics: dict, out_dir: Path) -> None:
    o = metrics["overall"]
    a = o["attribution"]
    r = a["rules"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    ok = {True: "ok", False: "OVER the 5% limit", None: "n/a"}[o["false_pass_ok"]]
    print(
        f"Stage-B: {o['n']} groups, accuracy {pct(o['accuracy'])}, "
        f"false pass {o['false_pass']}/{o['human_fail']} ({pct(o['false_pass_rate'])}, {ok}), "
        f"false fail {o['false_fail']}/{o['human_pass']} ({pct(o['false_fail_rate'])}), "
        f"invalid answers {pct(o['invalid_rate'])}\n"
        f"wrong verdicts {a['wrong']}: Stage-A {a['stage_a']}, verdict model {a['verdict_model']}, "
        f"unknown {a['unknown']}; rules on these summaries: accuracy {pct(r['accuracy'])}, "
        f"false pass {pct(r['false_pass_rate'])} ({r['judged']} groups judged)\n"
        f"{false_pass_kinds_line(a)}\n"
        f"report: {out_dir / 'report.md'}"
    )


def run(cfg: DictConfig) -> dict:
    """The Hydra runner. A bad input raises EvaluationInputError (an InputError) before any
    model loads or file is written; the entry point reports it as one `error:` line, exit 2."""
    use_offline_defaults()
    return evaluate(cfg)
