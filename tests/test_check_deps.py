"""scripts/check_deps.py (`make check-deps`): reading pip's dry-run reports and output. No network:
the outputs below are pip 26's own, captured from real dry runs (trimmed to the lines that matter)."""

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_deps", ROOT / "scripts" / "check_deps.py")
cd = importlib.util.module_from_spec(_spec)
sys.modules["check_deps"] = cd
_spec.loader.exec_module(cd)

PIN = (Requirement("vllm>=0.33,<0.34"), Version("0.33"))

# .[gpu] with the old base pins (torch==2.14.1) and vllm>=0.33,<0.34 (stdout and stderr together)
CONFLICT = """\
Collecting vllm<0.34,>=0.33 (from bbuqc[gpu]==0.1.0)
  Using cached vllm-0.33.0-cp38-abi3-manylinux_2_31_x86_64.whl.metadata (9.4 kB)
INFO: pip is looking at multiple versions of bbuqc[gpu] to determine which version is compatible with other requirements. This could take a while.
ERROR: Ignored the following versions that require a different python version: 0.52.0 Requires-Python >=3.6,<3.9; 1.18.0 Requires-Python >=3.12
ERROR: Cannot install None, bbuqc and bbuqc[gpu]==0.1.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    bbuqc 0.1.0 depends on torch==2.14.1
    bbuqc[gpu] 0.1.0 depends on torch==2.14.1
    torchvision 0.29.1 depends on torch>=2.14.0
    vllm 0.33.0 depends on torch==2.14.0
    The user requested (constraint) torch<=2.14.1

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    torch

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""

# vllm 0.34.0 asks for a flashinfer release the registry does not have: no backtracking, no conflict block
MISSING = """\
ERROR: Could not find a version that satisfies the requirement flashinfer-python==0.7.3 (from vllm) (from versions: 0.7.2.post1, 0.7.4)
ERROR: No matching distribution found for flashinfer-python==0.7.3 (from vllm)
"""

# the index refuses connections (pip's build isolation fetching setuptools comes first)
NETWORK = """\
  error: subprocess-exited-with-error

  × installing build dependencies did not run successfully.
  │ exit code: 1
  ╰─> [9 lines of output]
      Looking in indexes: http://127.0.0.1:9/simple
      WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError("HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused")': /simple/setuptools/
      ERROR: Could not find a version that satisfies the requirement setuptools>=64 (from versions: none)
      ERROR: No matching distribution found for setuptools>=64
      [end of output]
ERROR: Failed to build 'file:///work/main' when installing build dependencies
"""

# name resolution fails (pip -vv, as the index probe runs it)
DNS = """\
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NameResolutionError("HTTPSConnection(host='nonexistent.invalid', port=443): Failed to resolve 'nonexistent.invalid' ([Errno -2] Name or service not known)")': /simple/vllm/
Could not fetch URL https://nonexistent.invalid/simple/vllm/: connection error: Failed to resolve IP address for 'nonexistent.invalid' ([Errno -2] Name or service not known) - skipping
ERROR: No matching distribution found for vllm
"""


def report(**versions: str) -> dict:
    """A pip --report (format 1) that installs these {name: version}."""
    return {"version": "1", "pip_version": "26.3", "environment": {},
            "install": [{"metadata": {"metadata_version": "2.1", "name": name.replace("_", "-"), "version": v},
                         "is_direct": False, "is_yanked": False, "requested": False, "download_info": {}}
                        for name, v in versions.items()]}


GPU_OK = report(vllm="0.33.0", deepspeed="0.19.8", torch="2.14.0", torchvision="0.29.0", transformers="5.19.0",
                ms_swift="4.6.0", bbuqc="0.1.0")


def test_a_resolution_that_fits_passes_with_its_versions():
    v = cd.judge("gpu", 0, "", GPU_OK, PIN)
    assert v.code == cd.OK
    assert v.lines == ["gpu: resolves: vllm 0.33.0, deepspeed 0.19.8, torch 2.14.0, torchvision 0.29.0, "
                       "transformers 5.19.0, ms-swift 4.6.0 (7 packages)"]
    dev = cd.judge("dev", 0, "", report(torch="2.14.1", torchvision="0.29.1", ms_swift="4.6.0"))
    assert dev.code == cd.OK and dev.lines[0].startswith("dev: resolves: torch 2.14.1, torchvision 0.29.1")


def test_resolution_impossible_is_a_conflict_named_by_pips_own_lines():
    v = cd.judge("gpu", 1, CONFLICT, None, PIN)
    assert v.code == cd.FAILED
    assert v.lines[0] == "gpu: .[gpu] does not resolve:"
    body = [line.strip() for line in v.lines[1:]]
    assert "bbuqc 0.1.0 depends on torch==2.14.1" in body and "vllm 0.33.0 depends on torch==2.14.0" in body
    assert any("ResolutionImpossible" in line for line in body)
    assert not any("Ignored the following versions" in line or "Collecting" in line for line in body)


def test_a_missing_distribution_is_a_conflict_not_a_network_failure():
    v = cd.judge("gpu", 1, MISSING, None, PIN)
    assert v.code == cd.FAILED
    assert [line.strip() for line in v.lines[1:]] == MISSING.strip().splitlines()


@pytest.mark.parametrize("output", [NETWORK, DNS])
def test_an_unreachable_index_is_reported_as_network(output):
    v = cd.judge("dev", 1, output, None)
    assert v.code == cd.NETWORK
    assert len(v.lines) == 1 and v.lines[0].startswith("network: dev: pip could not reach the package index: ")


def test_a_retry_before_a_real_conflict_keeps_it_a_conflict():
    flaky = "WARNING: Retrying (Retry(total=4, ...)) after connection broken by 'ReadTimeoutError(...)': /simple/x/\n"
    assert cd.judge("gpu", 1, flaky + CONFLICT, None, PIN).code == cd.FAILED


def test_a_run_that_never_finishes_is_a_failure_naming_the_backtracking():
    v = cd.judge("gpu", -1, "INFO: pip is looking at multiple versions of vllm\n", None, PIN, timed_out=True)
    assert v.code == cd.FAILED and "backtracking" in v.lines[0]


def test_a_vllm_older_than_the_pin_or_none_fails():
    old = report(vllm="0.4.3", torch="2.14.0", torchvision="0.29.0")
    v = cd.judge("gpu", 0, "", old, PIN)
    assert v.code == cd.FAILED
    assert v.lines == ["gpu: the resolution picks vllm 0.4.3, older than the pinned vllm<0.34,>=0.33"]
    none = cd.judge("gpu", 0, "", report(torch="2.14.0", torchvision="0.29.0"), PIN)
    assert none.code == cd.FAILED and "has no vllm" in none.lines[0]


@pytest.mark.parametrize(("torch", "vision", "ok"), [("2.14.0", "0.29.0", True), ("2.14.1+cu128", "0.29.1", True),
                                                    ("2.14.0", "0.29.1", False), ("2.14.1", "0.30.1", False)])
def test_torch_and_torchvision_must_be_a_pair(torch, vision, ok):
    v = cd.judge("dev", 0, "", report(torch=torch, torchvision=vision))
    assert (v.code == cd.OK) is ok
    if not ok:
        assert v.lines[0].startswith(f"dev: torch {torch} and torchvision {vision} are not a pair")


def test_worst_a_conflict_wins_over_network():
    ok, net, bad = cd.Verdict(cd.OK), cd.Verdict(cd.NETWORK), cd.Verdict(cd.FAILED)
    assert cd.worst([ok, ok]) == cd.OK
    assert cd.worst([ok, net]) == cd.NETWORK
    assert cd.worst([net, bad]) == cd.FAILED


def test_the_pin_is_read_from_pyproject(tmp_path):
    req, floor = cd.vllm_pin()  # the project's own
    assert floor in req.specifier and str(floor) in str(req)
    toml = tmp_path / "pyproject.toml"
    toml.write_text('[project]\nname = "x"\n[project.optional-dependencies]\ngpu = ["vllm~=0.33.1", "deepspeed"]\n')
    assert cd.vllm_pin(toml)[1] == Version("0.33.1")
    for gpu in ('["vllm", "deepspeed"]', '["vllm<0.34"]', '["deepspeed"]'):
        toml.write_text(f'[project]\nname = "x"\n[project.optional-dependencies]\ngpu = {gpu}\n')
        with pytest.raises(cd.PinError):
            cd.vllm_pin(toml)


def test_the_base_torch_pair_follows_the_pinned_vllm():
    """vLLM 0.33 pins torch==2.14.0 / torchvision==0.29.0: the base dependencies must allow that pair
    (or `pip install .[gpu]` cannot resolve) and keep the CPU pair this machine installs."""
    import tomllib

    deps = {Requirement(d).name: Requirement(d) for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for torch, vision in (("2.14.0", "0.29.0"), ("2.14.1", "0.29.1")):
        assert torch in deps["torch"].specifier and vision in deps["torchvision"].specifier
    assert "0.29.2" not in deps["torchvision"].specifier  # asks only torch>=2.14.0: could land beside 2.14.1


def test_main_stops_at_an_unreachable_index_before_any_dry_run(monkeypatch, capsys):
    monkeypatch.setattr(cd, "probe_index", lambda: (cd.Verdict(cd.NETWORK, ["network: no answer"]), None))
    monkeypatch.setattr(cd, "start_dry_run", lambda *a: pytest.fail("dry run started"))
    assert cd.main([]) == cd.NETWORK
    assert capsys.readouterr().out.strip() == "network: no answer"
