"""Every option of every group, and every experiment, composes and validates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import compose, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.cli import CONF_DIR
from bbuqc.config.reward_sets import reward_set, reward_set_names
from bbuqc.missions import MISSIONS
from bbuqc.rewards import reward_id_problem

REPO = Path(__file__).resolve().parents[2]
GROUPS = ["model", "task", "algo", "reward", "chord", "compute", "logger"]
EXPERIMENTS = Path(CONF_DIR) / "experiment"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def _fit(overrides: list[str], tmp_path: Path) -> list[str]:
    """Make an option runnable: real presets need a checkpoint folder, GPU presets a GPU."""
    cfg = compose("train", overrides)
    extra = []
    if not cfg.model.preset.startswith("tiny"):
        extra.append(f"model.path={tmp_path}")
    if not cfg.model.multimodal and cfg.task.name == "summary":
        extra.append("task=verdict")  # a text model trains verdicts only
    if cfg.reward.name.startswith("verdict") and cfg.task.name == "summary":
        extra.append("task=verdict")
    if cfg.algo.name == "sft" and cfg.chord.enabled:
        extra.append("algo=grpo")  # CHORD is GRPO's
    return overrides + extra


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in _options(g)] + [("mission", m) for m in MISSIONS]
)
def test_every_group_option_composes_and_validates(group, option, tmp_path):
    cfg = compose("train", _fit([f"{group}={option}"], tmp_path))
    assert OmegaConf.select(cfg, group) is not None
    assert problems(cfg, "train") == []


def test_group_options_are_the_documented_ones():
    assert set(_options("reward")) >= {"summary_full", "summary_core", "verdict"}
    assert set(_options("chord")) == {"off", "on"}
    assert set(_options("task")) == {"summary", "verdict"}
    assert "tiny" in _options("model") and len(_options("model")) >= 6
    assert len(MISSIONS) == 7


@pytest.mark.parametrize("experiment", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_composes_and_validates(experiment):
    # an experiment names its command in its usage line (`python -m bbuqc.<command> experiment=...`)
    text = (EXPERIMENTS / f"{experiment}.yaml").read_text(encoding="utf-8")
    command = next((c for c in ("infer", "evaluate", "export") if f"bbuqc.{c} " in text), "train")
    cfg = compose(command, [f"experiment={experiment}"])
    assert cfg.experiment == experiment
    assert problems(cfg, command) == []


def test_weights_are_nested_by_namespace():
    cfg = compose("train", ["reward.weights.summary.format=0.5"])
    assert cfg.reward.weights.summary.format == 0.5
    # order is the reward set's order, which is the order ms-swift receives
    assert list(cfg.reward.weights.summary)[:3] == ["format", "header", "strict"]


def test_summary_full_matches_the_contract():
    cfg = compose("train", ["reward=summary_full"])
    weights = {f"summary.{k}": v for k, v in cfg.reward.weights.summary.items()}
    assert weights == {
        "summary.format": 1.0, "summary.header": 2.0, "summary.strict": 2.0, "summary.parse": 1.5,
        "summary.no_dup_keys": 2.0, "summary.dataset": 0.5, "summary.objects_total_lb": 1.0,
        "summary.category_recall": 0.5, "summary.content_structured_tversky": 1.8, "summary.text_bbu": 0.8,
        "summary.notes_bbu": 0.3, "summary.group_stats_presence": 0.2,
    }
    assert list(weights) == list(reward_set("summary_full"))  # REWARDS.md order


def test_reward_sets_are_the_conf_files():
    assert set(reward_set_names()) >= {"summary_full", "summary_core", "verdict"}
    core, full = reward_set("summary_core"), reward_set("summary_full")
    assert list(core) == [rid for rid in full if rid in core] and all(core[r] == full[r] for r in core)
    assert reward_set("verdict") == {"verdict.format": 1.0, "verdict.label": 2.0, "verdict.consistency": 0.5}
    for name in reward_set_names():
        namespace = "verdict" if name.startswith("verdict") else "summary"
        for rid, weight in reward_set(name).items():
            assert reward_id_problem(rid) is None and rid.startswith(namespace + ".")
            assert isinstance(weight, float) and math.isfinite(weight)
    with pytest.raises(KeyError, match="summary_full"):
        reward_set("nope")


def test_cfg_job_prints_the_composed_tree_without_heavy_imports():
    out = run_cli("train", "reward=summary_full", "lora.last_k=4", "--cfg", "job", python=["-X", "importtime"])
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = OmegaConf.create(out.stdout)
    assert cfg.lora.last_k == 4 and cfg.reward.name == "summary_full"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "transformers", "swift", "peft", "trl", "datasets", "wandb"}
