"""scripts/gpu_check.py (`make gpu-check`) and scripts/wheelhouse.py (`make wheelhouse`) on a CPU machine:
the skip without a GPU, the plan (every family, every lane; each command composes), the report's schema and
its statuses, the exit code, the wheelhouse's size limit, and the air-gapped venv (issue 31.1)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gc = _load("gpu_check")
wh = _load("wheelhouse")


def test_a_cpu_machine_skips_and_exits_0_writing_nothing(tmp_path):
    report = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--report", str(report)],
                          capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "no GPU: skipped", proc.stderr
    assert not report.exists()


def test_the_plan_covers_every_family_both_computes_and_every_path(tmp_path):
    names = {c.name for c in gc.plan(tmp_path)}
    for model in gc.VL_TWINS + gc.TEXT_TWINS:
        for compute in ("gpu", "gpu_vllm"):
            assert {f"grpo/{model}/{compute}", f"sft/{model}/{compute}"} <= names
        assert f"export/{model}" in names
    for model in gc.VL_TWINS:
        assert {f"stage_a/{model}/{b}{s}" for b in ("hf", "vllm") for s in ("", "+adapter", "+merged")} <= names
    for model in gc.TEXT_TWINS:
        assert {f"evaluate/{model}/hf", f"evaluate/{model}/hf+adapter", f"evaluate/{model}/hf+merged"} <= names
    assert {"ray_data/tiny_qwen2_vl/hf", "ray_sweep/tiny_text/gpu", "zero2/tiny_text/vllm", "zero2/tiny_text/hf"} <= names


def test_dry_run_lists_the_plan_and_what_this_machine_would_skip(capsys):
    assert gc.main(["--dry-run", "--only", "grpo/tiny_text/*", "--only", "stage_a/tiny_qwen3_vl/vllm+merged"]) == 0
    out = capsys.readouterr().out
    # the merged Stage-A brings the export and the SFT run it reads
    listed = [line.split()[0] for line in out.splitlines() if line and not line.startswith((" ", "5", "6"))]
    assert listed == ["prepare/synthetic_world", "sft/tiny_qwen3_vl/gpu", "grpo/tiny_text/gpu", "grpo/tiny_text/gpu_vllm", "export/tiny_qwen3_vl",
                      "stage_a/tiny_qwen3_vl/vllm+merged"]
    vllm_missing = importlib.util.find_spec("vllm") is None
    assert ("grpo/tiny_text/gpu_vllm  [skipped: vllm not installed]" in out) == vllm_missing
    assert out.rstrip().endswith("6 checks")


# one check of each kind (the whole plan: the slow test below)
KINDS = ("grpo/tiny_qwen2_5_vl/gpu_vllm", "sft/tiny_qwen2_5/gpu", "stage_a/tiny_qwen3_vl/vllm+adapter",
         "evaluate/tiny_text/hf+merged", "export/tiny_qwen2_vl", "ray_data/tiny_qwen2_vl/hf", "ray_sweep/tiny_text/gpu",
         "zero2/tiny_text/hf")


def test_a_command_of_each_kind_composes_and_validates(tmp_path):
    _compose_and_validate([c for c in gc.plan(tmp_path) if c.name in KINDS], tmp_path)


@pytest.mark.slow
def test_every_planned_command_composes_and_validates(tmp_path):
    _compose_and_validate(gc.plan(tmp_path), tmp_path)


def _compose_and_validate(checks: list, tmp_path: Path) -> None:
    """Each check's overrides are real fields with valid values (the folders the earlier checks write aside)."""
    from support import compose

    import bbuqc.config.store  # noqa: F401
    from bbuqc.checks import problems

    assert checks
    commands = {"bbuqc.train": "train", "bbuqc.infer": "infer", "bbuqc.evaluate": "evaluate", "bbuqc.export": "export"}
    for check in checks:
        if check.name == gc.WORLD:
            continue
        command = commands[check.argv[2]]
        overrides = [a for a in check.argv[3:] if a != "-m" and not a.startswith(("hydra.", "hydra/"))]
        overrides = [a.split(",")[0] if a.startswith("train.seed=") else a for a in overrides]
        cfg = compose(command, overrides)
        found = [p for p in problems(cfg, command) if str(tmp_path) not in p]
        assert found == [], (check.name, found)


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _fake_checks(tmp_path: Path) -> list:
    C = gc.Check
    logging_rows = "\\n".join(json.dumps({"step_time": t}) for t in (9.0, 1.0, 2.0, 3.0))
    return [
        C("train/ok", _py(f"import pathlib; d = pathlib.Path(r'{tmp_path / 'train'}'); d.mkdir(); "
                          f"(d / 'logging.jsonl').write_text('{logging_rows}')"),
          tmp_path / "train", trains=True, expect=("logging.jsonl",)),
        C("export/fails", _py("import sys; print('boom: the merge failed'); sys.exit(3)"), tmp_path / "export"),
        C("stage_a/merged", _py("pass"), tmp_path / "merged", needs=("export/fails",)),
        C("stage_a/vllm", _py("pass"), tmp_path / "vllm", requires=("no_such_package_31",), lane="vllm"),
        C("evaluate/empty", _py("pass"), tmp_path / "empty", expect=("eval/metrics.json",)),
    ]


def test_the_report_records_each_check_and_why(tmp_path):
    report_path = tmp_path / "bench" / "gpu.json"
    report = gc.run_all(_fake_checks(tmp_path), report_path=report_path, jobs=2, timeout_s=60,
                        env_info={"gpu": []}, say=lambda _: None)
    assert json.loads(report_path.read_text()) == report
    assert set(report) == {"schema", "mode", "started", "environment", "jobs", "vllm_jobs", "checks", "summary"}
    assert report["mode"] == "gpu"
    by_name = {c["name"]: c for c in report["checks"]}
    assert list(by_name) == ["train/ok", "export/fails", "stage_a/merged", "stage_a/vllm", "evaluate/empty"]
    assert set(by_name["train/ok"]) == {"name", "command", "status", "reason", "wall_s", "step_time_s",
                                        "peak_gpu_mem_mib", "peak_device_mem_mib", "returncode", "log", "error"}
    ok = by_name["train/ok"]
    assert ok["status"] == "passed" and ok["step_time_s"] == 2.0 and ok["wall_s"] > 0  # median after the first step
    failed = by_name["export/fails"]
    assert failed["status"] == "failed" and failed["reason"] == "exit 3" and "boom: the merge failed" in failed["error"]
    assert by_name["stage_a/merged"]["status"] == "skipped"
    assert by_name["stage_a/merged"]["reason"] == "needs export/fails, which did not pass"
    assert (by_name["stage_a/vllm"]["status"], by_name["stage_a/vllm"]["reason"]) == \
        ("skipped", "no_such_package_31 not installed")
    empty = by_name["evaluate/empty"]
    assert empty["status"] == "failed" and empty["reason"].startswith("exit 0 but no eval/metrics.json")
    assert report["summary"] | {"wall_s": 0} == {"passed": 1, "failed": 2, "skipped": 2, "planned": 5, "wall_s": 0}


def test_no_check_starts_once_the_budget_is_spent(tmp_path):
    checks = _fake_checks(tmp_path)[:1] + [gc.Check("later", _py("pass"), tmp_path / "later", needs=("train/ok",))]
    checks[0].argv = _py("import time; time.sleep(1.5)")
    checks[0].expect = ()
    report = gc.run_all(checks, report_path=tmp_path / "gpu.json", jobs=1, budget_s=0.5, say=lambda _: None)
    assert [(c["name"], c["status"], c["reason"]) for c in report["checks"]] == [
        ("train/ok", "passed", None), ("later", "skipped", "not started: the --budget of 0.5 s was spent")]


def test_a_failed_check_fails_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gc, "plan", lambda out: _fake_checks(tmp_path))
    monkeypatch.setattr(gc, "gpu_count", lambda: 1)
    monkeypatch.setattr(gc, "environment", lambda: {})
    assert gc.main(["--report", str(tmp_path / "gpu.json")]) == 1
    assert "1 passed, 2 failed, 2 skipped" in capsys.readouterr().out
    monkeypatch.setattr(gc, "plan", lambda out: _fake_checks(tmp_path)[:1])
    assert gc.main(["--report", str(tmp_path / "gpu.json")]) == 0


def test_the_wheelhouse_size_limit(tmp_path):
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    (folder / "big-1.0-py3-none-any.whl").write_bytes(b"\0" * (3 * 2**20))
    (folder / "small-1.0-py3-none-any.whl").write_bytes(b"\0" * 1024)
    assert wh.size_problem(folder, 4) is None
    problem = wh.size_problem(folder, 2)
    assert problem.startswith(f"wheelhouse {folder}: 3.0 MiB, over the 2 MiB limit; largest: "
                              "big-1.0-py3-none-any.whl (3.0 MiB)")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--check-size", str(folder),
                           "--max-mib", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: wheelhouse ")


def test_the_closure_leaves_out_the_cuda_stack_and_what_the_node_has(tmp_path):
    node = tmp_path / "node.txt"
    node.write_text("# the node\ntransformers==5.17.0\nPyYAML==6.0\npeft\n")
    assert wh.read_node_has(node) == {"transformers", "pyyaml", "peft"}
    found, _ = wh.closure("bbuqc", "3.12", {"torch", "transformers", "ray"})
    assert "ms-swift" in found and "hydra-core" in found and "omegaconf" in found
    assert not {"torch", "transformers", "ray"} & set(found)


@pytest.mark.slow
def test_the_air_gapped_venv_sees_the_node_packages_and_installs_from_the_folder_alone(tmp_path):
    """A fresh venv from this interpreter (itself a venv, like the lent node's /opt/torch/.venv) sees this
    interpreter's packages and gets the wheelhouse's, with no index."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    wheel = house / "bbuqc-0.0.1-py3-none-any.whl"
    info = "bbuqc-0.0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("bbuqc_wheelhouse_probe.py", "ANSWER = 31\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: bbuqc\nVersion: 0.0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    python = gc.make_venv(house, tmp_path / "venv", say=lambda _: None)
    probe = subprocess.run([str(python), "-c", "import bbuqc_wheelhouse_probe as p, omegaconf; print(p.ANSWER)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0 and probe.stdout.strip() == "31", probe.stderr


def test_a_named_ray_cluster_runs_even_one_worker_and_checks_its_gpus_there(monkeypatch):
    """ray_data/* runs Stage-A on Ray with infer.workers=1 (infer.ray_address=local): the device check is then
    the cluster's, not this host's (bbuqc/runtime/devices.py)."""
    from support import compose

    import bbuqc.config.store  # noqa: F401
    from bbuqc.errors import InputError
    from bbuqc.runtime.devices import require_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    on_ray = compose("infer", ["compute=gpu", "infer.ray_address=local"])
    here = compose("infer", ["compute=gpu"])
    require_devices(on_ray, "infer")
    with pytest.raises(InputError, match="compute.device=cuda: no CUDA device is visible here"):
        require_devices(here, "infer")
