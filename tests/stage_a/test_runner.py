"""The Stage-A runner end to end: discovery edge cases, batching, failures, resume, bad input.

Model tests share one loaded test model (session fixture ``backend``); orchestration tests use
a stub backend and load nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from stage_a_support import MISSION_ID, N_GROUPS, N_IMAGES, base_overrides, compose, make_tree
from support import run_cli

from bbuqc.data.records import iter_stage_a_jsonl, record_from_dict
from bbuqc.errors import InputError
from bbuqc.missions import MISSIONS
from bbuqc.runtime.kill_point import ENV as KILL_ENV
from bbuqc.stage_a import runner as runner_mod
from bbuqc.stage_a.runner import StageAError, run, run_stage_a

MISSION = MISSIONS[MISSION_ID]
HEADER = f"<DOMAIN={MISSION.domain}>, <TASK=SUMMARY>"

# Discovery order: group id in natural order, then label (fail before pass).
EXPECTED = [
    ("fail", "QC-ABC-20250101-7", ["QC-ABC-20250101-7_1.jpg", "QC-ABC-20250101-7_3.jpg"]),
    ("fail", "QC-TEMP-20241206-0015502", ["QC-TEMP-20241206-0015502_7.jpg"]),
    ("pass", "QC-TEMP-20241206-0015502",
     ["QC-TEMP-20241206-0015502_1.png", "QC-TEMP-20241206-0015502_2.JPG", "QC-TEMP-20241206-0015502_10.jpeg"]),
    ("fail", "site 9", ["IMG1.PNG", "img2.jpg", "img10.jpg"]),  # natural order: site 9 < site 10
    ("pass", "site 10", ["a.jpeg", "b.jpg"]),
]


class StubBackend:
    """Summaries from file names; ``fail_on``: names whose presence makes a call raise."""

    name = "stub"

    def __init__(self, reply=None, fail_on=(), fail_batches_only=False):
        self.calls: list[list[str]] = []
        self.reply = reply or (lambda name: f'{HEADER}\n{{"图片":"{name}"}}')
        self.fail_on = set(fail_on)
        self.fail_batches_only = fail_batches_only

    def generate(self, images, mission, settings):
        names = [p.name for p in images]
        self.calls.append(names)
        bad = self.fail_on & set(names)
        if bad and not (self.fail_batches_only and len(names) == 1):
            raise OSError(f"cannot identify image file {sorted(bad)[0]}")
        return [self.reply(n) for n in names]


class ExplodingBackend:
    name = "exploding"

    def generate(self, images, mission, settings):
        raise AssertionError("nothing should be generated")


def write_settings_of_a_run(cfg, out: Path) -> None:
    from bbuqc.io.atomic import write_json_atomic

    identity = runner_mod.run_identity(cfg, MISSION, runner_mod.input_root(cfg))
    write_json_atomic(runner_mod.sidecar(out, runner_mod.META_SUFFIX), identity)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------ with a stub


def test_records_layout_and_summary(tmp_path, make_cfg, capsys):
    out = tmp_path / "out.jsonl"
    stub = StubBackend()
    summary = run_stage_a(make_cfg(out, batch_size=8), backend=stub)
    records = lines(out)
    assert [(r["label"], r["group_id"], r["images"]) for r in records] == EXPECTED
    for r in records:
        record_from_dict(r)
        assert r["mission"] == MISSION.name
        assert list(r["per_image"]) == [f"图片_{i}" for i in range(1, len(r["images"]) + 1)]
        assert r["per_image"]["图片_1"] == f'{{"图片":"{r["images"][0]}"}}'  # header line removed
    # images of consecutive groups share batches: 11 images -> 8 + 3
    assert [len(c) for c in stub.calls] == [8, 3]
    assert summary["groups"] == N_GROUPS and summary["written"] == N_GROUPS and summary["skipped"] == 0
    assert summary["failed"] == [] and summary["images"] == N_IMAGES and summary["images_per_s"] > 0
    warnings = "\n".join(summary["warnings"])
    assert "notes.txt" in warnings and "empty group" in warnings and "待审核" in warnings
    on_disk = json.loads((tmp_path / "out.jsonl.summary.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    printed = capsys.readouterr().out
    assert f"written {N_GROUPS}, skipped 0 (already done), failed 0" in printed and "images/s" in printed


def test_postprocessing_irrelevant_and_header(tmp_path, make_cfg):
    def reply(name):
        if name.startswith("img"):
            return "无关图片（这是一张文档截图）"
        return f"```\n{HEADER}\n{{\"n\":1}}\n```<|im_end|>"

    run_stage_a(make_cfg(tmp_path / "out.jsonl"), backend=StubBackend(reply))
    by_id = {(r["label"], r["group_id"]): r for r in lines(tmp_path / "out.jsonl")}
    assert by_id[("fail", "site 9")]["per_image"] == {"图片_1": '{"n":1}', "图片_2": "无关图片", "图片_3": "无关图片"}
    assert set(by_id[("pass", "site 10")]["per_image"].values()) == {'{"n":1}'}


def test_misaligned_summaries_fail_only_their_group(tmp_path, make_cfg):
    # an empty output, a header-only output and special tokens only: nothing usable
    bad = {"img2.jpg": "", "a.jpeg": HEADER, "QC-TEMP-20241206-0015502_7.jpg": "<|im_end|>\n\n"}
    stub = StubBackend(lambda n: bad.get(n, f'{HEADER}\n{{"图片":"{n}"}}'))
    summary = run_stage_a(make_cfg(tmp_path / "out.jsonl"), backend=stub)
    failed = {(f["label"], f["group_id"]): f["reason"] for f in summary["failed"]}
    assert set(failed) == {("fail", "site 9"), ("pass", "site 10"), ("fail", "QC-TEMP-20241206-0015502")}
    assert "per_image.图片_2: empty summary for image 'img2.jpg'" in failed[("fail", "site 9")]
    assert "图片_1" in failed[("pass", "site 10")]
    written = [(r["label"], r["group_id"]) for r in lines(tmp_path / "out.jsonl")]
    assert written == [(label, gid) for label, gid, _ in EXPECTED if (label, gid) not in failed]
    assert summary["written"] == 2


def test_failing_batch_is_retried_image_by_image(tmp_path, make_cfg):
    # the batch fails, every image alone works: everything is written
    stub = StubBackend(fail_on={"img2.jpg"}, fail_batches_only=True)
    summary = run_stage_a(make_cfg(tmp_path / "a.jsonl", batch_size=4), backend=stub)
    assert summary["failed"] == [] and summary["written"] == N_GROUPS and summary["batch_failures"] == 1
    reference = StubBackend()
    run_stage_a(make_cfg(tmp_path / "b.jsonl", batch_size=4), backend=reference)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    # an image that fails alone too fails only its group; the rest of its group is not generated
    stub = StubBackend(fail_on={"QC-TEMP-20241206-0015502_1.png"})
    summary = run_stage_a(make_cfg(tmp_path / "c.jsonl", batch_size=4), backend=stub)
    assert [(f["label"], f["group_id"]) for f in summary["failed"]] == [("pass", "QC-TEMP-20241206-0015502")]
    assert "QC-TEMP-20241206-0015502_1.png" in summary["failed"][0]["reason"]
    assert not any("QC-TEMP-20241206-0015502_10.jpeg" in c and len(c) == 1 for c in stub.calls)
    expected = [line for line in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()
                if '"label":"pass","images":["QC-TEMP-20241206-0015502_1.png"' not in line]
    assert (tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines() == expected


def test_rerun_skips_everything_and_loads_nothing(tmp_path, make_cfg):
    out = tmp_path / "out.jsonl"
    run_stage_a(make_cfg(out), backend=StubBackend())
    before = out.read_bytes()
    summary = run_stage_a(make_cfg(out), backend=ExplodingBackend())
    assert summary["skipped"] == N_GROUPS and summary["written"] == 0 and summary["images"] == 0
    assert out.read_bytes() == before


def test_resume_refuses_other_settings(tmp_path, make_cfg):
    out = tmp_path / "out.jsonl"
    run_stage_a(make_cfg(out, max_new_tokens=9), backend=StubBackend())
    with pytest.raises(InputError, match=r"max_new_tokens=9 \(now 4\).*infer.output"):
        run_stage_a(make_cfg(out), backend=StubBackend())
    other = make_tree(tmp_path / "other-root")
    with pytest.raises(InputError, match="root="):
        run_stage_a(make_cfg(out, root=other, max_new_tokens=9), backend=StubBackend())


def fake_adapter(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_resume_refuses_another_adapter(tmp_path, make_cfg):
    """Issue 30.1 (reproduced): the base model's output, then the same command with model.adapter set, skipped
    every group as done and kept the base model's summaries. Now: one line naming the field; nothing written."""
    out = tmp_path / "out.jsonl"
    meta = out.with_name(out.name + ".meta.json")
    run_stage_a(make_cfg(out), backend=StubBackend())
    before, meta_before = out.read_bytes(), meta.read_bytes()
    adapter = fake_adapter(tmp_path / "run" / "checkpoint-4", b"trained once")
    with pytest.raises(InputError, match=r"adapter=None \(now '.*checkpoint-4'\)"):
        run_stage_a(make_cfg(out, extra=[f"model.adapter={adapter}"]), backend=ExplodingBackend())
    assert out.read_bytes() == before and meta.read_bytes() == meta_before

    # the same folder retrained in place holds another model: its weights are part of the identity
    out2 = tmp_path / "out2.jsonl"
    run_stage_a(make_cfg(out2, extra=[f"model.adapter={adapter}"]), backend=StubBackend(fail_on={"a.jpeg"}))
    fake_adapter(adapter, b"trained twice")
    with pytest.raises(InputError, match=r"adapter_weights="):
        run_stage_a(make_cfg(out2, extra=[f"model.adapter={adapter}"]), backend=ExplodingBackend())


def test_resume_refuses_other_pixel_bounds(tmp_path, make_cfg):
    """Other image-size bounds give the model other visual tokens: another output."""
    out = tmp_path / "out.jsonl"
    run_stage_a(make_cfg(out, extra=["model.min_pixels=3136", "model.max_pixels=12544"]), backend=StubBackend())
    with pytest.raises(InputError, match=r"image_env=.*MAX_PIXELS.*12544.*\(now"):
        run_stage_a(make_cfg(out, extra=["model.min_pixels=3136", "model.max_pixels=6272"]),
                    backend=ExplodingBackend())


def test_resume_refuses_a_sidecar_without_a_field(tmp_path, make_cfg):
    """A sidecar written before the identity held a field cannot show the field was the same."""
    out = tmp_path / "out.jsonl"
    meta = out.with_name(out.name + ".meta.json")
    run_stage_a(make_cfg(out), backend=StubBackend(fail_on={"a.jpeg"}))
    old = json.loads(meta.read_text())
    del old["adapter"]
    meta.write_text(json.dumps(old))
    with pytest.raises(InputError, match=r"adapter='<not recorded>' \(now None\)"):
        run_stage_a(make_cfg(out), backend=ExplodingBackend())


def test_resume_refuses_a_file_whose_settings_are_unknown(tmp_path, make_cfg):
    """Issue 16.8: the output copied without its .meta.json must not be resumed with other settings."""
    out = tmp_path / "out.jsonl"
    run_stage_a(make_cfg(out, max_new_tokens=9), backend=StubBackend(fail_on={"a.jpeg"}))
    meta = out.with_name(out.name + ".meta.json")
    meta.unlink()
    before = out.read_bytes()
    with pytest.raises(InputError, match=r"settings file .*out\.jsonl\.meta\.json is missing.*infer\.force_resume=true"):
        run_stage_a(make_cfg(out), backend=StubBackend())
    assert out.read_bytes() == before and not meta.exists()  # nothing touched
    meta.write_text("{not json")
    with pytest.raises(InputError, match="is unreadable"):
        run_stage_a(make_cfg(out), backend=StubBackend())
    summary = run_stage_a(make_cfg(out, force_resume="true"), backend=StubBackend())
    assert summary["written"] == 1 and any("force_resume" in w for w in summary["warnings"])
    assert json.loads(meta.read_text())["max_new_tokens"] == 4  # this run's settings are recorded now
    run_stage_a(make_cfg(out), backend=ExplodingBackend())  # and guard the next resume


def test_completed_earlier_failure_is_put_back_in_order(tmp_path, make_cfg):
    out = tmp_path / "out.jsonl"
    first = run_stage_a(make_cfg(out), backend=StubBackend(fail_on={"QC-TEMP-20241206-0015502_7.jpg", "a.jpeg"}))
    assert len(first["failed"]) == 2
    second = run_stage_a(make_cfg(out), backend=StubBackend())
    assert second["written"] == 2 and second["skipped"] == N_GROUPS - 2
    assert any("re-sorted" in w for w in second["warnings"])
    run_stage_a(make_cfg(tmp_path / "ref.jsonl"), backend=StubBackend())
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


def test_default_output_is_stable_and_relative_to_the_working_dir(tmp_path, make_cfg, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(tmp_path / "ignored.jsonl", extra=["infer.output=null"])
    assert runner_mod.output_path(cfg) == Path("outputs/stage_a/bbu_wind.jsonl")
    summary = run_stage_a(cfg, backend=StubBackend())
    assert summary["output"] == "outputs/stage_a/bbu_wind.jsonl"
    assert (tmp_path / "outputs/stage_a/bbu_wind.jsonl").is_file()
    assert run_stage_a(cfg, backend=ExplodingBackend())["skipped"] == N_GROUPS


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["missing root", "missing mission folder"])
def test_bad_input_is_one_error_line_and_no_output(tmp_path, make_cfg, capsys, monkeypatch, case):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if case == "missing root":
        root, named = tmp_path / "nowhere", tmp_path / "nowhere"
    else:
        root = tmp_path / "empty-root"
        root.mkdir()
        named = root / MISSION.name
    out = tmp_path / "out" / "out.jsonl"
    # raised, not sys.exit: the entry point prints it as one `error:` line, a sweep records the job
    with pytest.raises(StageAError) as exc:
        run(make_cfg(out, root=root))
    assert isinstance(exc.value, InputError)
    assert len(str(exc.value).splitlines()) == 1 and str(named) in str(exc.value)
    assert not (tmp_path / "out").exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # use_offline_defaults() ran first


# ------------------------------------------------------------------------------- the test model


@pytest.fixture(scope="module")
def reference(tmp_path_factory, backend, tree, chatty_model):
    """The uninterrupted run (batch size 8) of the test model over the tree."""
    out = tmp_path_factory.mktemp("reference") / "out.jsonl"
    summary = run_stage_a(compose(base_overrides(tree, out, chatty_model, batch_size=8)), backend=backend)
    assert summary["written"] == N_GROUPS, summary["failed"]
    return out.read_bytes()


def test_tiny_model_run_writes_every_group(reference):
    records = [json.loads(line) for line in reference.decode("utf-8").splitlines()]
    assert [(r["label"], r["group_id"], r["images"]) for r in records] == EXPECTED
    assert all(v.strip() for r in records for v in r["per_image"].values())


def test_batch_sizes_1_and_8_give_the_same_records(tmp_path, make_cfg, backend, chatty_model, reference):
    out = tmp_path / "bs1.jsonl"
    run_stage_a(make_cfg(out, model=chatty_model, batch_size=1), backend=backend)
    assert out.read_bytes() == reference


def test_corrupt_image_fails_only_its_group(tmp_path, make_cfg, backend, chatty_model, reference, tree):
    root = tmp_path / "root"
    shutil.copytree(tree, root)
    # in the last batch (images 9-11), to keep the one-by-one retry short
    corrupt = root / MISSION.name / "审核通过" / "site 10" / "a.jpeg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a truncated JPEG: PIL raises while decoding
    out = tmp_path / "out.jsonl"
    summary = run_stage_a(make_cfg(out, root=root, model=chatty_model, batch_size=8), backend=backend)
    assert [(f["label"], f["group_id"]) for f in summary["failed"]] == [("pass", "site 10")]
    assert "a.jpeg" in summary["failed"][0]["reason"] and summary["batch_failures"] == 1
    expected = [line for line in reference.decode("utf-8").splitlines() if '"group_id":"site 10"' not in line]
    assert out.read_text(encoding="utf-8").splitlines() == expected


@pytest.mark.parametrize("where", ["mid first line", "end of first line", "mid third line", "one byte short"])
def test_resume_after_truncation_is_byte_identical(tmp_path, make_cfg, backend, chatty_model, reference, where):
    ends = [i + 1 for i, b in enumerate(reference) if b == ord("\n")]
    cut = {"mid first line": ends[0] // 2, "end of first line": ends[0],
           "mid third line": (ends[1] + ends[2]) // 2, "one byte short": len(reference) - 1}[where]
    out = tmp_path / "out.jsonl"
    cfg = make_cfg(out, model=chatty_model, batch_size=8)
    write_settings_of_a_run(cfg, out)  # a crashed run had recorded its settings before its first line
    out.write_bytes(reference[:cut])
    summary = run_stage_a(cfg, backend=backend)
    assert out.read_bytes() == reference
    complete = sum(1 for e in ends if e <= cut)
    assert summary["skipped"] == complete and summary["written"] == N_GROUPS - complete
    assert any("incomplete last line" in w for w in summary["warnings"]) == (cut not in ends)


def _cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    return run_cli("infer", *args, cwd=cwd, env={"OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_mid_run_then_rerun_is_byte_identical(tmp_path, tree, chatty_model, make_cfg, backend, reference,
                                                      kill_after):
    """A real `python -m bbuqc.infer` killed with SIGKILL once ``kill_after`` records are on disk: it kills
    itself right after the ``kill_after``-th durable line (BBUQC_TEST_KILL_AT), so the job cannot win a race."""
    out = tmp_path / "out.jsonl"
    args = base_overrides(tree, out, chatty_model, batch_size=1) + [f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = _cli(*args, cwd=tmp_path, env={KILL_ENV: f"jsonl-append:{kill_after}"}, timeout=240)
    assert done.returncode == -signal.SIGKILL, f"run ended without being killed: {done.stderr[-2000:]}"
    killed_at = out.read_bytes()
    complete = killed_at[: killed_at.rfind(b"\n") + 1]
    assert kill_after <= complete.count(b"\n") < N_GROUPS and reference.startswith(complete)
    # the same command again (in-process here, sharing the loaded model; batch size 8 this time)
    summary = run_stage_a(make_cfg(out, model=chatty_model, batch_size=8), backend=backend)
    assert out.read_bytes() == reference
    assert summary["skipped"] == complete.count(b"\n") and summary["skipped"] + summary["written"] == N_GROUPS
    assert [r for _, r in iter_stage_a_jsonl(out)]  # and it reads back as a valid Stage-A file


def test_cli_bad_root_exits_before_any_output(tmp_path, tree):
    out = tmp_path / "out.jsonl"
    done = _cli(f"mission={MISSION_ID}", f"data.root={tmp_path / 'nowhere'}", f"infer.output={out}", cwd=tmp_path,
                timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"error: data.root={tmp_path / 'nowhere'}: no such file or folder"]
    assert not out.exists()


def test_infer_sweep_records_a_failing_job_and_runs_the_next(tmp_path):
    """Issue 12 defect 3: a Stage-A error used to sys.exit(2) inside the job, ending the sweep
    after job 0 with no record. Now each job fails alone and is recorded."""
    empty = tmp_path / "empty-root"
    empty.mkdir()
    sweep = tmp_path / "sweep"
    done = _cli("-m", "mission=bbu_wind,rru_cable", f"data.root={empty}", "infer.progress=false",
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    jobs = sorted(summary["jobs"], key=lambda j: j["num"])
    assert [j["status"] for j in jobs] == ["failed", "failed"]
    for job, mission in zip(jobs, ("bbu_wind", "rru_cable")):
        assert MISSIONS[mission].name in job["error"]  # the missing mission folder, named
