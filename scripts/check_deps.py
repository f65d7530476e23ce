"""Does the documented install still resolve? `make check-deps` (CI runs it after the tests).

Asks pip (this interpreter's, with this machine's pip configuration) to resolve `.[dev]` (the CPU
install) and `.[gpu]` (the GPU extra, as `pip install ".[gpu]"` from a wheel or `-e` would) from
scratch, without installing anything: `pip install --dry-run --ignore-installed --report`. Both run
side by side; each takes a minute or two (vLLM's resolution reads ~300 packages' metadata).

Exit codes:
  0  both resolve; one line each with the versions that matter.
  1  one does not resolve (pip's own lines naming the conflict follow), the gpu resolution picks a
     vLLM older than the floor the gpu extra pins in pyproject.toml, or torch and torchvision that
     are not a pair.
  2  pyproject.toml gives no vLLM floor to hold the resolution to.
  3  network: the package index did not answer (checked first), or pip lost the connection during a
     dry run. Not a conflict: nothing was learned about the dependencies.

pip runs without --quiet (its output is captured, not shown): --quiet drops the "The conflict is
caused by:" block that names the packages.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OK, FAILED, BAD_PIN, NETWORK = 0, 1, 2, 3
TARGETS = ("dev", "gpu")  # the extras resolved, each as ".[<extra>]"
SHOWN = ("vllm", "deepspeed", "torch", "torchvision", "transformers", "ms-swift")  # versions printed, if resolved

# What pip prints when it cannot reach an index (its retries, urllib3's and the resolver's errors).
NETWORK_SIGNS = re.compile(
    r"Retrying \(Retry\(|connection error|NewConnectionError|NameResolutionError|ConnectTimeoutError|"
    r"ReadTimeoutError|Read timed out|timed out|Max retries exceeded|Failed to establish a new connection|"
    r"Name or service not known|Temporary failure in name resolution|Network is unreachable|No route to host|"
    r"Connection refused|Connection reset|Connection aborted|Connection broken|RemoteDisconnected|"
    r"IncompleteRead|ProxyError|SSLError|CERTIFICATE_VERIFY_FAILED|problem confirming the ssl certificate",
    re.IGNORECASE,
)
# A resolution that failed on its own terms (a transient retry before it does not make it a network failure).
CONFLICT_SIGNS = ("ResolutionImpossible", "The conflict is caused by:")
NOISE = ("ERROR: Ignored the following versions that require a different python version",)


class PinError(Exception):
    """pyproject.toml does not say what vLLM the gpu extra must resolve to."""


@dataclass
class Verdict:
    code: int
    lines: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- reading


def vllm_pin(pyproject: Path = ROOT / "pyproject.toml") -> tuple[Requirement, Version]:
    """The gpu extra's vllm requirement and its floor (the highest >=, ==, ~= or > bound)."""
    extras = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
    reqs = [Requirement(r) for r in extras.get("gpu", [])]
    req = next((r for r in reqs if canonicalize_name(r.name) == "vllm"), None)
    if req is None:
        raise PinError(f"{pyproject.name}: the gpu extra has no vllm requirement")
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=", ">", "===")]
    if not floors:
        raise PinError(f"{pyproject.name}: gpu extra: {req} has no lower bound (pin the release line, "
                       f"e.g. vllm>=0.33,<0.34)")
    return req, max(floors)


def resolved(report: dict) -> dict[str, Version]:
    """{canonical name: version} of what a pip --report would install."""
    return {canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
            for item in report.get("install", [])}


def network_line(output: str) -> str | None:
    """The first line of pip's output that says it could not reach an index, if any."""
    for line in output.splitlines():
        if NETWORK_SIGNS.search(line):
            line = line.strip()
            return line if len(line) <= 300 else line[:297] + "..."

    return None


def conflict_lines(output: str) -> list[str]:
    """pip's own lines about a failed resolution: its ERROR lines and the blocks that name the
    packages ("The conflict is caused by:", "Additionally, some packages ...")."""
    out, in_block = [], False
    for raw in output.splitlines():
        line = raw.rstrip()
        if line.startswith(("The conflict is caused by:", "Additionally, some packages")):
            in_block = True
        elif in_block and not line.strip():
            in_block = False
            continue
        if in_block or (line.startswith("ERROR:") and not line.startswith(NOISE)):
            out.append(line)
    return out or [line.rstrip() for line in output.strip().splitlines()[-5:]]


def pair_problem(versions: dict[str, Version]) -> str | None:
    """torchvision 0.(m+15).p goes with torch 2.m.p (torchvision's release rule since torch 2.0)."""
    torch, vision = versions.get("torch"), versions.get("torchvision")
    if torch is None or vision is None or torch.major != 2:
        return None
    want = (0, torch.minor + 15, torch.micro)
    if vision.release[:3] != want:
        return (f"torch {torch} and torchvision {vision} are not a pair "
                f"(torch {torch.public} goes with torchvision {'.'.join(map(str, want))})")
    return None


def summary(versions: dict[str, Version]) -> str:
    shown = [f"{name} {versions[name]}" for name in SHOWN if name in versions]
    return ", ".join(shown) + f" ({len(versions)} packages)"


# ---------------------------------------------------------------------------------------- judging


def judge(target: str, rc: int, output: str, report: dict | None, pin: tuple[Requirement, Version] | None = None,
          timed_out: bool = False) -> Verdict:
    """What one dry run says: ``target`` is the extra, ``rc``/``output`` pip's exit status and its
    stdout+stderr, ``report`` its --report JSON (None when it wrote none), ``pin`` the gpu extra's
    vllm requirement and floor (checked when vllm is in the resolution's reach, i.e. for gpu)."""
    if rc != 0 or report is None:
        conflict = any(mark in output for mark in CONFLICT_SIGNS)
        if not conflict and (net := network_line(output)) is not None:
            return Verdict(NETWORK, [f"network: {target}: pip could not reach the package index: {net}"])
        if timed_out:
            return Verdict(FAILED, [f"{target}: pip did not finish resolving .[{target}] (backtracking?); its last lines:",
                                    *(f"  {line}" for line in output.strip().splitlines()[-5:])])
        return Verdict(FAILED, [f"{target}: .[{target}] does not resolve:", *(f"  {line}" for line in conflict_lines(output))])
    versions = resolved(report)
    problems = []
    if pin is not None:
        req, floor = pin
        got = versions.get("vllm")
        if got is None:
            problems.append(f"{target}: the resolution has no vllm (the gpu extra pins {req})")
        elif got < floor:
            problems.append(f"{target}: the resolution picks vllm {got}, older than the pinned {req}")
    if (pair := pair_problem(versions)) is not None:
        problems.append(f"{target}: {pair}")
    if problems:
        return Verdict(FAILED, problems)
    return Verdict(OK, [f"{target}: resolves: {summary(versions)}"])


def worst(verdicts: list[Verdict]) -> int:
    """A conflict found is the answer even if the other run lost the network; else network; else ok."""
    codes = {v.code for v in verdicts}
    return FAILED if FAILED in codes else NETWORK if NETWORK in codes else OK


# ---------------------------------------------------------------------------------------- running


def pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def probe_index(timeout: float = 120) -> tuple[Verdict, Version | None]:
    """Does the index answer? `pip index versions vllm` (pip's own config: index, proxy, certificates).
    Returns the verdict and the newest vllm the index lists."""
    cmd = pip("index", "versions", "--json", "-vv", "--retries", "1", "--timeout", "30", "vllm")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict(NETWORK, [f"network: the package index did not answer within {timeout:.0f} s"]), None
    newest = None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                newest = Version(json.loads(line)["versions"][0])
            except (ValueError, KeyError, IndexError):
                pass
    if proc.returncode == 0 and newest is not None:
        return Verdict(OK, [f"index: answers (newest vllm: {newest})"]), newest
    output = proc.stdout + proc.stderr
    net = network_line(output)
    why = net or next((ln for ln in reversed(output.splitlines()) if ln.startswith("ERROR:")), "no answer")
    return Verdict(NETWORK, [f"network: the package index does not answer (pip index versions vllm): {why.strip()}"]), None


def start_dry_run(target: str, report: Path) -> subprocess.Popen:
    cmd = pip("install", "--dry-run", "--ignore-installed", "--progress-bar", "off", "--report", str(report),
              f".[{target}]")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(target: str, proc: subprocess.Popen, report: Path, pin, timeout: float) -> Verdict:
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        timed_out = True
    data = json.loads(report.read_text()) if report.is_file() and not timed_out else None
    return judge(target, -1 if timed_out else proc.returncode, output, data, pin if target == "gpu" else None,
                 timed_out=timed_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=900, help="seconds each dry run may take (default 900)")
    args = parser.parse_args(argv)
    try:
        pin = vllm_pin()
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_PIN
    probe, newest = probe_index()
    print(*probe.lines, sep="\n", flush=True)
    if probe.code != OK:
        return probe.code
    with tempfile.TemporaryDirectory(prefix="check-deps-") as tmp:
        reports = {t: Path(tmp) / f"{t}.json" for t in TARGETS}
        procs = {t: start_dry_run(t, reports[t]) for t in TARGETS}
        verdicts = [finish(t, procs[t], reports[t], pin, args.timeout) for t in TARGETS]
    for v in verdicts:
        print(*v.lines, sep="\n", file=sys.stdout if v.code == OK else sys.stderr, flush=True)
    req, _ = pin
    if newest is not None and newest not in req.specifier:
        print(f"note: vllm {newest} is on the index, outside the gpu extra's {req}: moving to it means moving "
              "the pin and the torch/torchvision bounds together, then make check-deps")
    return worst(verdicts)


if __name__ == "__main__":
    sys.exit(main())
