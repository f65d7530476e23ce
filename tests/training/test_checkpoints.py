"""Checkpoint completeness (one rule for explicit and automatic resume), auto-resume's choice, log cutting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bbuqc.training.checkpoints import (
    checkpoint_problem,
    latest_complete_checkpoint,
    resolve_resume,
    truncate_logs_to,
    wandb_run_id,
)


def complete_checkpoint(folder: Path, step: int = 2) -> Path:
    """A checkpoint with every file transformers needs to continue exactly, written the way it writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"w": torch.zeros(4, 4)}, str(folder / "adapter_model.safetensors"))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    torch.save({"state": {}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    return folder


def test_a_complete_checkpoint_has_no_problem(tmp_path):
    assert checkpoint_problem(complete_checkpoint(tmp_path / "checkpoint-2")) is None


@pytest.mark.parametrize("gone, named", [
    ("optimizer.pt", "missing optimizer.pt"),
    ("scheduler.pt", "missing scheduler.pt"),
    ("trainer_state.json", "missing trainer_state.json"),
    ("adapter_model.safetensors", "missing adapter_model.safetensors"),
    ("rng_state.pth", "missing rng_state.pth"),
])
def test_each_missing_file_is_named(tmp_path, gone, named):
    ckpt = complete_checkpoint(tmp_path / "checkpoint-2")
    (ckpt / gone).unlink()
    assert checkpoint_problem(ckpt) == named


def test_an_empty_folder_names_everything(tmp_path):
    problem = checkpoint_problem(tmp_path)
    for name in ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "optimizer.pt",
                 "scheduler.pt", "rng_state.pth"):
        assert name in problem


@pytest.mark.parametrize("name", ["optimizer.pt", "adapter_model.safetensors", "rng_state.pth"])
def test_a_file_cut_short_by_a_kill_is_detected(tmp_path, name):
    ckpt = complete_checkpoint(tmp_path / "checkpoint-2")
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    assert checkpoint_problem(ckpt) == f"{name} is cut short"


def test_auto_picks_the_latest_complete_and_names_the_half_written_one(tmp_path, caplog):
    complete_checkpoint(tmp_path / "checkpoint-2", 2)
    complete_checkpoint(tmp_path / "checkpoint-4", 4)
    torn = complete_checkpoint(tmp_path / "checkpoint-6", 6)
    (torn / "trainer_state.json").unlink()
    (tmp_path / "last-checkpoint").symlink_to("checkpoint-6")  # never a candidate of its own
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-4"
    assert "checkpoint-6" in caplog.text and "missing trainer_state.json" in caplog.text


def test_auto_without_a_checkpoint_starts_fresh_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("auto", tmp_path) is None
    assert "starting fresh" in caplog.text
    assert latest_complete_checkpoint(tmp_path) is None


def test_logs_are_cut_back_to_the_checkpoint_step(tmp_path):
    rows = [{"loss": 1, "global_step/max_steps": f"{s}/6"} for s in (1, 2, 3)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"loss": 1, "global_st'  # a line torn by the kill
    (tmp_path / "logging.jsonl").write_text(text)
    (tmp_path / "completions.jsonl").write_text(
        "".join(json.dumps({"step": [str(s)] * 2, "prompt": ["p", "p"]}) + "\n" for s in (2, 3)))
    truncate_logs_to(tmp_path, 2)
    steps = [json.loads(line)["global_step/max_steps"] for line in (tmp_path / "logging.jsonl").read_text().splitlines()]
    assert steps == ["1/6", "2/6"]
    completions = [json.loads(line)["step"][0] for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert completions == ["2"]


def test_validations_after_the_checkpoint_are_cut_too(tmp_path):
    """A resumed run validates those steps again: the killed job's figures and answers must not stay twice."""
    for name in ("validation.jsonl", "validation_answers.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps({"step": s, "x": 1}) + "\n" for s in (2, 4, 4, 6)))
    truncate_logs_to(tmp_path, 4)
    for name in ("validation.jsonl", "validation_answers.jsonl"):
        assert [json.loads(line)["step"] for line in (tmp_path / name).read_text().splitlines()] == [2, 4, 4]


def test_the_wandb_run_id_is_made_once_per_run_folder(tmp_path):
    first = wandb_run_id(tmp_path)
    assert first and wandb_run_id(tmp_path) == first
    assert wandb_run_id(tmp_path / "other") != first
