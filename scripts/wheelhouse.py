"""`make wheelhouse`: bbuqc and the dependencies a GPU node without network lacks, as files in one folder.

Run it on a machine that reaches the package registry, with the project's venv (it reads the versions that
venv resolved and tested together). `make gpu-check WHEELHOUSE=<dir>` on the node installs from the folder with
`pip --no-index` into a fresh venv that sees the node's own packages (docs/gpu.md, "An air-gapped GPU node").

What goes in: the closure of bbuqc's requirements (markers read for the node's Python, `--python-version`),
each at the version this venv has, as a wheel for the node's Python and Linux x86_64 (a pure-Python sdist is
built into a wheel here; one that compiles code stays an sdist, built on the node). What stays out:

- the node's CUDA stack: torch, torchvision, torchaudio, triton, nvidia-*, cuda-* (the node's own build is
  the one that matches its driver);
- what the node already has (`--node-has`: a `pip list --format=freeze` of the node, or one name per line),
  with what it alone needs: the node's transformers brings its own tokenizers;
- Ray (a 70 MB wheel: the Ray checks of gpu-check report `skipped: ray not installed`) with its Hydra launcher
  (whose AWS support alone is 17 MB), and av (video decoding that qwen-vl-utils declares and bbuqc, images
  only, never imports).

The folder must stay within `--max-mib` (60: the device machine carries 64 MiB with the working tree); over
it, the command fails naming the largest files.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
CUDA_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
LEFT_OUT = {
    "ray": "a 70 MB wheel; the Ray checks report skipped",
    "av": "video decoding (qwen-vl-utils declares it; bbuqc reads images only)",
    "hydra-ray-launcher": "needs Ray (left out); it would bring boto3 (17 MB) for AWS clusters",
}
MAX_MIB = 60.0
PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "linux_x86_64")


def read_node_has(path: Path | None) -> set[str]:
    """Package names from a `pip list --format=freeze` / `pip freeze` output or one name per line."""
    if path is None:
        return set()
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(re.split(r"[=<>!~ @;\[]", line, maxsplit=1)[0]))
    return names


def closure(root: str, python_version: str, skip: set[str]) -> tuple[dict[str, str], list[str]]:
    """{name: version} of what `root` needs (installed here), not descending into skipped names; and the
    names required but not installed here (their markers hold on the node's Python only)."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    found: dict[str, str] = {}
    absent: list[str] = []
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen or (key in skip and key != canonicalize_name(root)):
            continue
        seen.add((key, extras))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            absent.append(key)
            continue
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                todo.append((req.name, frozenset(req.extras)))
    found.pop(canonicalize_name(root), None)
    return found, sorted(set(absent) - set(found))


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def size_problem(folder: Path, max_mib: float = MAX_MIB) -> str | None:
    """None when the folder fits, else one line: its size and its largest files."""
    size = folder_mib(folder)
    if size <= max_mib:
        return None
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size, reverse=True)
    largest = ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)" for p in files[:5])
    return (f"wheelhouse {folder}: {size:.1f} MiB, over the {max_mib:g} MiB limit; largest: {largest}. Leave out "
            "what the node has (NODE_HAS=<its pip list --format=freeze>)")


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download(name: str, version: str, out: Path, python_version: str) -> str:
    """The package as a wheel for the node (else a pure-Python wheel built here, else its sdist); which."""
    spec = f"{name}=={version}"
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    got = _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", *platforms, "-d", str(out), spec)
    if got.returncode == 0:
        return "wheel"
    with tempfile.TemporaryDirectory() as tmp:
        got = _pip("download", "--quiet", "--no-deps", "--no-binary=:all:", "-d", tmp, spec)
        if got.returncode:
            raise SystemExit(f"wheelhouse: {spec}: neither a wheel for Python {python_version} nor an sdist on the "
                             f"registry ({got.stderr.strip().splitlines()[-1] if got.stderr.strip() else ''})")
        sdist = next(Path(tmp).iterdir())
        built = _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp, str(sdist))
        wheels = list(Path(tmp).glob("*.whl"))
        if built.returncode == 0 and wheels and wheels[0].name.endswith("-none-any.whl"):
            shutil.copy2(wheels[0], out)
            return "built"
        shutil.copy2(sdist, out)  # compiled code: the node builds it (pip --no-build-isolation)
        return "sdist"


def build(out: Path, node_has: Path | None, python_version: str, max_mib: float) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    has = read_node_has(node_has)
    cuda = {canonicalize_name(d.metadata["Name"]) for d in md.distributions() if CUDA_STACK.match(
        canonicalize_name(d.metadata["Name"] or ""))}
    skip = has | cuda | set(LEFT_OUT)
    wanted, absent = closure("bbuqc", python_version, skip)
    print(f"wheelhouse: {len(wanted)} packages (left out: the CUDA stack, {', '.join(sorted(LEFT_OUT))}"
          f"{f', and {len(has)} the node has ({node_has})' if has else ''})")
    if absent:
        print(f"wheelhouse: not installed here, so not included (their markers hold on Python {python_version} "
              f"only): {', '.join(absent)}")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(out), str(REPO)], capture_output=True, text=True)
    if built.returncode:
        print(built.stderr, file=sys.stderr)
        return 1
    with ThreadPoolExecutor(max_workers=8) as pool:
        kinds = list(pool.map(lambda kv: download(*kv, out, python_version), sorted(wanted.items())))
    sdists = [n for n, k in zip(sorted(wanted), kinds) if k == "sdist"]
    if sdists:
        print(f"wheelhouse: built on the node from source (compiled code): {', '.join(sdists)}")
    (out / "node-has.txt").write_text("".join(f"{n}\n" for n in sorted(has)), encoding="utf-8")
    problem = size_problem(out, max_mib)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"wheelhouse: {out} holds {sum(1 for _ in out.iterdir())} files, {folder_mib(out):.1f} MiB "
          f"(limit {max_mib:g} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "wheelhouse")
    parser.add_argument("--node-has", type=Path, help="the node's `pip list --format=freeze` (what to leave out)")
    parser.add_argument("--python-version", default="3.12", help="the node's Python (X.Y)")
    parser.add_argument("--max-mib", type=float, default=MAX_MIB)
    parser.add_argument("--check-size", type=Path, metavar="DIR", help="only check an existing folder's size")
    args = parser.parse_args(argv)
    if args.check_size:
        problem = size_problem(args.check_size, args.max_mib)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        print(f"wheelhouse {args.check_size}: {folder_mib(args.check_size):.1f} MiB, within {args.max_mib:g} MiB")
        return 0
    return build(args.out.resolve(), args.node_has, args.python_version, args.max_mib)


if __name__ == "__main__":
    sys.exit(main())
