"""Held-out validation while training, and the best checkpoint.

Every `train.eval_steps` steps the model being trained answers the validation rows greedily and the
answers are scored with the evaluation code (`bbuqc.stage_b.metrics` for verdicts: accuracy,
false-pass / false-fail / invalid rates and the `verdict.*` means; every `summary.*` reward for
summaries). The figures go through the trainer's own log (so `logging.jsonl` and W&B get them under
`val/`) and to `validation.jsonl` in the run folder. On several GPUs each rank answers its share of the
rows and the answers are gathered (:func:`answers_across_ranks`): a validation costs 1/N of one rank's.
On a GRPO run with colocated vLLM rollouts the answers come from that engine (:class:`RolloutAnswers`).

A validated step is always saved. When it is a new best by `train.select_by`, the trainer's
`best_global_step` is set before the save, so transformers records it as `best_model_checkpoint` and
its checkpoint rotation (`save_total_limit`) never deletes it; the run folder gets a
`best-checkpoint` link and `best_checkpoint.json`. `train.early_stop_patience` stops training after
that many validations without a new best.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import TrainerCallback

from bbuqc.config.reward_sets import reward_params
from bbuqc.config.schema import ValBackend
from bbuqc.config.validate import validation_backend
from bbuqc.io.atomic import write_json_atomic
from bbuqc.io.jsonl import read_rows
from bbuqc.io.run_folder import ANSWERS, BEST_JSON, BEST_LINK, checkpoint_validations, read_validations
from bbuqc.io.run_folder import VALIDATION as HISTORY
from bbuqc.training.selection import (
    VAL,
    VERDICT_FIGURES,
    BestTracker,
    greater_is_better,
    parse_constraint,
    select_metric,
)

log = logging.getLogger(__name__)


def _samples(answers: list) -> list[list[str]]:
    """Each row's answers as a list (one answer per row, or ``train.val_samples`` of them)."""
    return [list(a) if isinstance(a, (list, tuple)) else [a] for a in answers]


def verdict_figures(rows: list[dict], answers: list, params: dict | None = None) -> dict[str, float]:
    """The business figures of each group's answer (or of its samples' majority vote, with the reward means over
    every sample), computed as `bbuqc-evaluate` computes them (``params``: the run's reward parameters by id, so
    `val/verdict.cost` is the cost GRPO trains on). Several samples per row add `val/accuracy_mean`: the
    accuracy of one sample, on average, and `val/accuracy_best`: the share of rows that some sample gets right
    (pass@n: the ceiling of what GRPO, which reweights the model's own samples, can reach at this temperature)."""
    from bbuqc.protocol import parse_verdict
    from bbuqc.stage_b.metrics import group_stats, score_answers

    samples = _samples(answers)
    records = [
        {"label": row["group_label"], "answers": a,
         "rewards": score_answers(a, row["group_label"], row["summaries"], params)}
        for row, a in zip(rows, samples)
    ]
    stats = group_stats(records)
    figures = {k: stats[k] for k in VERDICT_FIGURES}
    figures.update(stats["rewards"])
    for k in VERDICT_FIGURES:  # each rate's Wilson 95% interval: how much ~100 groups pin it down
        if stats[f"{k}_ci95"] is not None:
            figures[f"{k}_lo"], figures[f"{k}_hi"] = stats[f"{k}_ci95"]
    if any(len(a) > 1 for a in samples):
        right = [[parse_verdict(x)[0] == row["group_label"] for x in a] for row, a in zip(rows, samples)]
        figures["accuracy_mean"] = sum(map(sum, right)) / sum(map(len, right))
        figures["accuracy_best"] = sum(map(any, right)) / len(right)
    return {f"{VAL}{k}": float(v) for k, v in figures.items() if v is not None}


def _columns(rows: list[dict]) -> dict[str, list]:
    """The validation rows as the dataset columns ms-swift hands a reward (every key but the prompt)."""
    return {key: [row.get(key) for row in rows] for key in rows[0] if key != "messages"}


def summary_figures(rows: list[dict], answers: list, params: dict | None = None) -> dict[str, float]:
    """The mean of every `summary.*` reward, called as GRPO calls it, over the validation images it speaks about
    (its scope: every image for format and header, the images that show the mission for the content rewards, those
    of its domain for the BBU- and RRU-only ones; a reward with no image in scope has no figure), and their samples.
    Several samples per image add `val/<reward>_best`: the mean over those images of their best sample's value
    (best@n: GRPO's ceiling at this temperature, as for `val/accuracy_best`)."""
    from bbuqc.rewards import get_reward, reward_names

    samples = _samples(answers)
    owner = [i for i, a in enumerate(samples) for _ in a]  # each answer's row
    answers = [x for a in samples for x in a]
    columns = _columns([rows[i] for i in owner])
    out, params = {}, params or {}
    for rid in reward_names():
        if rid.startswith("summary."):
            fn = get_reward(rid, params.get(rid))
            kept = [(row, value) for row, value, scoped in
                    zip(owner, fn(list(answers), **columns), fn.in_scope(list(answers), **columns)) if scoped]
            if not kept:
                continue
            out[f"{VAL}{rid}"] = float(sum(v for _, v in kept) / len(kept))
            if len(answers) > len(samples):
                best: dict[int, float] = {}
                for row, value in kept:
                    best[row] = max(value, best.get(row, value))
                out[f"{VAL}{rid}_best"] = float(sum(best.values()) / len(best))
    return out


def answer_records(task: str, rows: list[dict], answers: list[str], limit: int) -> list[dict]:
    """What a validation answered for its first ``limit`` rows (the same rows every validation, so a row's
    answers can be followed from step to step): its label, the answer and how it was read (the first sample)."""
    rows, answers = rows[:limit], [a[0] for a in _samples(answers[:limit])]
    if not rows:
        return []
    if task == "verdict":
        from bbuqc.protocol import parse_verdict

        out = []
        for i, (row, answer) in enumerate(zip(rows, answers)):
            verdict = parse_verdict(answer)[0]
            out.append({"row": i, "group_id": row.get("group_id"), "mission": row.get("mission"),
                        "label": row["group_label"], "answer": answer, "verdict": verdict or "invalid",
                        "correct": verdict == row["group_label"]})
        return out
    from bbuqc.rewards import get_reward

    columns = _columns(rows)
    f1 = get_reward("summary.content_f1")(list(answers), **columns)
    return [{"row": i, "image": (row.get("images") or [None])[0], "answer": answer, "summary.content_f1": value}
            for i, (row, answer, value) in enumerate(zip(rows, answers, f1))]


def validation_prompts(task: str, rows: list[dict]) -> tuple[list[list[dict]], list | None]:
    """The conversations validation asks (and each one's image, for summaries): a summary row gets the Stage-A
    prompt of its mission, so that validation measures what bbuqc-infer will produce; a verdict row its own."""
    if task == "summary":
        from bbuqc.missions import get_mission
        from bbuqc.prompts.summary import summary_messages

        return [summary_messages(get_mission(r["mission"]), n_images=1) for r in rows], [r["images"][0] for r in rows]
    return [r["messages"] for r in rows], None


class Generator:
    """Greedy answers of the model being trained (or ``samples`` sampled ones per row at ``temperature``, as a
    list per row), by the generation layer `bbuqc-infer` and `bbuqc-evaluate` use (bbuqc/models/generation.py)."""

    def __init__(self, model: Any, processor: Any, task: str, max_new_tokens: int, batch_size: int,
                 samples: int = 1, temperature: float = 1.0):
        from bbuqc.models.generation import Generator as Layer

        self.layer, self.task = Layer(model, processor), task
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.samples, self.temperature = samples, temperature

    def answers(self, rows: list[dict]) -> list:
        model = self.layer.model
        was_training = model.training
        model.eval()
        try:
            out: list = []
            for start in range(0, len(rows), self.batch_size):
                out += self._batch(rows[start : start + self.batch_size])
            return out
        finally:
            model.train(was_training)

    def _batch(self, rows: list[dict]) -> list:
        conversations, images = validation_prompts(self.task, rows)
        n = self.samples
        texts = self.layer.generate(conversations, images, max_new_tokens=self.max_new_tokens,
                                    temperature=self.temperature if n > 1 else 0.0, n=n)
        return texts if n > 1 else [t[0] for t in texts]


class RolloutAnswers:
    """Validation answers by GRPO's own rollout path (ms-swift's ``_generate_completions``, ``train.val_backend``
    rollout, or auto on a ``compute.rollout=vllm_colocate`` run): on colocated vLLM rollouts the engine that
    already holds the policy generates them, its weights synced to this step and woken (and put back to sleep)
    as for a rollout, its tensor-parallel group gathering the ranks' requests; on HF rollouts ms-swift's
    transformers engine over the model being trained, ``batch_size`` rows a call (vLLM takes them all at once).
    Greedy (one answer a row) or ``samples`` answers a row at ``temperature``: the rows are repeated, as GRPO
    repeats a prompt for its group, and the trainer's own request config is put back afterwards."""

    def __init__(self, trainer: Any, task: str, max_new_tokens: int, batch_size: int, samples: int = 1,
                 temperature: float = 1.0):
        self.trainer, self.task = trainer, task
        self.max_new_tokens, self.batch_size, self.samples, self.temperature = (max_new_tokens, batch_size,
                                                                                samples, temperature)

    def answers(self, rows: list[dict]) -> list:
        from copy import copy

        trainer, n = self.trainer, self.samples
        conversations, images = validation_prompts(self.task, rows)
        asked = [{"messages": [dict(m) for m in conversation], **({"images": [images[i]]} if images else {})}
                 for i, conversation in enumerate(conversations) for _ in range(n)]
        config = copy(trainer.request_config)
        config.max_tokens, config.n = self.max_new_tokens, 1
        config.temperature = self.temperature if n > 1 else 0.0
        step = len(asked) if getattr(trainer, "use_fast_infer", False) else self.batch_size * n
        saved, trainer.request_config = trainer.request_config, config
        try:
            done = [sample for start in range(0, len(asked), max(step, 1))
                    for sample in trainer._generate_completions(trainer.to_samples(asked[start:start + step]))]
        finally:
            trainer.request_config = saved
        texts = [sample.messages[-1]["content"] for sample in done]
        return texts if n == 1 else [texts[i:i + n] for i in range(0, len(texts), n)]


def answers_across_ranks(rows: list[dict], answer) -> list:
    """``answer(rows)`` shared out over the ranks of a distributed run: each rank answers every world-th row,
    and the shares are gathered so that every rank holds all the answers in row order (and every rank takes
    the same best-checkpoint and early-stop decisions). Each share is padded to the same length, so that every
    rank makes the same generate() calls: ZeRO-3 generates in lockstep (transformers' synced_gpus), and a
    rank with one call fewer would leave the others waiting. One process: ``answer(rows)``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not rows:
        return answer(rows)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = rows[rank::world]
    size = -(-len(rows) // world)
    local = answer(mine + [rows[0]] * (size - len(mine)))[:len(mine)]
    shares: list = [None] * world
    dist.all_gather_object(shares, local)
    out: list = [None] * len(rows)
    for r, share in enumerate(shares):
        out[r::world] = share
    return out


class ValidationCallback(TrainerCallback):
    def __init__(self, cfg: DictConfig, trainer, validation_rows: Path, run_dir: Path, wandb_run=None, answer=None):
        t = cfg.train
        self.trainer = trainer
        self.task = cfg.task.name
        self.reward_params = reward_params(cfg)  # the rewards scored as GRPO builds them
        self.every = t.eval_steps
        self.patience = t.early_stop_patience
        self.rows = read_rows(validation_rows)
        self.run_dir = run_dir
        self.wandb_run = wandb_run
        metric = select_metric(self.task, t.select_by)
        constraint = parse_constraint(t.select_constraint) if t.get("select_constraint") else None
        self.best = BestTracker(metric, greater_is_better(metric, t.select_greater_is_better), constraint)
        self._answer = answer  # tests: a scripted `rows -> answers`; else the model being trained
        self._max_new_tokens = t.val_max_new_tokens or t.max_completion_length
        self._batch_size = t.val_batch_size
        self._keep = t.get("val_answers", 0)
        self._samples, self._temperature = t.get("val_samples", 1), t.temperature
        self._on_rollout_engine = validation_backend(cfg) == ValBackend.rollout
        self._on_start = bool(t.get("val_on_start", False))

    def _answers(self) -> list[str]:
        answer = self._answer  # tests: scripted
        if answer is None and self._on_rollout_engine:
            answer = RolloutAnswers(self.trainer, self.task, self._max_new_tokens, self._batch_size, self._samples,
                                    self._temperature).answers
        elif answer is None:
            template = getattr(self.trainer, "template", None)
            processor = getattr(template, "processor", None) or self.trainer.processing_class
            model = self.trainer.accelerator.unwrap_model(self.trainer.model)
            answer = Generator(model, processor, self.task, self._max_new_tokens, self._batch_size, self._samples,
                               self._temperature).answers
        return answers_across_ranks(self.rows, answer)

    def on_train_begin(self, args, state, control, **kwargs):
        # a resumed run continues the best so far: its validations up to the checkpoint's step (the log was
        # cut back to it: training/checkpoints.py), else what transformers restored (best_global_step / best_metric)
        resumed = state.global_step > 0  # a fresh run in an old folder replays nothing
        done = [r for r in checkpoint_validations(read_validations(self.run_dir))
                if r["step"] <= state.global_step] if resumed else []
        for row in done:
            self.best.update(row["step"], row.get(self.best.metric), row)
        if not done and state.best_global_step and state.best_metric is not None:
            self.best.best_step, self.best.best_value = state.best_global_step, state.best_metric
        self.best.since_best = 0
        if self._on_start and not resumed:
            figures = self.validate(0, buffered=False)
            log.info("validation of the starting model (step 0): %s=%s", self.best.metric,
                     figures.get(self.best.metric))

    def on_step_end(self, args, state, control, **kwargs):
        if not self.every or state.global_step % self.every:
            return control
        figures = self.validate(state.global_step)
        if self.best.update(state.global_step, figures.get(self.best.metric), figures):
            # set before the save that follows, so transformers protects this checkpoint from rotation
            state.best_global_step = state.global_step
            state.best_metric = self.best.best_value
        control.should_save = control.should_log = True
        if self.patience and self.best.since_best >= self.patience:
            log.info("early stop at step %d: %s has not improved for %d validations (best %s at step %s)",
                     state.global_step, self.best.metric, self.patience, self.best.best_value, self.best.best_step)
            control.should_training_stop = True
        return control

    def validate(self, step: int, buffered: bool = True) -> dict[str, float]:
        """Answer and score the rows; the figures to validation.jsonl and W&B, and (``buffered``) into the
        trainer's metrics, which it flushes into this step's log line (the start's figures would land in
        step 1's line: they stay out of it)."""
        answers = self._answers()
        figures = (verdict_figures if self.task == "verdict" else summary_figures)(self.rows, answers,
                                                                                   self.reward_params)
        figures[f"{VAL}n"] = float(len(self.rows))
        kept = answer_records(self.task, self.rows, answers, self._keep)
        if self.trainer.is_world_process_zero():
            with (self.run_dir / HISTORY).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **figures}, ensure_ascii=False) + "\n")
            if kept:
                with (self.run_dir / ANSWERS).open("a", encoding="utf-8") as f:
                    f.writelines(json.dumps({"step": step, **r}, ensure_ascii=False) + "\n" for r in kept)
        if buffered:
            self._log(figures)
        if self.wandb_run is not None:
            # under val/ as named (transformers' own W&B callback files trainer logs under train/, so the
            # same figures also appear there as train/val/...); stepped like every trainer metric
            logged = {**figures, "train/global_step": step}
            if kept:
                import wandb

                columns = ["step", *kept[0]]
                logged[f"{VAL}answers"] = wandb.Table(columns=columns,
                                                      data=[[step, *(r[c] for c in columns[1:])] for r in kept])
            self.wandb_run.log(logged)
        return figures

    def _log(self, figures: dict[str, float]) -> None:
        # ms-swift's trainers buffer metrics and flush them into the step's own log line, which is how
        # they reach logging.jsonl and W&B beside the loss: GRPO keeps lists (`_metrics`), SFT running
        # means (`custom_metrics`). A validated step is always a logged step.
        grpo_buffer = getattr(self.trainer, "_metrics", None)
        for key, value in figures.items():
            if isinstance(grpo_buffer, dict) and "train" in grpo_buffer:
                grpo_buffer["train"][key].append(value)
            else:
                self.trainer.custom_metrics["train"][key].update(value)

    def on_save(self, args, state, control, **kwargs):
        if self.best.best_step is None or not state.is_world_process_zero:
            return control
        checkpoint = self.run_dir / f"checkpoint-{self.best.best_step}"
        if checkpoint.is_dir():
            best = self.best
            constraint = None
            if best.constraint is not None:
                constraint = {"expr": str(best.constraint), "value": best.best_constrained_value, "met": best.best_meets}
                if not best.best_meets:
                    log.warning("no validation so far meets train.select_constraint=%s: the best checkpoint "
                                "(step %d) is the closest to it (%s=%s)", best.constraint, best.best_step,
                                best.constraint.metric, best.best_constrained_value)
            record_best(self.run_dir, checkpoint, best.best_step, best.metric, best.best_value, constraint)
        return control


def record_best(run_dir: Path, checkpoint: Path, step: int, metric: str, value: float | None,
                constraint: dict | None = None) -> None:
    """`best-checkpoint` -> checkpoint-N (relative, so the run folder can move) and best_checkpoint.json (with
    `constraint`: the train.select_constraint, the best's value of it and whether it meets it)."""
    link = run_dir / BEST_LINK
    tmp = run_dir / f".{BEST_LINK}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(checkpoint.name, tmp)
    os.replace(tmp, link)  # atomic: the link always names a complete checkpoint
    info = {"step": step, "metric": metric, "value": value, "checkpoint": str(checkpoint.resolve())}
    if constraint is not None:
        info["constraint"] = constraint
    write_json_atomic(run_dir / BEST_JSON, info)
