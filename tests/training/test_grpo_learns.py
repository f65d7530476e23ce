"""GRPO learns through bbuqc's wiring (issue 28): a short real ms-swift GRPO run (`python -m bbuqc.train`)
from a verdict model that is unsure raises its label reward, and the same check fails when the reward is
handed another row's label, so a reward that is misaligned with its rows cannot pass silently.

The unsure start: the demo's verdict twin (model=tiny_text_demo, LoRA with trained embeddings and output
layer, as experiments/demo_verdict_sft.yaml) after 40 SFT steps on one mission's perfect Stage-A records
(rru_cable, 300 groups of the synthetic world of seed 0). It has learned to open its answer with 通过 or
不通过 (~88% of the first token's probability) but not yet which one: it gives every group about the same
odds (P(right label | a label) 0.3-0.7 on every group, the same for all pass and for all fail groups). By
step 50 (lr 2e-3, constant) it starts to tell them apart, and by step 60 it is right on nearly all.

GRPO then trains on 8 groups it never saw (world of seed 1, 8 groups a mission: rru_cable's 4 pass + 4 fail),
the label reward alone (format and consistency at weight 0, still logged). Why these settings:
- one-token completions (train.max_completion_length=1): the verdict is one token of the twin's vocabulary
  and verdict.label reads line 1 only, so the advantage lands on the decision itself. With 4-token
  completions (the label, then an echo of it) 30 steps from a like start at lr 1e-4 / 1e-3 moved it by
  +0.02 / +0.15, in swings.
- 8 prompts x 4 generations a step = the whole set, 4 pass and 4 fail groups every step, so an update
  cannot push every answer towards one label. Drawing 8 of 16 groups a step, one seed's run swung between
  all-pass and all-fail steps and rose by 0.09 only; 16 prompts x 2 generations rose by 0.15-0.16.
- lr 1e-3: at 2e-3 it did not rise (0.41 -> 0.49), at 3e-4 it rose about half as fast (both measured
  drawing 8 of 16 groups a step).

Measured (label reward, mean of the first 6 steps -> last 6 of 30; 2026-12-06, ms-swift 4.6, CPU, this
file's settings), the whole chain (SFT and GRPO) with train.seed 42 (the test's) / 7:
- right labels:         0.406 -> 0.797 (+0.39) / 0.385 -> 0.865 (+0.48); frac_reward_zero_std over the
  first 6 steps 0.17 / 0.19
- another row's label:  0.396 -> 0.521 (+0.13) / 0.385 -> 0.458 (+0.07); the misaligned reward itself
  0.490 -> 0.474 / 0.427 -> 0.516. The true label reward still creeps up a little there: the model learns
  to answer with a label at all (any label scores 0.5 on average against a random row's, anything else 0).
MARGIN sits between the two. Cost: ~20 s of one core for the SFT, ~60 s for each GRPO run (both run
side by side), plus the tiny twin's build (~5 s) and the two worlds (~3 s): 2 min 15 s of CPU in all,
2 min 27 s wall on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).with_name("misaligned_label_reward.py")

pytestmark = pytest.mark.slow

MISSION = "rru_cable"  # one focus point (尾纤 seen, none without 套管): the easiest verdict to learn
WINDOW = 6  # steps averaged at each end (each step sees all 8 groups)
MARGIN = 0.25  # the rise the right labels must reach and another row's labels must not (measured above)

# the demo verdict twin's LoRA (experiments/demo_verdict_sft.yaml); GRPO continues the SFT adapter with it
TWIN = ["task=verdict", "model=tiny_text_demo", "data.source=files", "lora.last_k=4", "lora.rank=64",
        "lora.alpha=128", "lora.dropout=0", "lora.modules_to_save=[embed_tokens,lm_head]", "logger=none"]
SFT = ["algo=sft", "train.max_steps=40", "train.save_steps=40", "train.per_device_batch_size=8",
       "train.learning_rate=2e-3", "train.lr_scheduler_type=constant", "train.verdict_line_weight=10",
       "train.max_completion_length=64", "+train.extra.padding_side=left"]
GRPO = ["algo=grpo", "train.max_steps=30", "train.save_steps=30", "train.num_generations=4",
        "train.per_device_batch_size=32", "train.max_completion_length=1", "train.learning_rate=1e-3",
        "train.temperature=1.0", "train.beta=0", "reward=verdict", "reward.weights.verdict.format=0",
        "reward.weights.verdict.consistency=0"]
# the same run, rewarded by the label of another prompt of the batch; verdict.label (weight 0) still logged
MISALIGNED = [f"reward.plugins=[{PLUGIN}]", "reward.weights.verdict.label=0",
              "+reward.weights.verdict.label_of_another_row=2"]


def _env() -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def _start(run: Path, *overrides: str) -> subprocess.Popen:
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{run.name}.log", "w") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "bbuqc.train", *overrides, f"hydra.run.dir={run}"],
                                cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, run: Path) -> Path:
    proc.wait()
    log = (run.parent / f"{run.name}.log").read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, log[-4000:]
    return run


def _world(seed: int, groups: int) -> Path:
    from bbuqc.data.sources import default_world_dir
    from bbuqc.data.synth import ensure_synthetic

    return ensure_synthetic(default_world_dir(seed, groups), seed=seed, groups_per_mission=groups)


@pytest.fixture(scope="session")
def unsure_checkpoint(session_cache, tmp_path_factory) -> Path:
    records = _world(0, 300) / "stage_a" / f"{MISSION}.jsonl"
    run = tmp_path_factory.mktemp("grpo_learns") / "sft"
    _wait(_start(run, *TWIN, *SFT, f"data.stage_a_jsonl=[{records}]"), run)
    return run / "checkpoint-40"


@pytest.fixture(scope="session")
def grpo_runs(unsure_checkpoint, tmp_path_factory) -> dict[str, list[dict]]:
    records = _world(1, 8) / "stage_a" / f"{MISSION}.jsonl"
    labels = [json.loads(line)["label"] for line in records.read_text(encoding="utf-8").splitlines()]
    assert sorted(labels) == ["fail"] * 4 + ["pass"] * 4  # one step = the whole set, balanced
    root = tmp_path_factory.mktemp("grpo_learns_runs")
    common = [*TWIN, *GRPO, f"model.adapter={unsure_checkpoint}", f"data.stage_a_jsonl=[{records}]"]
    # side by side: two processes of one thread each
    procs = {"aligned": _start(root / "aligned", *common),
             "misaligned": _start(root / "misaligned", *common, *MISALIGNED)}
    runs = {name: _wait(proc, root / name) for name, proc in procs.items()}
    return {name: _steps(run) for name, run in runs.items()}


def _steps(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "logging.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if "rewards/verdict.label/mean" in r]


def _ends(steps: list[dict], key: str) -> tuple[float, float]:
    values = [float(s[key]) for s in steps]
    assert len(values) == 30, f"{key}: {len(values)} steps logged"
    return sum(values[:WINDOW]) / WINDOW, sum(values[-WINDOW:]) / WINDOW


LABEL = "rewards/verdict.label/mean"


def test_the_start_is_unsure(grpo_runs):
    steps = grpo_runs["aligned"]
    first, _ = _ends(steps, LABEL)
    assert first < 0.6  # not yet right: about one answer in two
    spread = [float(s["frac_reward_zero_std"]) for s in steps[:WINDOW]]
    assert sum(spread) / WINDOW < 0.5  # most groups' 4 answers disagree: GRPO has a signal
    # both runs start from the same weights, seed and batches: the first step is the same rollout
    assert grpo_runs["misaligned"][0][LABEL] == steps[0][LABEL]


def test_grpo_raises_the_label_reward(grpo_runs):
    first, last = _ends(grpo_runs["aligned"], LABEL)
    assert last - first >= MARGIN, f"label reward {first:.3f} -> {last:.3f}"


def test_the_same_check_fails_when_the_reward_reads_another_rows_label(grpo_runs):
    steps = grpo_runs["misaligned"]
    first, last = _ends(steps, LABEL)
    assert last - first < MARGIN, f"label reward {first:.3f} -> {last:.3f} under a misaligned reward"
    # and the reward it was trained on has nothing to learn from: another group's label is a coin
    first, last = _ends(steps, "rewards/verdict.label_of_another_row/mean")
    assert last - first < MARGIN
