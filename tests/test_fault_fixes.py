"""Regressions found by the fault battery (benchmarks/fault_battery.py, docs/errors.md): each bad input
is one `error:` line, exit 2, instead of a traceback or a silent mismatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def _checkpoint(folder: Path, rank: int, modules_to_save: list[str] | None = None) -> Path:
    """A complete checkpoint (every file a resume needs) whose LoRA has rank ``rank``."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank,
                                                            "modules_to_save": modules_to_save}))
    save_file({"w": torch.zeros(2, 2)}, str(folder / "adapter_model.safetensors"))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({}, folder / name)
    return folder


def test_resume_with_another_lora_rank_is_refused(tmp_path):
    # ms-swift silently kept the checkpoint's rank 8 while the run's config said lora.rank=16
    ckpt = _checkpoint(tmp_path / "checkpoint-1", rank=8)
    other = compose("train", [f"train.resume_from={ckpt}", "lora.rank=16"])
    same = compose("train", [f"train.resume_from={ckpt}", "lora.rank=8"])
    assert [p for p in problems(other, "train") if "lora.rank" in p] == [
        f"lora.rank=16: train.resume_from={ckpt} has rank 8; a resumed run continues that LoRA, so set lora.rank=8"]
    assert not [p for p in problems(same, "train") if "lora.rank" in p]


def test_continuing_a_lora_with_other_modules_to_save_is_refused(tmp_path):
    # PEFT restores the checkpoint's modules_to_save whatever the run says: say it, so the config is true
    ckpt = _checkpoint(tmp_path / "checkpoint-1", rank=8, modules_to_save=["lm_head", "embed_tokens"])
    other = compose("train", [f"model.adapter={ckpt}", "lora.rank=8", "lora.last_k=2"])
    same = compose("train", [f"model.adapter={ckpt}", "lora.rank=8",
                                                   "lora.modules_to_save=[embed_tokens,lm_head]"])
    assert [p for p in problems(other, "train") if "modules_to_save" in p] == [
        f"lora.modules_to_save=[]: model.adapter={ckpt} trains ['embed_tokens', 'lm_head']; training continues "
        "that LoRA, so set lora.modules_to_save=['embed_tokens', 'lm_head']"]
    assert not [p for p in problems(same, "train") if "modules_to_save" in p]


def test_vllm_refuses_an_adapter_with_whole_modules_naming_the_way_out(tmp_path):
    ckpt = _checkpoint(tmp_path / "checkpoint-1", rank=8, modules_to_save=["embed_tokens", "lm_head"])
    vllm = compose("infer", [f"model.adapter={ckpt}", "infer.backend=vllm"])
    hf = compose("infer", [f"model.adapter={ckpt}"])
    assert [p for p in problems(vllm, "infer") if "vllm" in p] == [
        f"model.adapter={ckpt}: trains whole modules (embed_tokens, lm_head; lora.modules_to_save), which "
        "infer.backend=vllm cannot apply; merge it (bbuqc-export) and pass the merged folder as model.path, "
        "or use infer.backend=hf"]
    assert not [p for p in problems(hf, "infer") if "vllm" in p]


def test_modules_to_save_on_tied_embeddings_is_refused_before_weights_load(tmp_path):
    # tiny_text ties lm_head to embed_tokens: PEFT would train a copy of one and leave the other frozen
    proc = _run("bbuqc.train", "task=verdict", "algo=sft", "model=tiny_text", "lora.modules_to_save=[embed_tokens]",
                "logger=none", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: lora.modules_to_save=['embed_tokens']: ") and "ties lm_head to embed_tokens" in line
    assert not list((tmp_path / "run").glob("checkpoint-*"))


@pytest.mark.parametrize("command", ["infer", "evaluate", "train"])
def test_a_run_folder_under_a_file_is_one_line(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    proc = _run(f"bbuqc.{command}", f"hydra.run.dir={blocker}/run", "logger=none")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith(f"error: hydra.run.dir={blocker}/run: cannot create the run folder: Not a directory")
    assert blocker.read_text() == "not a folder\n"


def test_hydra_full_error_0_is_off_like_unset(tmp_path):
    proc = _run("bbuqc.infer", "mission=foo", f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "Could not find 'mission/foo'" in proc.stderr


def test_an_input_error_that_is_also_an_oserror_is_its_own_line():
    from bbuqc.cli import _error_lines
    from bbuqc.data.rows import RowFileNotFoundError

    err = RowFileNotFoundError("/d/rows.jsonl:2: images: file not found: /d/gone.jpg")
    assert isinstance(err, FileNotFoundError) and err.filename is None
    assert _error_lines(err) == ["/d/rows.jsonl:2: images: file not found: /d/gone.jpg"]


def test_a_missing_training_image_is_a_row_error(tmp_path):
    from bbuqc.data.rows import RowFormatError, load_summary_rows

    rows = tmp_path / "rows.jsonl"
    row = {"messages": [], "images": [str(tmp_path / "gone.jpg")], "solution": "x", "mission": "bbu_wind",
           "metadata": {"domain": "BBU", "irrelevant": False, "summary_ref": "{}"}}
    rows.write_text(json.dumps(row) + "\n")
    with pytest.raises(RowFormatError, match=rf"{rows}:1: images: file not found"):
        load_summary_rows(rows)


def test_a_stage_a_output_under_a_file_says_so(tmp_path):
    from bbuqc.io.jsonl import JsonlError, ResumableJsonl

    (tmp_path / "a-file").write_text("x")
    writer = ResumableJsonl(tmp_path / "a-file" / "out.jsonl", parse=lambda o: o, key=lambda r: r["k"])
    with pytest.raises(JsonlError, match=rf"cannot open for writing: Not a directory: {tmp_path}/a-file is a file"):
        writer.open()


def test_a_sweep_folder_that_cannot_be_made_is_one_line_before_any_job(tmp_path):
    # Hydra's launcher used to make it, failing with a traceback after the sweep had started
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    proc = _run("bbuqc.train", "-m", "lora.last_k=1,2", f"hydra.sweep.dir={blocker}/sweep",
                env={"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={blocker}/sweep: cannot create the sweep folder: Not a directory ({blocker}/sweep)"]
    assert blocker.read_text() == "not a folder\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
