"""ms-swift-format rows train (`data.source=files data.swift_jsonl=[...]`): real ms-swift runs of 2 steps on the
tiny models, GRPO on images with a plug-in reward reading the rows' own column, SFT on text rows whose
assistant turn is the target, with held-out validation on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_cli

from tests.data.test_swift_rows import META, png, summary_row, verdict_row, write

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
from bbuqc.rewards import row_reward


@row_reward("summary.has_solution", 0.0, 1.0)
def has_solution(completion, solution, **_):
    """1 when the row's own `solution` column reached the reward."""
    return 1.0 if solution.startswith("<DOMAIN=BBU>") else 0.0
'''


def train(run_dir: Path, *overrides: str) -> list[dict]:
    proc = run_cli("train", "data.source=files", "train.max_steps=2", "lora.last_k=1", "logger=none", *overrides,
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    return [r for r in lines if "global_step/max_steps" in r and "loss" in r]


@pytest.mark.slow
def test_grpo_on_ms_swift_image_rows_passes_their_columns_to_the_rewards(session_cache, tmp_path):
    rows = [summary_row(f"imgs/{i}.png", metadata=META, solution=summary_row("x")["messages"][-1]["content"])
            for i in range(4)]
    for i in range(4):
        png(tmp_path / "imgs" / f"{i}.png", (60 * i, 100, 200))
    data = write(tmp_path / "train.jsonl", rows)
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    run_dir = tmp_path / "run"
    steps = train(run_dir, "task=summary", "reward=summary_core", f"data.swift_jsonl=[{data}]",
                  f"reward.plugins=[{plugin}]", "+reward.weights.summary.has_solution=1")
    assert [s["global_step/max_steps"] for s in steps] == ["1/2", "2/2"]
    # every completion's row carried its solution, whatever the untrained model wrote
    assert all(s["rewards/summary.has_solution/mean"] == 1.0 for s in steps)
    assert all(s["rewards/summary.format/errors"] == 0 for s in steps)
    snapshot = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert [r["images"] for r in snapshot] == [[str((tmp_path / "imgs" / f"{i}.png").resolve())] for i in range(4)]
    assert (run_dir / "checkpoint-2" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_sft_on_ms_swift_text_rows_learns_their_assistant_turn_and_validates_on_the_prompt(session_cache, tmp_path):
    rows = [verdict_row("通过" if i % 2 else "不通过", group_id=f"g{i}") for i in range(8)]
    data = write(tmp_path / "train.jsonl", rows)
    run_dir = tmp_path / "run"
    steps = train(run_dir, "task=verdict", "algo=sft", f"data.swift_jsonl=[{data}]", "data.val_fraction=0.25",
                  "train.eval_steps=2")
    assert len(steps) == 2
    trained = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    sources = [r["messages"] for r in rows]
    assert len(trained) == 6 and all(r["messages"] in sources for r in trained)  # the answers as written
    held_out = [json.loads(line) for line in (run_dir / "data" / "validation.jsonl").read_text().splitlines()]
    assert len(held_out) == 2 and all(r["messages"][-1]["role"] == "user" for r in held_out)
    history = [json.loads(line) for line in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2] and "val/accuracy" in history[0]
