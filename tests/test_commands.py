"""The commands as a user meets them: one config each, their --help, exit codes, installation."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import compose, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.sweep import job_dirname

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "infer", "evaluate", "export")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_what_the_command_does(command):
    proc = run_cli(f"bbuqc.{command}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"bbuqc-{command}: ")
    assert "== Config groups" in proc.stdout and "model: " in proc.stdout
    assert "powered by Hydra" not in proc.stdout


def test_infer_and_evaluate_ignore_training_fields():
    assert problems(compose("infer", ["lora.last_k=9", "train.num_generations=1", "chord.enabled=true"]), "infer") == []
    assert problems(compose("evaluate", ["task=verdict", "lora.last_k=9", "train.num_generations=1"]), "evaluate") == []
    # while training still checks them
    assert any("lora.last_k=9" in p for p in problems(compose("train", ["lora.last_k=9"]), "train"))


def test_evaluate_refuses_the_summary_task():
    assert problems(compose("evaluate", ["task=summary"]), "evaluate") == [
        "task=summary: bbuqc-evaluate judges groups (task=verdict)"]


@pytest.mark.parametrize("args", [["mission=foo"], ["lora.nope=1"], ["train.max_steps=abc"], ["lora.last_k=0"]])
def test_every_input_error_exits_2(args, tmp_path):
    proc = run_cli("bbuqc.train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_export_needs_an_adapter_and_an_output(tmp_path):
    proc = run_cli("bbuqc.export", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert [x for x in proc.stderr.splitlines() if x.startswith("error: ")] == [
        "error: model.adapter: required by bbuqc-export (the LoRA checkpoint folder to merge)",
        "error: export.output: required (the folder to write the merged model to)",
    ]


def test_sweep_job_folders_are_flat_whatever_the_overrides():
    name = job_dirname(3, "model.path=/models/Qwen2.5-VL-7B,data.root=/data/审核通过")
    assert "/" not in name and name.startswith("3_model.path=_models_Qwen2.5-VL-7B,")
    assert "审核通过" in name  # readable: only unsafe characters are replaced
    long = job_dirname(0, "x=" + "a" * 500)
    assert len(long) < 140 and long != job_dirname(0, "x=" + "a" * 499)
    cfg = compose("train", ["model.path=/m/x"], return_hydra_config=True)
    from omegaconf import OmegaConf

    assert "bbuqc_job_dirname" in OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"]


@pytest.mark.slow
def test_a_path_override_sweep_gives_flat_job_folders(tmp_path, session_cache):
    sweep = tmp_path / "sweep"
    proc = run_cli("bbuqc.train", "-m", f"model.path={tmp_path / 'missing'},{tmp_path / 'also'}", "logger=none",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0  # both jobs fail validation (no such folder) and are recorded
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2 and all((j / "job_status.json").is_file() for j in jobs)


def test_console_scripts_are_declared_and_run():
    script = Path(sys.executable).parent / "bbuqc-infer"
    assert script.is_file(), "pip install -e . installs the console scripts"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and proc.stdout.startswith("bbuqc-infer: ")



def test_tab_completion_lists_the_group_options():
    # README: eval "$(bbuqc-train -sc install=bash)"; the shell then asks the script itself
    script = Path(sys.executable).parent / "bbuqc-train"
    line = "bbuqc-train mission="
    proc = subprocess.run([str(script), "-sc", "query=bash"], capture_output=True, text=True, cwd="/",
                          env={**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert proc.returncode == 0
    assert {"mission=bbu_wind", "mission=rru_cable"} <= set(proc.stdout.split())

def test_the_wheel_ships_the_configs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                          env={**os.environ, "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("bbuqc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for command in COMMANDS:
        assert f"bbuqc/conf/{command}.yaml" in names
    assert "bbuqc/conf/model/tiny.yaml" in names and "bbuqc/conf/experiment/lora_k.yaml" in names
    assert "bbuqc/conf/experiment/demo_verdict_sft.yaml" in names  # experiments/, the experiment group
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bbuqc-train = bbuqc.train:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # installed (the wheel alone, beside this venv's dependencies), composed from another folder
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(site), str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, str(site / "bin" / "bbuqc-train"), "--cfg", "job",
                           "experiment=demo_verdict_sft"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learning_rate: 0.001" in proc.stdout
    where = subprocess.run([sys.executable, "-c", "import bbuqc.runtime.paths as p; print(p.CONF_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env).stdout.strip()
    assert where == str(site / "bbuqc" / "conf")


def test_an_unquoted_chinese_path_override_says_how_to_quote_it(tmp_path):
    proc = run_cli("bbuqc.infer", "data.root=/data/审核通过", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "data.root='/data/审核通过'" in line


def test_a_model_folder_with_python_files_is_refused_unless_trusted(tmp_path):
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "modeling_evil.py").write_text("import os\n")
    refused = problems(compose("evaluate", [f"model.path={model}"]), "evaluate")
    assert len(refused) == 1 and "modeling_evil.py" in refused[0] and "model.trust_remote_code" in refused[0]
    assert problems(compose("evaluate", [f"model.path={model}", "model.trust_remote_code=true"]), "evaluate") == []


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, session_cache):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli("bbuqc.evaluate", "data.max_rows=2", f"evaluate.output_dir={blocker / 'eval'}", "logger=none",
                   "evaluate.progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert str(blocker / "eval") in line and "Not a directory" in line and "Traceback" not in proc.stderr
    assert blocker.read_text() == "not a folder"
