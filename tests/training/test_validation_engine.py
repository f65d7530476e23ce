"""Validation on GRPO's own rollout engine (`train.val_backend`, issue 31): on a `compute.rollout=vllm_colocate` run
the answers come from the colocated vLLM engine that already holds the policy (auto); on CPU the same path runs
through ms-swift's transformers engine (`train.val_backend=rollout`), and its greedy answers are the HF generation
layer's, word for word, so the figures do not depend on which one generated them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import cli_env, compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.config.schema import ValBackend
from bbuqc.config.validate import validation_backend

REPO = Path(__file__).resolve().parents[2]
# the demo's verdict twin: random, but with untied embeddings it writes a different answer for each group
GRPO = ["task=verdict", "model=tiny_text_demo", "algo=grpo", "data.val_fraction=0.25", "train.max_steps=2", "train.eval_steps=2",
        "train.save_steps=2", "train.val_answers=100", "train.max_completion_length=16", "logger=none"]


@pytest.mark.parametrize("overrides, backend", [
    (["algo=grpo"], ValBackend.hf),  # HF rollouts: bbuqc's generation layer
    (["algo=grpo", "compute=gpu_vllm"], ValBackend.rollout),  # the colocated engine that holds the policy
    (["algo=grpo", "compute=gpu_vllm", "train.val_backend=hf"], ValBackend.hf),
    (["algo=sft", "compute=gpu_vllm"], ValBackend.hf),  # SFT has no rollout engine
    (["algo=grpo", "train.val_backend=rollout"], ValBackend.rollout),
])
def test_auto_validates_on_the_colocated_engine(overrides, backend):
    assert validation_backend(compose("train", overrides)) == backend


@pytest.mark.parametrize("overrides, problem", [
    (["algo=sft", "train.val_backend=rollout"],
     "train.val_backend=rollout: the rollout engine is GRPO's (algo=grpo); SFT has none (use auto or hf)"),
    (["algo=grpo", "compute=gpu_vllm_server", "train.val_backend=rollout"],
     "train.val_backend=rollout: validation does not generate on a `swift rollout` server "
     "(compute.rollout=vllm_server); use auto or hf"),
    (["algo=grpo", "compute=gpu_vllm", "+train.extra.async_generate=true"],
     "train.extra.async_generate: validation on the rollout engine (train.val_backend=auto) cannot share it with "
     "asynchronous rollouts; set train.val_backend=hf"),
])
def test_a_backend_that_cannot_validate_is_refused(overrides, problem):
    assert problem in problems(compose("train", overrides), "train")


# The train command in-process, recording which answerer each validation called (and what it returned).
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from hydra import compose, initialize_config_dir
    import bbuqc.config.store
    from bbuqc.runtime.paths import CONF_DIR
    from bbuqc.checks import validate
    from bbuqc.training import runner, validation

    run_dir = Path(sys.argv[1])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=sys.argv[2:])
    validate(cfg, "train")
    calls = []
    for cls in (validation.RolloutAnswers, validation.Generator):
        def recorded(self, rows, _inner=cls.answers, _name=cls.__name__):
            out = _inner(self, rows)
            engine = getattr(getattr(self, "trainer", None), "engine", None)
            calls.append({"answerer": _name, "engine": type(engine).__name__ if engine else None, "rows": len(rows)})
            return out
        cls.answers = recorded
    runner.train(cfg, runner.prepare(cfg, run_dir))
    (run_dir / "calls.json").write_text(json.dumps(calls))
    """
)


def _train(run: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), *GRPO, *overrides], cwd=REPO, env=cli_env(None),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # a real GRPO run and a validation, ~40 s: make test-full; keeps make test under 10 minutes
def test_the_rollout_engine_answers_as_the_generation_layer(session_cache, tmp_path):
    runs = {backend: tmp_path / backend for backend in ("rollout", "hf", "sampled")}
    procs = {b: _train(run, f"train.val_backend={b}") for b, run in runs.items() if b != "sampled"}  # side by side
    procs["sampled"] = _train(runs["sampled"], "train.val_backend=rollout", "train.val_samples=3")
    for b, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{b}: {out[-4000:]}"
    calls = {b: json.loads((run / "calls.json").read_text()) for b, run in runs.items()}
    assert calls["rollout"] == [{"answerer": "RolloutAnswers", "engine": "TransformersEngine", "rows": 10}]
    assert [c["answerer"] for c in calls["hf"]] == ["Generator"]
    kept = {b: [json.loads(line) for line in (run / "validation_answers.jsonl").read_text().splitlines()]
            for b, run in runs.items()}
    answers = [k["answer"] for k in kept["rollout"]]
    assert len(set(answers)) > 1  # the random twin answers each group differently: a real comparison
    assert answers == [k["answer"] for k in kept["hf"]]
    figures = {b: json.loads((run / "validation.jsonl").read_text()) for b, run in runs.items()}
    assert figures["rollout"] == figures["hf"]
    # n sampled answers a row (train.val_samples): the rows repeated as GRPO repeats a prompt, voted per row
    assert calls["sampled"] == [{"answerer": "RolloutAnswers", "engine": "TransformersEngine", "rows": 10}]
    assert "val/accuracy_mean" in figures["sampled"] and figures["sampled"]["val/n"] == 10
