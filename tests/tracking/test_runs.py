"""What a command's W&B run writes (bbuqc/tracking/runs.py), read back from the offline run file with
bbuqc/tracking/wandb_records.py: its identity and tags, the whole composed config, the logged history, and an
exit code that says whether the command failed. wandb runs in a subprocess, as in a command (an in-process
run would leave its service in this process's environment for the commands later tests start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import cli_env, compose

from bbuqc.tracking.runs import wandb_run
from bbuqc.tracking.wandb_records import find_run_files, read_run, records

WRITER = """
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from bbuqc.tracking.runs import wandb_run

# two commands' runs, one process (one W&B service start): the first finishes, the second's body fails
for run_dir, cfg, fail in ((sys.argv[1], sys.argv[2], False), (sys.argv[3], sys.argv[4], True)):
    with wandb_run(OmegaConf.create(json.loads(cfg)), Path(run_dir), "train-verdict") as run:
        for step, reward in ((1, 0.5), (2, 1.5)):
            run.log({"train/global_step": step, "train/reward": reward})
        if fail:
            raise RuntimeError("the body failed")
"""


def _tree(overrides: list[str]) -> str:
    cfg = compose("train", ["task=verdict", *overrides])
    return json.dumps(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    ok, failed = tmp_path_factory.mktemp("finished"), tmp_path_factory.mktemp("failed")
    done = subprocess.run([sys.executable, "-c", WRITER,
                           str(ok), _tree(["logger.name=my-run", "logger.group=my-group", "lora.last_k=3"]),
                           str(failed), _tree([])],
                          capture_output=True, text=True, env=cli_env({"WANDB_SERVICE": None}), timeout=300)
    return ok, failed, done


def test_a_finished_run_holds_its_identity_tags_config_and_history(written):
    ok, _, _ = written
    (path,) = find_run_files(ok)  # offline, under the run folder given
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


def test_a_run_whose_command_fails_is_finished_with_exit_code_1(written):
    _, failed, done = written
    assert done.returncode == 1 and "the body failed" in done.stderr  # the error still reaches the caller
    run = read_run(find_run_files(failed)[0])
    assert run.exit_code == 1 and len(run.history) == 2  # what was logged before the failure is kept
    assert run.name == "defaults"  # no overrides and no logger.name: outside a Hydra job


def test_logger_none_opens_no_run_and_writes_nothing(tmp_path):
    with wandb_run(compose("train", ["logger=none"]), tmp_path, "train-verdict") as run:
        assert run is None
    assert list(tmp_path.iterdir()) == []
