"""What a finished training run says about itself: one short summary, and warnings when it could not learn.

"Why is my GRPO loss always 0?" is among the most asked questions of TRL's and ms-swift's users: when every
completion of a prompt gets the same reward, the group's advantages are 0 and so is the gradient, and the
run ends as if all were well. Read from the run folder's own files (ms-swift's `logging.jsonl`, bbuqc's
`best_checkpoint.json`), so it also tells a finished run's story after the fact. Written to
`run_summary.json` and the run's log at the end of every training run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bbuqc.io.atomic import write_json_atomic
from bbuqc.io.run_folder import SUMMARY, log_rows, read_best, step_rows

log = logging.getLogger(__name__)

ZERO_SPREAD = 0.9  # a step whose share of prompts with one reward for all completions is at least this ...
NO_SIGNAL_SHARE = 0.5  # ... in at least this share of the steps: the run had almost nothing to learn from
CLIPPED = 0.1  # mean share of completions cut at train.max_completion_length


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ends(values: list[float]) -> tuple[float | None, float | None]:
    """The mean of the first and of the last tenth (at least one step each)."""
    k = max(1, len(values) // 10)
    return (_mean(values[:k]), _mean(values[-k:])) if values else (None, None)


def diagnose(run_dir: Path, max_completion_length: int | None = None) -> dict[str, Any]:
    """The run's summary and warnings (each with its likely cause and the fix)."""
    steps = step_rows(log_rows(run_dir))
    best = read_best(run_dir)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "steps": len(steps), "best_checkpoint": best,
                               "warnings": []}
    warnings = summary["warnings"]
    rewards = [float(r["reward"]) for r in steps if r.get("reward") is not None]
    if rewards:
        summary["reward_first"], summary["reward_last"] = _ends(rewards)
    loss = [float(r["loss"]) for r in steps if r.get("loss") is not None]
    if loss:
        summary["loss_first"], summary["loss_last"] = _ends(loss)

    spread = [float(r["frac_reward_zero_std"]) for r in steps if r.get("frac_reward_zero_std") is not None]
    if spread:
        share = sum(s >= ZERO_SPREAD for s in spread) / len(spread)
        summary["no_signal_step_share"] = share
        if share >= NO_SIGNAL_SHARE:
            warnings.append(
                f"no learning signal in {share:.0%} of the GRPO steps (frac_reward_zero_std >= {ZERO_SPREAD}: every "
                "completion of a prompt got the same reward, so its advantage and gradient are 0). Likely cause: the "
                "start model answers these rows always right (it was trained on them) or always wrong (it cannot do "
                "the task yet, e.g. no SFT first). Fix: train on rows where the start is unsure (held-out or "
                "Stage-A's own records), SFT first, raise train.num_generations or train.temperature, or use a "
                "graded reward")
    clipped = [float(r["completions/clipped_ratio"]) for r in steps if r.get("completions/clipped_ratio") is not None]
    if clipped and (mean := _mean(clipped)) >= CLIPPED:
        summary["clipped_share"] = mean
        warnings.append(
            f"{mean:.0%} of the completions were cut at train.max_completion_length={max_completion_length}: a cut "
            "answer is scored unfinished (format rewards fail). Fix: raise train.max_completion_length, or teach the "
            "format first (SFT)")
    errors: dict[str, float] = {}
    for r in steps:
        for key, value in r.items():
            if key.startswith("rewards/") and key.endswith("/errors") and value:
                rid = key[len("rewards/"):-len("/errors")]
                errors[rid] = errors.get(rid, 0.0) + float(value)
    if errors:
        summary["reward_errors"] = errors
        for rid, count in sorted(errors.items()):
            warnings.append(f"reward {rid} raised on {count:g} rows (scored as its lowest value). Likely cause: a "
                            "row without the columns it reads; fix: check the data (the run's log names the rows)")
    if best is not None and best.get("constraint", {}).get("met") is False:
        c = best["constraint"]
        warnings.append(f"no validation met train.select_constraint={c['expr']} (the best is the closest: "
                        f"{c['value']}); more steps, another learning rate, or a looser constraint")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few lines for the console and the log."""
    lines = [f"run folder: {summary['run_dir']} ({summary['steps']} steps logged)"]
    best = summary.get("best_checkpoint")
    if best:
        lines.append(f"best checkpoint: {best['checkpoint']} ({best['metric']}={best['value']} at step {best['step']})")
    if summary.get("reward_first") is not None:
        lines.append(f"reward (first -> last tenth of the steps): {summary['reward_first']:.3f} -> "
                     f"{summary['reward_last']:.3f}")
    elif summary.get("loss_first") is not None:
        lines.append(f"loss (first -> last tenth of the steps): {summary['loss_first']:.4f} -> "
                     f"{summary['loss_last']:.4f}")
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return lines


def write_summary(run_dir: Path, max_completion_length: int | None = None) -> dict[str, Any]:
    """Diagnose the run, write `run_summary.json` and log the lines; returns the summary."""
    summary = diagnose(run_dir, max_completion_length)
    write_json_atomic(run_dir / SUMMARY, summary)
    for line in summary_lines(summary):
        (log.warning if line.startswith("warning:") else log.info)(line)
    return summary
