"""Stage-A on Ray Data (``infer.workers > 1``): same file as one process, resume, retries, bad input.

Each test starts a local Ray cluster (two CPU actors, each loading the test model): about
20 s on a small machine; the equality test stays in the fast suite, the kill tests are slow.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from stage_a_support import (
    MISSION_ID,
    N_GROUPS,
    backend_killed_on,
    backend_killed_once,
    base_overrides,
    compose,
)
from support import error_lines, run_cli

from bbuqc.errors import InputError
from bbuqc.runtime.kill_point import ENV as KILL_ENV
from bbuqc.stage_a.runner import run_stage_a

HERE = Path(__file__).resolve().parent


@pytest.fixture
def workers_see_the_test_helpers(monkeypatch):
    """Ray workers inherit the environment of the local cluster this process starts: let them import
    stage_a_support (the backend factory the tests hand over) like this process does."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, backend, tree, chatty_model) -> bytes:
    """The uninterrupted single-process run (infer.workers=1) the Ray runs must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("one-process") / "out.jsonl"
    summary = run_stage_a(compose(base_overrides(tree, out, chatty_model, batch_size=3)), backend=backend)
    assert summary["written"] == N_GROUPS
    return out.read_bytes()


def test_two_workers_write_what_one_process_writes(tmp_path, tree, chatty_model, one_process):
    out = tmp_path / "out.jsonl"
    summary = run_stage_a(compose(base_overrides(tree, out, chatty_model, batch_size=3, workers=2)))
    assert out.read_bytes() == one_process  # same records, discovery order restored
    assert summary["workers"] == 2 and summary["written"] == N_GROUPS and summary["failed"] == []
    import ray

    assert not ray.is_initialized()  # the local cluster it started is shut down


def test_unreachable_ray_address_is_one_line_and_writes_nothing(tmp_path, tree, chatty_model, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out" / "out.jsonl"
    cfg = compose(base_overrides(tree, out, chatty_model, workers=2, ray_address=f"127.0.0.1:{port}"))
    import ray

    def no_ray_init(*args, **kwargs):  # Ray's own attach waits (minutes) for an address that never answers
        raise AssertionError("ray.init reached: the unreachable address must be refused before it")

    monkeypatch.setattr(ray, "init", no_ray_init)
    with pytest.raises(InputError, match=rf"^infer\.ray_address=127\.0\.0\.1:{port}: no Ray cluster answers there"):
        run_stage_a(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_killed_actor_has_its_groups_retried(tmp_path, tree, chatty_model, one_process, workers_see_the_test_helpers):
    out = tmp_path / "out.jsonl"
    marker = tmp_path / "killed"
    summary = run_stage_a(compose(base_overrides(tree, out, chatty_model, batch_size=3, workers=2)),
                          backend_factory=functools.partial(backend_killed_once, marker=str(marker)))
    assert marker.exists()  # an actor really died mid-chunk
    assert out.read_bytes() == one_process  # nothing lost, nothing twice
    assert summary["written"] == N_GROUPS and summary["failed"] == []


@pytest.mark.slow
def test_a_chunk_that_kills_every_actor_stops_after_the_retry_limit(tmp_path, tree, chatty_model, one_process,
                                                                     workers_see_the_test_helpers):
    """Past MAX_RETRIES restarts the run stops with one line; the groups before the poisoned chunk
    are written (in order, once), and a re-run completes the file exactly."""
    out = tmp_path / "out.jsonl"
    cfg = compose(base_overrides(tree, out, chatty_model, batch_size=3, workers=2))
    with pytest.raises(InputError, match=r"^infer\.workers=2: a Ray worker failed .*re-run the same command to resume"):
        run_stage_a(cfg, backend_factory=functools.partial(backend_killed_on, image_name="a.jpeg"))
    partial = out.read_bytes()
    assert one_process.startswith(partial) and partial.count(b"\n") < N_GROUPS
    run_stage_a(cfg)
    assert out.read_bytes() == one_process


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_is_byte_identical(tmp_path, tree, chatty_model, one_process):
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "bbuqc.infer", *base_overrides(tree, out, chatty_model, batch_size=3, workers=2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the driver only (it writes the file) kills itself after its first durable record: its Ray cluster must
    # not keep the lock
    proc = subprocess.Popen(args, cwd=tmp_path, env={**env, KILL_ENV: "jsonl-append:1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    cut = out.read_bytes()
    assert one_process.startswith(cut[: cut.rfind(b"\n") + 1])
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes() == one_process


def test_workers_below_one_is_a_config_error():
    from bbuqc.checks import problems

    cfg = compose([f"mission={MISSION_ID}", "infer.workers=0"])
    assert "infer.workers=0: expected an integer >= 1" in problems(cfg, "infer")


def test_cli_more_workers_than_gpus_is_refused(tmp_path, tree):
    """compute.device=cuda with no GPU in the (local) cluster: one line naming infer.workers."""
    out = tmp_path / "out.jsonl"
    done = run_cli("infer", *base_overrides(tree, out, None, workers=2), "compute.device=cuda", cwd=tmp_path,
                   timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = error_lines(done.stderr)
    assert errors == ["error: infer.workers=2: the Ray cluster has 0 GPU(s) and every worker needs one; "
                      "use compute.device=cpu, or a cluster with GPUs"], done.stderr[-2000:]
