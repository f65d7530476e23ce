"""The end-of-run summary and its warnings, from a run folder's own files (bbuqc/training/diagnosis.py)."""

from __future__ import annotations

import json
from pathlib import Path

from bbuqc.training.diagnosis import diagnose, summary_lines, write_summary


def _run(tmp_path: Path, steps: list[dict], best: dict | None = None) -> Path:
    lines = [{"loss": 0.0, "global_step/max_steps": f"{i + 1}/{len(steps)}", **s} for i, s in enumerate(steps)]
    lines.append({"train_runtime": 1.0})  # ms-swift's closing line: not a step
    (tmp_path / "logging.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if best:
        (tmp_path / "best_checkpoint.json").write_text(json.dumps(best))
    return tmp_path


def test_a_grpo_run_without_reward_spread_is_flagged(tmp_path):
    steps = [{"reward": 1.0, "frac_reward_zero_std": 1.0}] * 7 + [{"reward": 0.5, "frac_reward_zero_std": 0.5}] * 3
    summary = diagnose(_run(tmp_path, steps))
    assert summary["steps"] == 10 and summary["no_signal_step_share"] == 0.7
    (warning,) = summary["warnings"]
    assert warning.startswith("no learning signal in 70% of the GRPO steps") and "rows where the start is unsure" in warning


def test_a_run_that_learns_gets_no_warning_and_says_reward_first_to_last(tmp_path):
    steps = [{"reward": r / 10, "frac_reward_zero_std": 0.25, "completions/clipped_ratio": 0.0,
              "rewards/verdict.label/errors": 0.0} for r in range(10)]
    best = {"step": 8, "metric": "val/accuracy", "value": 0.9, "checkpoint": "/r/checkpoint-8"}
    summary = write_summary(_run(tmp_path, steps, best), 64)
    assert summary["warnings"] == [] and (summary["reward_first"], summary["reward_last"]) == (0.0, 0.9)
    assert json.loads((tmp_path / "run_summary.json").read_text()) == summary
    lines = summary_lines(summary)
    assert "best checkpoint: /r/checkpoint-8 (val/accuracy=0.9 at step 8)" in lines
    assert "reward (first -> last tenth of the steps): 0.000 -> 0.900" in lines


def test_clipped_completions_reward_errors_and_an_unmet_constraint_are_flagged(tmp_path):
    steps = [{"reward": 0.1, "frac_reward_zero_std": 0.0, "completions/clipped_ratio": 0.5,
              "rewards/summary.format/errors": 2.0}] * 4
    best = {"step": 4, "metric": "val/accuracy", "value": 0.7, "checkpoint": "/r/checkpoint-4",
            "constraint": {"expr": "val/false_pass_rate<=0.05", "value": 0.12, "met": False}}
    warnings = diagnose(_run(tmp_path, steps, best), 48)["warnings"]
    assert any(w.startswith("50% of the completions were cut at train.max_completion_length=48") for w in warnings)
    assert any(w.startswith("reward summary.format raised on 8 rows") for w in warnings)
    assert any("no validation met train.select_constraint=val/false_pass_rate<=0.05" in w for w in warnings)


def test_an_sft_run_reports_its_loss(tmp_path):
    steps = [{"loss": 2.0}] + [{"loss": 1.0}] * 9
    lines = summary_lines(diagnose(_run(tmp_path, [dict(s) for s in steps])))
    assert lines[-1] == "loss (first -> last tenth of the steps): 2.0000 -> 1.0000"
