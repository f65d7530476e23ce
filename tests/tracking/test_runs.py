"""What a command's W&B run writes (bbuqc/tracking/runs.py), read back from the offline run file with
bbuqc/tracking/wandb_records.py: its identity and tags, the whole composed config, the logged history, and an
exit code that says whether the command failed. wandb runs in a subprocess, as in a command (an in-process
run would leave its service in this process's environment for the commands later tests start)."""

from __future__ import annotations

import json
import subprocess
import sys

from omegaconf import OmegaConf
from support import cli_env, compose

from bbuqc.tracking.runs import wandb_run
from bbuqc.tracking.wandb_records import find_run_files, read_run, records

WRITER = """
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from bbuqc.tracking.runs import wandb_run

run_dir, cfg, fail = Path(sys.argv[1]), OmegaConf.create(json.loads(sys.argv[2])), sys.argv[3] == "fail"
with wandb_run(cfg, run_dir, "train-verdict") as run:
    for step, reward in ((1, 0.5), (2, 1.5)):
        run.log({"train/global_step": step, "train/reward": reward})
    if fail:
        raise RuntimeError("the body failed")
"""


def _write(tmp_path, overrides: list[str], fail: bool = False) -> subprocess.CompletedProcess:
    cfg = compose("train", ["task=verdict", *overrides])
    tree = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), json.dumps(tree), "fail" if fail else "ok"],
                          capture_output=True, text=True, env=cli_env({"WANDB_SERVICE": None}), timeout=300)


def test_a_finished_run_holds_its_identity_tags_config_and_history(tmp_path):
    done = _write(tmp_path, ["logger.name=my-run", "logger.group=my-group", "lora.last_k=3"])
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = find_run_files(tmp_path)  # offline, under the run folder given
    assert path.parent.name.startswith("offline-run-")
    run = read_run(path)
    assert (run.name, run.group, run.job_type, run.project) == ("my-run", "my-group", "train-verdict", "bbuqc")
    assert run.exit_code == 0
    assert run.config["lora"]["last_k"] == 3 and run.config["task"]["name"] == "verdict"  # the composed tree
    assert [(h["train/global_step"], h["train/reward"]) for h in run.history] == [(1, 0.5), (2, 1.5)]
    assert run.summary["train/reward"] == 1.5
    tags = next(list(r.run.tags) for r in records(path) if r.WhichOneof("record_type") == "run")
    model_type = compose("train", ["task=verdict"]).model.model_type
    assert "task:verdict" in tags and f"model:{model_type}" in tags


def test_a_run_whose_command_fails_is_finished_with_exit_code_1(tmp_path):
    done = _write(tmp_path, [], fail=True)
    assert done.returncode == 1 and "the body failed" in done.stderr  # the error still reaches the caller
    run = read_run(find_run_files(tmp_path)[0])
    assert run.exit_code == 1 and len(run.history) == 2  # what was logged before the failure is kept
    assert run.name == "defaults"  # no overrides and no logger.name: outside a Hydra job


def test_logger_none_opens_no_run_and_writes_nothing(tmp_path):
    with wandb_run(compose("train", ["logger=none"]), tmp_path, "train-verdict") as run:
        assert run is None
    assert list(tmp_path.iterdir()) == []
