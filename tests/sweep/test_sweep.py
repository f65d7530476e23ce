"""Sweeps end to end: `python -m bbuqc.train -m ...` with the basic and the Ray launcher.

Fast: the sweep callback's records, the launcher configs, and one 2-job basic sweep whose
second job fails validation in-job. Slow (`make test-full`): the 4-job sweep (2 header
weights x 2 LoRA K, one GRPO step each on the tiny model, W&B offline) with the basic launcher
and with the Ray launcher on CPU workers, and a Ray sweep with a failing job.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf
from support import compose, run_cli

from bbuqc.config.validate import ConfigError
from bbuqc.sweep import gpus_per_job
from bbuqc.sweep.records import SweepRecords, write_sweep_summary
from bbuqc.tracking.wandb_records import find_run_files, read_run

REPO = Path(__file__).resolve().parents[2]
# one short GRPO step on the tiny model: the cheapest real job
SHORT = ["train.max_steps=1", "train.per_device_batch_size=2", "train.max_completion_length=8", "train.save_steps=1"]
# ray: a fresh local instance with 2 CPU workers (never a cluster someone started on this machine)
RAY = ["hydra/launcher=ray", "hydra.launcher.ray.init.address=local", "hydra.launcher.ray.init.num_cpus=2"]


def sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli("train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", env={"RAY_ADDRESS": None}, timeout=1800)


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def status(job: Path) -> dict:
    return json.loads((job / "job_status.json").read_text())


def report(sweep_dir: Path) -> list[dict]:
    proc = run_cli("report", str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader((sweep_dir / "report.csv").open()))


def check_completed_job(job: Path, group: str) -> None:
    assert status(job)["status"] == "completed" and not (job / "error.txt").exists()
    assert '"train_runtime"' in (job / "logging.jsonl").read_text()
    (run_file,) = find_run_files(job)
    run = read_run(run_file)
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    assert run.group == group
    assert run.name == ",".join(overrides)
    assert run.job_type == "train-summary"
    assert run.exit_code == 0


def check_four_job_sweep(proc: subprocess.CompletedProcess, sweep_dir: Path, group: str) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = job_folders(sweep_dir)
    assert len(jobs) == 4
    for job in jobs:
        check_completed_job(job, group)
    pairs = {(status(j)["overrides"][0], status(j)["overrides"][1]) for j in jobs}
    assert len(pairs) == 4  # the cartesian product, once each
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["counts"] == {"completed": 4}
    rows = report(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert all(r["final_reward"] and r["summary.header"] for r in rows)
    assert {r["wandb_group"] for r in rows} == {group}
    for name in ("reward_curves.png", "final_reward_vs_reward.weights.summary.header.png", "final_reward_vs_lora.last_k.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def check_one_failed(proc: subprocess.CompletedProcess, sweep_dir: Path, group: str) -> None:
    # Hydra's sweeper runs every job, then re-raises the first failure: exit status 1
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "ConfigError" in proc.stderr
    ok, bad = job_folders(sweep_dir)
    check_completed_job(ok, group)
    record = status(bad)
    assert record["status"] == "failed" and record["overrides"][0] == "lora.last_k=99"
    error = (bad / "error.txt").read_text()
    assert error.startswith("ConfigError: lora.last_k=99: model=tiny has only 4 LLM blocks")
    assert "Traceback (most recent call last)" in error
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["counts"] == {"completed": 1, "failed": 1}
    assert [j["status"] for j in summary["jobs"]] == ["completed", "failed"]
    assert "only 4 LLM blocks" in summary["jobs"][1]["error"]
    rows = report(sweep_dir)
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert rows[0]["final_reward"] and not rows[1]["final_reward"]
    assert "only 4 LLM blocks" in rows[1]["error"]
    assert "## Failed jobs" in (sweep_dir / "report.md").read_text()


# -- fast -----------------------------------------------------------------------------------
def _job_config(tmp_path: Path, num: int, overrides: list[str]):
    return OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path / f"{num}_job")}, "job": {"num": num}}})


def _job_return(status_: JobStatus, value, overrides: list[str]) -> JobReturn:
    ret = JobReturn(overrides=overrides, status=status_)
    ret._return_value = value
    return ret


def test_callback_records_every_job_and_the_sweep(tmp_path):
    callback = SweepRecords()
    callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    try:
        raise ValueError("bad weight\nsecond line")
    except ValueError as err:
        error = err
    for num, (st, value) in enumerate([(JobStatus.COMPLETED, {"global_step": 1, "log_history": [1, 2]}), (JobStatus.FAILED, error)]):
        job_dir = tmp_path / f"{num}_job"
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"a={num}"]))
        callback.on_job_end(_job_config(tmp_path, num, [f"a={num}"]), _job_return(st, value, [f"a={num}"]))

    done, failed = status(tmp_path / "0_job"), status(tmp_path / "1_job")
    assert done == {"status": "completed", "num": 0, "overrides": ["a=0"], "return": {"global_step": 1}, "error": None}
    assert failed["status"] == "failed" and failed["error"] == "ValueError: bad weight | second line"
    assert not (tmp_path / "0_job" / "error.txt").exists()
    text = (tmp_path / "1_job" / "error.txt").read_text()
    assert text.startswith("ValueError: bad weight\nsecond line\n\nTraceback (most recent call last):")
    assert 'raise ValueError("bad weight' in text

    callback.on_multirun_end(OmegaConf.create({}))
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["counts"] == {"completed": 1, "failed": 1}
    assert [(j["dir"], j["status"], j["overrides"]) for j in summary["jobs"]] == [
        ("0_job", "completed", ["a=0"]), ("1_job", "failed", ["a=1"])
    ]
    # a job folder without records (its process died) is listed as unknown
    (tmp_path / "2_job" / ".hydra").mkdir(parents=True)
    (tmp_path / "2_job" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["a=2"]))
    summary = json.loads(write_sweep_summary(tmp_path).read_text())
    assert summary["jobs"][2] == {"dir": "2_job", "num": None, "overrides": ["a=2"], "status": "unknown", "error": None}


def test_the_callback_pickles_for_ray(tmp_path):
    import pickle

    callback = SweepRecords()
    callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert pickle.loads(pickle.dumps(callback))._sweep_dir == str(tmp_path.resolve())


@pytest.mark.parametrize(
    "env,address,per_job,expected",
    [
        ({"CUDA_VISIBLE_DEVICES": ""}, None, 1, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None, 1, 0),
        ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, None, 1, 1),
        ({"CUDA_VISIBLE_DEVICES": "2"}, None, 2, 2),
        ({"CUDA_VISIBLE_DEVICES": ""}, "auto", 1, 1),  # a cluster's GPUs are not visible from here
        ({"CUDA_VISIBLE_DEVICES": ""}, "local", 1, 0),
        ({"CUDA_VISIBLE_DEVICES": "", "RAY_ADDRESS": "10.0.0.1:6379"}, None, 1, 1),
    ],
)
def test_gpus_per_job(monkeypatch, env, address, per_job, expected):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert gpus_per_job(address, per_job) == expected


def _launcher(overrides: list[str]):
    cfg = compose("train", overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_ray_launcher_config(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = _launcher(["hydra/launcher=ray"])
    assert cpu["_target_"] == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert cpu["ray"]["remote"]["num_gpus"] == 0  # CPU workers, or Ray would wait for a GPU forever
    assert cpu["ray"]["init"]["include_dashboard"] is False and cpu["ray"]["init"]["num_cpus"] is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    assert _launcher(["hydra/launcher=ray"])["ray"]["remote"]["num_gpus"] == 1  # one GPU per job
    cluster = _launcher(["hydra/launcher=ray", "hydra.launcher.ray.init.address=auto"])["ray"]
    assert cluster["init"]["object_store_memory"] is None  # Ray refuses it when attaching
    assert cluster["remote"]["num_gpus"] == 1


def test_jobs_tell_ms_swift_to_run_in_process():
    # inside a Ray worker ms-swift reads its worker group from here (KeyError without it)
    cfg = compose("train", ["hydra/launcher=ray"], return_hydra_config=True)
    assert cfg.hydra.job.env_set.RAY_SWIFT_GROUP == "default"


def test_slurm_launcher_config():
    slurm = _launcher(["hydra/launcher=slurm"])
    assert slurm["_target_"] == "bbuqc.training.slurm.ResumingSlurmLauncher"  # submitit's, resuming on requeue
    assert (slurm["gpus_per_node"], slurm["tasks_per_node"], slurm["nodes"]) == (1, 1, 1)
    assert slurm["partition"] is None and slurm["timeout_min"] > 0


def test_slurm_jobs_ask_for_one_gpu_each(tmp_path, monkeypatch):
    """The sbatch script submitit writes for each job, built as the launcher builds its executor."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    params = _launcher(["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", "hydra.job.name=train"])
    params.pop("_target_")
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m bbuqc.train", "uid")
    for line in ("--gpus-per-node=1", "--ntasks-per-node=1", "--nodes=1", "--time=240", "--cpus-per-task=8"):
        assert f"#SBATCH {line}\n" in script, line
    assert "--partition" not in script


def test_named_sweeps_define_their_axes():
    params = {
        name: compose("train", [f"experiment={name}"], return_hydra_config=True).hydra.sweeper.params
        for name in ("reward_weights", "lora_k", "sweep_smoke")
    }
    assert params["reward_weights"]["reward.weights.summary.header"] == "1,2,4"
    assert params["lora_k"] == {"lora.last_k": "1,2,4"}  # the tiny model has 4 LLM blocks
    assert set(params["sweep_smoke"]) == {"reward.weights.summary.header", "lora.last_k"}


def test_basic_sweep_with_a_failing_job(session_cache, tmp_path):
    """~1 min: the second job fails validation in-job; the first one still trains, both recorded."""
    sweep_dir = tmp_path / "fail-basic"
    proc = sweep(sweep_dir, "lora.last_k=2,99", *SHORT)
    check_one_failed(proc, sweep_dir, group=f"sweep-{sweep_dir.parent.name}_{sweep_dir.name}")


@pytest.mark.parametrize("raised, exit_code", [
    # a job's failure that Hydra re-raises in the driver (a Ray or SLURM job ran elsewhere): the sweep's 1
    (ConfigError(["lora.last_k=99: model=tiny has only 4 LLM blocks"]), 1),
    (RuntimeError("CUDA out of memory"), 1),
    # the sweep's command line, refused by Hydra before any job: an input error, 2
    (OverrideParseException(override="lora.last_k=2,,", message="mismatched input ','"), 2),
])
def test_a_sweep_exits_1_for_a_failed_job_and_2_for_its_command_line(monkeypatch, raised, exit_code):
    """Through Hydra's own `run_and_report` (how `-m` ends) and bbuqc's entry point, with no job
    run in this process, as under the Ray and SLURM launchers (test_ray_sweep_with_a_failing_job)."""
    from hydra._internal.utils import run_and_report

    import bbuqc.cli as cli

    def task():
        cli.end_of_composition()  # as the on_multirun_start callback does before the launcher runs

        def sweep():
            raise raised
        run_and_report(sweep)

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(cli.hydra, "main", lambda **_: lambda fn: task)
    with pytest.raises(SystemExit) as exited:
        cli.entry_point("train", runner=lambda: None)()
    assert exited.value.code == exit_code


# -- slow -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_four_job_sweep_basic_launcher(session_cache, tmp_path):
    sweep_dir = tmp_path / "basic"
    proc = sweep(sweep_dir, "reward.weights.summary.header=1,4", "lora.last_k=2,4", *SHORT)
    check_four_job_sweep(proc, sweep_dir, group=f"sweep-{sweep_dir.parent.name}_{sweep_dir.name}")


@pytest.mark.slow
def test_four_job_sweep_ray_launcher_on_cpu(session_cache, tmp_path):
    sweep_dir = tmp_path / "ray"
    proc = sweep(sweep_dir, "experiment=sweep_smoke", *RAY)
    check_four_job_sweep(proc, sweep_dir, group="sweep_smoke")
    assert "Ray Launcher is launching 4 jobs" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_ray_sweep_with_a_failing_job(session_cache, tmp_path):
    sweep_dir = tmp_path / "fail-ray"
    proc = sweep(sweep_dir, "lora.last_k=2,99", *SHORT, *RAY)
    check_one_failed(proc, sweep_dir, group=f"sweep-{sweep_dir.parent.name}_{sweep_dir.name}")
