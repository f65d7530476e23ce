"""Search and compare: the job's held-out objective, the Optuna search, the ranked report, W&B lineage."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from support import compose, run_cli

from bbuqc.report import main as report_main
from bbuqc.sweep.comparison import REPORT_CSV, REPORT_MD, pareto_front
from bbuqc.sweep.objective import search_problems
from bbuqc.tracking.wandb_records import find_run_files, read_run, records
from bbuqc.training.objective import job_objective

REPO = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str):
    return compose("train", list(overrides), return_hydra_config=True)


def make_run(
    folder: Path,
    validations: list[dict],
    best_step: int | None,
    *,
    num: int = 0,
    overrides: list[str] | None = None,
    config: dict | None = None,
    status: str = "completed",
    health: dict | None = None,
) -> Path:
    """A training job's folder as bbuqc-train leaves it: .hydra/, validation.jsonl, best_checkpoint.json."""
    overrides = overrides or []
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = config or {"task": {"name": "verdict"}, "train": {"select_by": None, "objectives": []}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "validation.jsonl").write_text("".join(json.dumps(v) + "\n" for v in validations))
    if best_step is not None:
        (folder / f"checkpoint-{best_step}").mkdir()
        best = next(v for v in validations if v["step"] == best_step)
        (folder / "best_checkpoint.json").write_text(json.dumps(
            {"step": best_step, "metric": "val/accuracy", "value": best["val/accuracy"],
             "checkpoint": str(folder / f"checkpoint-{best_step}")}))
    lines = [{"loss": 1.0, "reward": 0.5, "global_step/max_steps": "1/2", **(health or {})},
             {"train_runtime": 1.0, "global_step/max_steps": "2/2"}]
    (folder / "logging.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "job_status.json").write_text(json.dumps({"status": status, "num": num, "overrides": overrides,
                                                        "return": None, "error": None}))
    return folder


def _val(step: int, acc: float, fpr: float) -> dict:
    return {"step": step, "val/accuracy": acc, "val/false_pass_rate": fpr, "val/invalid_rate": 0.0}


# -- the objective ----------------------------------------------------------------------------
def test_the_job_returns_its_objective_at_the_best_checkpoint(tmp_path):
    run = make_run(tmp_path / "run", [_val(1, 0.5, 0.2), _val(2, 0.8, 0.1), _val(3, 0.7, 0.0)], best_step=2)
    assert job_objective(_cfg("task=verdict"), run) == 0.8  # the best step's, not the last one's
    two = _cfg("task=verdict", "train.objectives=[val/accuracy,val/false_pass_rate]")
    assert job_objective(two, run) == (0.8, 0.1)  # both at the same (best) step
    fpr = _cfg("task=verdict", "train.select_by=val/false_pass_rate")
    assert job_objective(fpr, run) == 0.1
    assert job_objective(_cfg("task=verdict"), make_run(tmp_path / "novalidation", [], best_step=None)) is None


def test_the_validation_file_names_match_what_training_writes():
    pytest.importorskip("transformers")
    from bbuqc.training import objective, validation

    assert (objective.BEST_JSON, objective.HISTORY) == (validation.BEST_JSON, validation.HISTORY)


def test_a_search_without_validation_or_with_a_wrong_objective_is_refused():
    assert search_problems(_cfg("experiment=verdict_search")) == []
    (problem,) = search_problems(_cfg("experiment=verdict_search", "train.eval_steps=null"))
    assert "do not validate" in problem and "train.eval_steps" in problem
    (problem,) = search_problems(_cfg("experiment=verdict_search", "train.objectives=[val/accuracy,val/summary.format]"))
    assert problem.startswith("train.objectives: val/summary.format:") and "val/false_pass_rate" in problem
    (problem,) = search_problems(_cfg("experiment=verdict_search", "train.objectives=[val/accuracy]"))
    assert problem.startswith("hydra.sweeper.direction=['maximize', 'minimize']: 2 direction(s) for 1 objective(s)")


def test_a_search_that_cannot_be_optimised_exits_2_before_the_first_trial(tmp_path):
    sweep_dir = tmp_path / "search"
    proc = run_cli("train", "-m", "experiment=verdict_search", "data.val_fraction=0", f"hydra.sweep.dir={sweep_dir}",
                   timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.val_fraction" in errors[0], proc.stderr[-2000:]
    assert not sweep_dir.exists()  # no trial, no folder, no summary


# -- the report -------------------------------------------------------------------------------
def test_seed_aggregation(tmp_path):
    root = tmp_path / "sweep"
    runs = [("1e-4", 1, 0.6), ("1e-4", 2, 0.8), ("1e-4", 3, 0.7), ("1e-3", 1, 0.9), ("1e-3", 2, 0.5)]
    for num, (lr, seed, acc) in enumerate(runs):
        overrides = [f"train.learning_rate={lr}", f"train.seed={seed}"]
        make_run(root / f"{num}_{','.join(overrides)}", [_val(1, acc, 0.1)], 1, num=num, overrides=overrides)
    assert report_main([str(root)]) == 0
    md = (root / REPORT_MD).read_text()
    section = md.split("## Seeds combined (`train.seed`)", 1)[1].split("##", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ") and "mean ± std" not in line]
    # ranked by the mean: 1e-4 (0.7 ± 0.1 over 3 seeds) before 1e-3 (0.7 ± 0.28 over 2) is a tie on the
    # mean, so check the cells themselves
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table}
    assert cells["1e-4"] == ["0, 1, 2", "3", "0.7 ± 0.1"]
    assert cells["1e-3"] == ["3, 4", "2", "0.7 ± 0.28"]


def test_pareto_front_of_two_objectives(tmp_path):
    root = tmp_path / "sweep"
    config = {"task": {"name": "verdict"}, "train": {"select_by": "val/accuracy",
                                                      "objectives": ["val/accuracy", "val/false_pass_rate"]}}
    # (accuracy up, false-pass rate down): job 1 dominates job 0; jobs 1, 2, 3 trade off; job 4 ties job 3
    points = [(0.70, 0.10), (0.80, 0.05), (0.90, 0.20), (0.60, 0.00), (0.60, 0.00)]
    for num, (acc, fpr) in enumerate(points):
        make_run(root / f"{num}_x={num}", [_val(1, acc, fpr)], 1, num=num, overrides=[f"x={num}"], config=config,
                 health={"frac_reward_zero_std": 0.25 * num, "completions/mean_length": 10.0,
                         "completions/clipped_ratio": 0.5})
    assert report_main([str(root)]) == 0
    table = list(csv.DictReader((root / REPORT_CSV).open()))
    assert [r["job"] for r in table] == ["2", "1", "0", "3", "4"]  # ranked by val/accuracy, ties by job
    assert {r["job"]: r["pareto"] for r in table} == {"0": "False", "1": "True", "2": "True", "3": "True", "4": "True"}
    assert [r["rank"] for r in table] == ["1", "2", "3", "4", "5"]
    assert table[0]["frac_reward_zero_std"] == "0.5" and table[0]["completions/clipped_ratio"] == "0.5"
    assert table[0]["best_checkpoint"].endswith("2_x=2/checkpoint-1")
    md = (root / REPORT_MD).read_text()
    assert "Pareto front of `val/accuracy` and `val/false_pass_rate`: jobs 2, 1, 3, 4" in md
    assert pareto_front([[1, 1], [0, 0], [1, 0]], [True, True]) == [0]
    # another ranking metric, lower is better by its name
    assert report_main([str(root), "--metric", "val/false_pass_rate"]) == 0
    table = list(csv.DictReader((root / REPORT_CSV).open()))
    assert [r["job"] for r in table] == ["3", "4", "1", "0", "2"]


def test_unknown_metric_and_no_finished_job_are_one_error_line(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_run(root / "0_a=1", [_val(1, 0.5, 0.1)], 1, overrides=["a=1"])
    before = sorted(root.rglob("*"))
    assert report_main([str(root), "--metric", "val/recall"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: --metric val/recall: no job") and "val/accuracy, val/false_pass_rate" in err
    assert sorted(root.rglob("*")) == before

    failed = tmp_path / "failed"
    make_run(failed / "0_a=1", [], None, overrides=["a=1"], status="failed")
    make_run(failed / "1_a=2", [], None, num=1, overrides=["a=2"], status="failed")
    before = sorted(failed.rglob("*"))
    assert report_main([str(failed)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {failed}: no finished job (2 failed)")
    assert sorted(failed.rglob("*")) == before


# -- W&B lineage ------------------------------------------------------------------------------
def test_the_evaluation_uses_the_artifact_the_training_logged(tmp_path, monkeypatch):
    import wandb

    from bbuqc.tracking.lineage import ARTIFACTS_JSON, log_checkpoints, use_adapter_artifact

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = make_run(tmp_path / "train", [_val(2, 0.8, 0.1), _val(4, 0.6, 0.0)], best_step=2)
    (run_dir / "checkpoint-4").mkdir()
    for step in (2, 4):
        (run_dir / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(os.urandom(64))
    (run_dir / "best-checkpoint").symlink_to("checkpoint-2")
    cfg = OmegaConf.create({"task": {"name": "verdict"}, "mission": {"id": "bbu_wind"},
                            "model": {"model_type": "qwen2"}, "algo": {"name": "grpo"}})
    train = wandb.init(project="bbuqc-test", mode="offline", dir=str(run_dir))
    recorded = log_checkpoints(train, cfg, run_dir)
    train.finish()
    assert json.loads((run_dir / ARTIFACTS_JSON).read_text()) == recorded
    assert recorded["checkpoints"]["checkpoint-2"]["aliases"] == ["best", "step-2"]
    assert recorded["checkpoints"]["checkpoint-4"]["aliases"] == ["latest", "step-4"]

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    evaluation = wandb.init(project="bbuqc-test", mode="offline", dir=str(eval_dir))
    use_adapter_artifact(evaluation, run_dir / "best-checkpoint")  # the link resolves to checkpoint-2
    evaluation.finish()
    # finish() only tells wandb's service the run is over; the service closes (flushes) the run file
    # later. teardown waits for the service to exit, so both files are whole before they are read.
    wandb.teardown()

    def artifacts(folder: Path) -> list:
        (run_file,) = find_run_files(folder / "wandb")
        return [r.artifact for r in records(run_file) if r.WhichOneof("record_type") == "artifact"]

    logged = {a.digest: a for a in artifacts(run_dir)}
    (used,) = artifacts(eval_dir)
    assert used.use_after_commit and used.user_created  # the input of the evaluation run
    assert used.name == recorded["name"] == f"model-{read_run(find_run_files(run_dir / 'wandb')[0]).run_id}"
    # the same name and digest: W&B files it as the version the training run logged (its `best`)
    assert used.digest == recorded["checkpoints"]["checkpoint-2"]["digest"]
    assert "best" in logged[used.digest].aliases and not logged[used.digest].use_after_commit
    assert [e.ref for e in used.manifest.contents] == [(run_dir / "checkpoint-2" / "adapter_model.safetensors").as_uri()]


def test_runs_are_tagged_with_task_mission_and_model_family():
    from bbuqc.tracking.runs import run_tags

    assert run_tags(_cfg("task=verdict", "mission=rru_cable")) == ["task:verdict", "mission:rru_cable", "model:qwen2"]


# -- the Optuna search, end to end -------------------------------------------------------------
# one trial (~30 s) in the fast suite; the three trials of the issue (~60 s) in make test-full
@pytest.mark.parametrize("trials", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_optuna_search_of_one_step_trials_is_ranked_by_its_objective(session_cache, tmp_path, trials):
    sweep_dir = tmp_path / "search"
    proc = run_cli("train", "-m", "experiment=verdict_search", "algo=sft", f"hydra.sweeper.n_trials={trials}",
                   "hydra.sweeper.n_jobs=3", "train.max_steps=1", "train.eval_steps=1", "train.save_steps=1",
                   f"hydra.sweep.dir={sweep_dir}", env={"OMP_NUM_THREADS": "1", "RAY_ADDRESS": None}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna" and results["solutions"]  # the sweeper got two values per trial
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert len(jobs) == trials
    returned = {}
    for job in jobs:
        status = json.loads((job / "job_status.json").read_text())
        assert status["status"] == "completed"
        accuracy, false_pass = status["return"]  # what the job handed to Optuna
        best = json.loads((job / "best_checkpoint.json").read_text())
        assert best["metric"] == "val/accuracy" and accuracy == best["value"]
        returned[str(status["num"])] = accuracy
        run = read_run(find_run_files(job / "wandb")[0])
        assert run.group == "verdict_search"
        # the best checkpoint went to W&B as an artifact of this run
        artifacts = json.loads((job / "wandb_artifacts.json").read_text())
        assert artifacts["name"] == f"model-{run.run_id}"
        assert artifacts["checkpoints"]["checkpoint-1"]["aliases"] == ["best", "latest", "step-1"]
    proc = run_cli("report", str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    table = list(csv.DictReader((sweep_dir / REPORT_CSV).open()))
    expected = sorted(returned, key=lambda n: (-returned[n], int(n)))
    assert [r["job"] for r in table] == expected
    assert [float(r["val/accuracy"]) for r in table] == [returned[n] for n in expected]
    plots = ["optimization_history.png", "validation_curves.png"]
    plots += ["accuracy_vs_train.learning_rate.png"] if trials > 1 else []  # one trial sweeps nothing
    for name in plots:
        assert (sweep_dir / name).is_file(), name
