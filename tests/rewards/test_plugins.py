"""Reward plug-ins (`reward.plugins`): docs/rewards.md's worked example, registered, scored, checked and trained
with; every bad plug-in refused in one line before any model loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import compose, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.rewards import REGISTRY, get_reward

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "rewards.md"


def doc_example() -> str:
    """The plug-in of docs/rewards.md, "Your own rewards" (the first python block of that section)."""
    section = DOC.read_text(encoding="utf-8").split("## Your own rewards", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def plugin_file(tmp_path, restored_rewards):
    """The doc's plug-in as a file; whatever the test registers is unregistered afterwards."""
    path = tmp_path / "my_rewards.py"
    path.write_text(doc_example(), encoding="utf-8")
    return path


def _problems(*overrides: str) -> list[str]:
    cfg = compose("train", ["task=verdict", "reward=verdict_cost", *overrides])
    return problems(cfg, "train")


def test_the_docs_example_registers_and_scores_with_its_parameters(plugin_file):
    assert _problems(f"reward.plugins=[{plugin_file}]", "+reward.weights.verdict.short_reason=0.5",
                     "+reward.params.verdict.short_reason.max_chars=10") == []
    assert "verdict.short_reason" in REGISTRY and REGISTRY["verdict.short_reason"].spec.lo == 0.0
    answers = ["通过\n理由: 正常", "不通过\n理由: 图片_1中挡风板缺失且线缆散乱", "通过"]
    labels = ["通过", "不通过", "通过"]
    default = get_reward("verdict.short_reason")(answers, group_label=labels, summaries=[None] * 3)
    short = get_reward("verdict.short_reason", {"max_chars": 10})(answers, group_label=labels, summaries=[None] * 3)
    assert default == [1.0, 1.0, 0.0]
    assert short[0] == 1.0 and short[1] == pytest.approx(10 / len("理由: 图片_1中挡风板缺失且线缆散乱")) and short[2] == 0.0
    # loading it again (validation runs once per process and per sweep job) changes nothing
    assert _problems(f"reward.plugins=[{plugin_file}]") == []


def test_an_undeclared_parameter_of_a_plugin_reward_is_refused(plugin_file):
    (line,) = _problems(f"reward.plugins=[{plugin_file}]", "+reward.weights.verdict.short_reason=1",
                        "+reward.params.verdict.short_reason.max_words=3")
    assert line.startswith("reward.params.verdict.short_reason.max_words") and "max_chars" in line


@pytest.mark.parametrize("source, expected", [
    (None, "no such file"),
    ("import nothing_of_the_kind\n", "does not import: ModuleNotFoundError: No module named 'nothing_of_the_kind'"),
    ("def f(:\n", "does not import: SyntaxError"),
    ("X = 1\n", "registers no reward"),
    ("from bbuqc.rewards import row_reward\n@row_reward('verdict.label', 0.0, 1.0)\ndef f(completion, **_):\n"
     "    return 1.0\n", "'verdict.label' is already registered"),
    ("from bbuqc.rewards import row_reward\n@row_reward('myreward', 0.0, 1.0)\ndef f(completion, **_):\n"
     "    return 1.0\n", "needs a task namespace"),
])
def test_a_bad_plugin_is_one_line_naming_it(tmp_path, plugin_file, source, expected):
    path = tmp_path / "bad.py"
    if source is not None:
        path.write_text(source, encoding="utf-8")
    before = set(REGISTRY)
    (line,) = _problems(f"reward.plugins=[{path}]")
    assert line.startswith(f"reward.plugins: {path}: ") and expected in line, line
    assert set(REGISTRY) == before  # nothing of a refused plug-in stays registered


def test_a_module_that_does_not_exist_is_refused():
    (line,) = _problems("reward.plugins=[no.such.module]")
    assert line == ("reward.plugins: no.such.module: no such module (a reward plug-in is a .py file or an "
                    "importable module)")


def test_a_grpo_run_trains_with_the_plugin_and_logs_its_mean(session_cache, tmp_path):
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(doc_example(), encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = run_cli("train", "task=verdict", "reward=verdict", f"reward.plugins=[{plugin}]",
                   "+reward.weights.verdict.short_reason=1", "train.max_steps=2", "lora.last_k=1",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s and "global_step/max_steps" in s]
    assert len(steps) == 2 and all("rewards/verdict.short_reason/mean" in s for s in steps)
    assert all(s["rewards/verdict.short_reason/errors"] == 0 for s in steps if "rewards/verdict.short_reason/errors" in s)
