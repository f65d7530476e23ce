"""`python -m bbuqc.evaluate` end to end: the tiny text model on the synthetic perfect Stage-A
JSONL, resume, bad inputs, the adapter path, W&B. The formulas are in test_metrics.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import compose, run_cli

# pytest puts this folder on sys.path (rootdir-relative imports, no __init__.py)
from test_metrics import TABLE, TableModel, compose_cfg, make_inputs

from bbuqc.data.records import read_stage_a_jsonl
from bbuqc.data.rows import verdict_row
from bbuqc.stage_b.metrics import attribution, compute_metrics, score_answers, vote
from bbuqc.stage_b.outputs import read_predictions
from bbuqc.stage_b.runner import EvaluationInputError, evaluate, flat_metrics, load_groups, log_to_wandb

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthetic_stage_a(session_cache) -> list[Path]:
    from bbuqc.data.synth import ensure_synthetic

    root = ensure_synthetic(session_cache / "synth" / "seed0-g6", seed=0, groups_per_mission=6)
    return sorted((root / "stage_a").glob("*.jsonl"))


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return run_cli("evaluate", *args, f"hydra.run.dir={tmp_path / 'hydra'}", timeout=300)


def _files_arg(files) -> str:
    return f"data.stage_a_jsonl=[{','.join(str(f) for f in files)}]"


def _assert_consistent(out: Path, files: list[Path]) -> list[dict]:
    """metrics.json equals the metrics module applied to predictions.jsonl, and every line agrees
    with its answers and with the Stage-A input it came from."""
    records = read_predictions(out / "predictions.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    recomputed = json.loads(json.dumps(compute_metrics(records), ensure_ascii=False))
    assert {k: metrics[k] for k in recomputed} == recomputed
    inputs = {}
    for f in files:
        for rec in read_stage_a_jsonl(f):
            inputs[(str(f.resolve()), rec.group_id, rec.verdict)] = verdict_row(rec)
    assert len({(r["source"], r["group_id"], r["label"]) for r in records}) == len(records)
    for r in records:
        row = inputs[(r["source"], r["group_id"], r["label"])]
        v = vote(r["answers"])
        assert (r["votes"], r["verdict"], r["reason"], r["valid"], r["tie"]) == (v.votes, v.verdict, v.reason, v.valid, v.tie)
        assert r["rewards"] == score_answers(r["answers"], row["group_label"], row["summaries"])
        assert r["mission_id"] == row["mission"]
        assert r["summaries"] == json.loads(row["summaries"])
        assert (r["rules_verdict"], r["error_source"]) == attribution(r)
    report = (out / "report.md").read_text()
    o = metrics["overall"]
    assert f"({o['correct']}/{o['n']}; 95% CI " in report
    assert f"({o['false_pass']}/{o['human_fail']}; 95% CI " in report
    assert f"({o['invalid_answers']}/{o['n_answers']}; 95% CI " in report
    # metrics.json carries each rate's Wilson interval, the report prints it
    lo, hi = o["false_pass_rate_ci95"]
    assert lo <= o["false_pass_rate"] <= hi and f"95% CI {100 * lo:.1f}%–{100 * hi:.1f}%" in report
    return records


def _synthetic_args(files, out: Path) -> list[str]:
    return [_files_arg(files), f"evaluate.output_dir={out}", "logger=none",
            "evaluate.max_new_tokens=4", "evaluate.progress=false"]


def test_cli_report_on_the_synthetic_set_agrees_with_predictions(synthetic_stage_a, tmp_path):
    out = tmp_path / "eval"
    args = _synthetic_args(synthetic_stage_a, out)
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout
    records = _assert_consistent(out, synthetic_stage_a)
    assert len(records) == 42
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_mission"]) == {"bbu_install", "bbu_ground", "bbu_cable", "bbu_wind",
                                           "rru_install", "rru_position", "rru_cable"}
    assert sum(m["n"] for m in metrics["per_mission"].values()) == 42
    # an untrained tiny model writes junk: the numbers still have to add up
    o = metrics["overall"]
    assert o["human_pass"] + o["human_fail"] == 42
    assert sum(sum(row.values()) for row in o["confusion"].values()) == 42
    # perfect Stage-A records: the world's labels are the rules' own, so every error is the verdict model's
    a = o["attribution"]
    assert (a["rules"]["accuracy"], a["rules"]["judged"], a["stage_a"], a["unknown"]) == (1.0, 42, 0, 0)
    assert a["verdict_model"] == a["wrong"] == 42 - o["correct"]
    assert "rules on these summaries: accuracy 100.0%" in done.stdout

    # a finished run re-run: nothing to answer (no model loads), the file untouched, same numbers
    path = out / "predictions.jsonl"
    before = path.read_bytes()
    done = _cli(args, tmp_path)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "42 already in" in log and "0 to answer" in log
    assert path.read_bytes() == before
    assert json.loads((out / "metrics.json").read_text()) == metrics


@pytest.mark.slow
def test_cli_resumes_a_killed_run(synthetic_stage_a, tmp_path):
    out = tmp_path / "eval"
    args = _synthetic_args(synthetic_stage_a, out)
    assert _cli(args + ["data.max_rows=10"], tmp_path).returncode == 0  # the first 10 groups
    path = out / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:9]) + lines[9][: len(lines[9]) // 2])  # killed mid-line
    (out / "metrics.json").unlink()
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "9 already in" in done.stdout + done.stderr
    again = path.read_text().splitlines(keepends=True)
    assert again[:9] == lines[:9] and len(again) == 42
    _assert_consistent(out, synthetic_stage_a)


def test_resume_after_a_crash_asks_only_for_missing_groups(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    crashing = TableModel(answers, fail_on_call=3)  # two batches of 3 written, then a crash
    with pytest.raises(RuntimeError, match="scripted crash"):
        evaluate(compose_cfg(files, out), model=crashing)
    path = out / "predictions.jsonl"
    assert len(read_predictions(path)) == 6
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    with path.open("a") as handle:  # and the crash cut a line in half
        handle.write('{"source": "/x", "group_id": "QC-')

    model = TableModel(answers)
    resumed = evaluate(compose_cfg(files, out), model=model)
    assert len(model.asked) == 2  # only the two groups not in predictions.jsonl
    records = read_predictions(path)
    assert [r["group_id"] for r in records] == [gid for _, gid, _, _ in TABLE]
    assert path.read_text().endswith("}\n")

    fresh = evaluate(compose_cfg(files, tmp_path / "fresh"), model=TableModel(answers))
    assert resumed["overall"] == fresh["overall"] and resumed["per_mission"] == fresh["per_mission"]


def test_resume_refuses_other_settings(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    evaluate(compose_cfg(files, out), model=TableModel(answers))
    before = (out / "predictions.jsonl").read_bytes()
    with pytest.raises(EvaluationInputError, match=r"temperature=0\.7 \(now 1\.0\)"):
        evaluate(compose_cfg(files, out, "evaluate.temperature=1.0"), model=TableModel(answers))
    assert (out / "predictions.jsonl").read_bytes() == before


def test_malformed_stage_a_file_fails_with_file_and_line(tmp_path, synthetic_stage_a):
    good = synthetic_stage_a[0].read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], good[1], '{"group_id": "QC-X",', good[2]]) + "\n")
    out = tmp_path / "eval"
    done = _cli([_files_arg([synthetic_stage_a[1], bad]), f"evaluate.output_dir={out}", "logger=none"], tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors == [f"error: {bad}:3: invalid JSON: Expecting property name enclosed in double quotes"]
    assert not out.exists() or not any(out.iterdir())  # no predictions, metrics or report


def test_missing_stage_a_file_fails_before_anything_runs(tmp_path):
    missing = tmp_path / "nope.jsonl"
    done = _cli([_files_arg([missing]), f"evaluate.output_dir={tmp_path / 'eval'}", "logger=none"], tmp_path)
    assert done.returncode == 2
    assert f"data.stage_a_jsonl[0]={missing}: no such file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "eval").exists()


def test_bad_records_name_file_and_line(tmp_path, synthetic_stage_a):
    lines = synthetic_stage_a[0].read_text().splitlines()
    unknown = json.loads(lines[1])
    unknown["mission"] = "不存在的任务"
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(unknown, ensure_ascii=False)]) + "\n")
    with pytest.raises(EvaluationInputError, match=rf"^{path}:2: mission: unknown mission name"):
        load_groups([path])
    path.write_text("\n".join([lines[0], lines[1], lines[0]]) + "\n")
    with pytest.raises(EvaluationInputError, match=rf"^{path}:3: group .* already at line 1"):
        load_groups([path])
    with pytest.raises(EvaluationInputError, match="not found"):
        load_groups([tmp_path / "gone.jsonl"])
    assert len(load_groups(synthetic_stage_a, max_rows=5)) == 5


def test_corrupt_predictions_line_is_an_error_not_a_repair(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    evaluate(compose_cfg(files, out), model=TableModel(answers))
    path = out / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    with pytest.raises(EvaluationInputError, match=rf"{path}:2: invalid JSON"):
        evaluate(compose_cfg(files, out), model=TableModel(answers))


def test_wandb_gets_summary_and_tables(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    metrics = evaluate(compose_cfg(files, tmp_path / "out"), model=TableModel(answers))
    records = read_predictions(tmp_path / "out" / "predictions.jsonl")

    class FakeRun:
        def __init__(self):
            self.summary, self.logged = {}, {}

        def log(self, data):
            self.logged.update(data)

    run = FakeRun()
    log_to_wandb(run, metrics, records)
    flat = flat_metrics(metrics)
    assert run.summary == flat
    assert flat["evaluate/overall/accuracy"] == 3 / 8
    assert flat["evaluate/bbu_wind/false_pass_ok"] is False
    assert flat["evaluate/rru_cable/verdict.format"] == pytest.approx(7 / 12)
    assert flat["evaluate/overall/confusion/不通过/通过"] == 1
    assert flat["evaluate/overall/attribution/wrong"] == 5
    assert flat["evaluate/overall/attribution/rules/judged"] == 8
    assert run.logged["evaluate/predictions"].data[0][0] == TABLE[0][1]
    assert len(run.logged["evaluate/per_mission"].data) == 3  # overall + two missions


def test_wandb_offline_run_is_written(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    evaluate(compose_cfg(files, out, "logger=wandb", "logger.mode=offline"), model=TableModel(answers))
    import wandb

    # wandb-core flushes a finished offline run's file when its service stream closes, which
    # in a long-lived process (this test session) is at teardown, not at run.finish()
    wandb.teardown()
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    for key in (b"evaluate/overall/false_pass_rate", b"evaluate/bbu_wind/accuracy", b"evaluate/per_mission"):
        assert key in data


# ----------------------------------------------------------------------------- the HF model


def test_adapter_is_merged_and_generation_is_batched(synthetic_stage_a, tmp_path, caplog):
    """A LoRA checkpoint folder (what `python -m bbuqc.train task=verdict` saves) is merged into the base."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from bbuqc.models.loading import load_model_and_processor
    from bbuqc.models.tiny import ensure_tiny_model
    from bbuqc.stage_b.generate import load_verdict_model

    base_dir = ensure_tiny_model("text")
    model, _ = load_model_and_processor(base_dir, multimodal=False)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    checkpoint = tmp_path / "checkpoint-2"
    get_peft_model(model, lora).save_pretrained(checkpoint)

    messages = [g.row["messages"] for g in load_groups(synthetic_stage_a, max_rows=3)]
    cfg = compose_cfg(synthetic_stage_a, tmp_path, f"model.adapter={checkpoint}",
                      "evaluate.max_new_tokens=3", "evaluate.temperature=1.0")
    tuned = load_verdict_model(cfg)
    name = "model.layers.0.self_attn.q_proj.weight"
    base_weight = load_file(str(base_dir / "model.safetensors"))[name]
    assert not tuned.model.state_dict()[name].equal(base_weight)  # the LoRA delta is in
    assert not hasattr(tuned.model, "peft_config")  # merged and unloaded: a plain model
    assert tuned.tokenizer.padding_side == "left"
    sampled = tuned.answer(messages, 3)
    assert [len(a) for a in sampled] == [3, 3, 3] and all(isinstance(t, str) for a in sampled for t in a)

    greedy_cfg = compose_cfg(synthetic_stage_a, tmp_path, "evaluate.max_new_tokens=3", "evaluate.temperature=0")
    with caplog.at_level("WARNING"):
        greedy = load_verdict_model(greedy_cfg)
    assert "samples are identical" in caplog.text
    answers = greedy.answer(messages, 3)
    assert all(len(a) == 3 and len(set(a)) == 1 for a in answers)
    # batched with left padding gives what one prompt at a time gives
    assert [greedy.answer([m], 1)[0][0] for m in messages] == [a[0] for a in answers]


def test_adapter_folder_without_adapter_config_is_rejected(tmp_path):
    from bbuqc.checks import problems

    (tmp_path / "ckpt").mkdir()
    cfg = compose("evaluate", [f"model.adapter={tmp_path / 'ckpt'}"])
    assert problems(cfg, "evaluate") == [
        f"model.adapter={tmp_path / 'ckpt'}: no adapter_config.json (expected a LoRA checkpoint-N folder of a bbuqc-train run)"
    ]


@pytest.mark.slow
def test_checkpoint_from_train_task_verdict_evaluates(synthetic_stage_a, tmp_path):
    """The documented workflow: `python -m bbuqc.train task=verdict reward=verdict`, then
    `python -m bbuqc.evaluate model.adapter=<run>/checkpoint-N`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    train_dir = tmp_path / "train"
    done = subprocess.run(
        [sys.executable, "-m", "bbuqc.train", "task=verdict", "reward=verdict", "logger=none",
         "train.max_steps=2", "train.save_steps=2", f"hydra.run.dir={train_dir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = train_dir / "checkpoint-2"
    assert (checkpoint / "adapter_config.json").is_file()
    out = tmp_path / "eval"
    done = _cli([*_synthetic_args(synthetic_stage_a, out), f"model.adapter={checkpoint}", "data.max_rows=8"],
                tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # (that the adapter's weights are really merged is test_adapter_is_merged_and_generation_is_batched)
    assert json.loads((out / "metrics.json").read_text())["settings"]["adapter"] == str(checkpoint.resolve())
    assert len(_assert_consistent(out, synthetic_stage_a)) == 8


def test_predictions_reader_names_bad_records(tmp_path):
    path = tmp_path / "predictions.jsonl"
    good = {"source": "/a.jsonl", "group_id": "g", "mission": "m", "label": "通过", "answers": ["x"]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "pass"}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: label"):
        read_predictions(path)
    path.write_text(json.dumps({**good, "answers": []}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:1: answers"):
        read_predictions(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:-1])  # cut mid-record
    assert len(read_predictions(path)) == 1  # the unfinished tail is dropped
    path.write_text(json.dumps(good) + "\n" + json.dumps(good))  # a full record missing only its newline
    assert len(read_predictions(path)) == 1  # not durable yet (no newline): made again on resume, like Stage-A
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answers": ["y"]}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: group g \(通过, from /a.jsonl\) already on line 1"):
        read_predictions(path)


# ------------------------------------------------------------------ one writer per folder, settings travel


def test_second_evaluation_on_one_folder_is_refused(tmp_path, session_cache):
    """Issue 16.1: two evaluations at once on one evaluate.output_dir must not both write."""
    import threading

    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    started, release = threading.Event(), threading.Event()

    class SlowModel(TableModel):
        def answer(self, batch_of_messages, n_samples):
            started.set()
            assert release.wait(60)
            return super().answer(batch_of_messages, n_samples)

    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(evaluate(compose_cfg(files, out), model=SlowModel(answers))))
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(EvaluationInputError, match=r"predictions\.jsonl: another run is writing this file"):
            evaluate(compose_cfg(files, out), model=TableModel(answers))
    finally:
        release.set()
        thread.join(60)
    assert first["overall"]["n"] == len(TABLE)
    assert len(read_predictions(out / "predictions.jsonl")) == len(TABLE)  # every group once


def test_repeated_groups_in_predictions_are_refused(tmp_path, session_cache):
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    evaluate(compose_cfg(files, out), model=TableModel(answers))
    path = out / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines + lines[:1]))  # what two writers used to leave behind
    with pytest.raises(EvaluationInputError, match=rf"{path}:{len(lines) + 1}: group .* already on line 1"):
        evaluate(compose_cfg(files, out), model=TableModel(answers))


def test_resume_refuses_predictions_whose_settings_are_unknown(tmp_path, session_cache, caplog):
    """Issue 16.8: predictions.jsonl without predictions.settings.json is not resumed silently."""
    files, answers = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="scripted crash"):
        evaluate(compose_cfg(files, out), model=TableModel(answers, fail_on_call=2))
    (out / "predictions.settings.json").unlink()
    before = (out / "predictions.jsonl").read_bytes()
    with pytest.raises(EvaluationInputError, match=r"predictions\.settings\.json is missing.*evaluate\.force_resume=true"):
        evaluate(compose_cfg(files, out, "evaluate.temperature=1.0"), model=TableModel(answers))
    assert (out / "predictions.jsonl").read_bytes() == before
    model = TableModel(answers)
    with caplog.at_level("WARNING"):
        metrics = evaluate(compose_cfg(files, out, "evaluate.force_resume=true"), model=model)
    assert metrics["overall"]["n"] == len(TABLE) and len(model.asked) == len(TABLE) - 3
    assert "force_resume" in caplog.text
    assert json.loads((out / "predictions.settings.json").read_text())["temperature"] == 0.7


# ------------------------------------------------------------------ evaluate.workers > 1 (Ray Data)


def _tiny_cfg(files, out, *extra):
    return compose_cfg(files, out, "evaluate.temperature=0", "evaluate.samples_per_group=1",
                       "evaluate.max_new_tokens=4", *extra)


@pytest.fixture
def one_process_predictions(tmp_path, session_cache):
    files, _ = make_inputs(tmp_path / "in")
    evaluate(_tiny_cfg(files, tmp_path / "one"))
    return files, (tmp_path / "one" / "predictions.jsonl").read_bytes()


def test_two_workers_write_what_one_process_writes(tmp_path, one_process_predictions):
    files, expected = one_process_predictions
    metrics = evaluate(_tiny_cfg(files, tmp_path / "two", "evaluate.workers=2"))
    assert (tmp_path / "two" / "predictions.jsonl").read_bytes() == expected
    assert metrics["overall"]["n"] == len(TABLE)


@pytest.mark.slow
def test_killed_verdict_actor_has_its_groups_retried(tmp_path, one_process_predictions, monkeypatch):
    import functools

    from stage_b_support import verdict_model_killed_once

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    files, expected = one_process_predictions
    marker = tmp_path / "killed"
    evaluate(_tiny_cfg(files, tmp_path / "two", "evaluate.workers=2"),
             model_factory=functools.partial(verdict_model_killed_once, marker=str(marker)))
    assert marker.exists()
    assert (tmp_path / "two" / "predictions.jsonl").read_bytes() == expected


@pytest.mark.slow
def test_cli_sigkill_with_two_workers_then_resume(synthetic_stage_a, tmp_path):
    import signal

    from bbuqc.runtime.kill_point import ENV as KILL_ENV

    out = tmp_path / "eval"
    one = tmp_path / "one"
    assert _cli(_synthetic_args(synthetic_stage_a, one), tmp_path).returncode == 0
    expected = (one / "predictions.jsonl").read_bytes()
    args = _synthetic_args(synthetic_stage_a, out) + ["evaluate.workers=2", "evaluate.batch_size=2"]
    # the evaluation kills itself right after its second durable prediction (BBUQC_TEST_KILL_AT): no race
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO),
           KILL_ENV: "jsonl-append:2"}
    proc = subprocess.Popen([sys.executable, "-m", "bbuqc.evaluate", *args, f"hydra.run.dir={tmp_path / 'hydra'}"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "predictions.jsonl"
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    cut = path.read_bytes()
    assert expected.startswith(cut[: cut.rfind(b"\n") + 1]) and cut.count(b"\n") < 42
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert path.read_bytes() == expected
