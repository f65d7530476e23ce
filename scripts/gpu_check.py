"""`make gpu-check`: the GPU acceptance run (issue 31.1). One GPU, offline, the real bbuqc commands.

Every check is one `python -m bbuqc.<command>` (or a `-m` sweep) in its own folder under
outputs/gpu_check/; this script only plans, runs, watches and records them:

- the tiny twin of every family (VL: tiny_qwen2_vl, tiny_qwen2_5_vl, tiny_qwen3_vl on task=summary;
  text: tiny_text, tiny_qwen2_5 on task=verdict), with compute=gpu and compute=gpu_vllm: GRPO 3 steps
  validated at the start and at the end, SFT 3 steps;
- Stage-A (VL twins) with infer.backend=hf and vllm, without and with the SFT adapter; evaluation (text
  twins) without and with the GRPO adapter (and evaluate.backend=vllm where the schema has it);
- export of each adapter, then Stage-A / evaluation from the merged folder;
- Stage-A on Ray Data (infer.workers=1 on a local Ray cluster), a 2-job Ray-launcher sweep with one GPU
  per job, compute=gpu_zero2 with compute.nproc_per_node=1 (with its vLLM rollouts, and with HF ones).

Each check records pass/fail, wall time, ms-swift's step time (training checks), and the peak GPU memory of
its processes (nvidia-smi, polled) to outputs/bench/gpu.json, rewritten after every check so a run cut
short keeps what it measured. A check whose package is missing (vLLM, Ray, DeepSpeed) is `skipped: <package>
not installed`; one whose input check did not pass is skipped naming it. Exit 1 when a check failed.

Where no GPU is visible it prints "no GPU: skipped" and exits 0 (nothing written). `--dry-run` lists the
plan (on any machine). `--wheelhouse DIR` first makes a fresh venv (`--system-site-packages`: the node's
own CUDA torch, transformers, PEFT) and installs bbuqc and its dependencies from DIR with `--no-index`
(`make wheelhouse` builds DIR; docs/gpu.md "An air-gapped GPU node"), then runs the checks in it.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout: its bbuqc (an installed one wins in a venv)
    sys.path.append(str(REPO))

VL_TWINS = ("tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_qwen3_vl")
TEXT_TWINS = ("tiny_text", "tiny_qwen2_5")
COMPUTES = ("gpu", "gpu_vllm")
STEPS = 3
# the vLLM engines of the run share the GPU with the HF checks beside them: a small fixed share each (a
# tiny model needs next to nothing), eager mode (no CUDA-graph capture: seconds per engine)
VLLM_SHARE = "0.12"
SCHEMA_VERSION = 1
WORLD = "prepare/synthetic_world"


@dataclass
class Check:
    name: str  # <what>/<model>/<how>, e.g. grpo/tiny_qwen2_vl/gpu
    argv: list[str]  # the command, run from the repository root
    run_dir: Path  # the check's own folder (its hydra.run.dir / sweep dir)
    needs: tuple[str, ...] = ()  # checks that must pass first (their adapters / merged folders)
    requires: tuple[str, ...] = ()  # Python packages it needs (vllm, ray, deepspeed)
    lane: str = "hf"  # "vllm": at most --vllm-jobs of them at once (each holds an engine)
    trains: bool = False  # reports ms-swift's step time
    expect: tuple[str, ...] = ()  # files (globs, under run_dir) that a pass leaves
    skip: str | None = None  # why it is not run here (--cpu: the GPU-only checks)


@dataclass
class Result:
    name: str
    command: str
    status: str  # passed | failed | skipped
    reason: str | None = None
    wall_s: float | None = None
    step_time_s: float | None = None
    peak_gpu_mem_mib: int | None = None  # the check's own processes (nvidia-smi's per-process figures)
    peak_device_mem_mib: int | None = None  # the whole GPU while it ran (other checks' share included)
    returncode: int | None = None
    log: str | None = None
    error: str | None = None  # the log's last lines on a failure


# ------------------------------------------------------------------------------------------------ the plan


def _train(name: str, model: str, algo: str, compute: str, out: Path, python: str) -> Check:
    verdict = model in TEXT_TWINS
    run_dir = out / name.replace("/", "__")
    argv = [python, "-m", "bbuqc.train", f"model={model}", f"algo={algo}", f"compute={compute}",
            *(["task=verdict", "reward=verdict"] if verdict else ["task=summary"]),
            f"train.max_steps={STEPS}", f"train.save_steps={STEPS}", "logger=none", f"hydra.run.dir={run_dir}"]
    if algo == "grpo":
        # validated at the start too: on vLLM the engine's first weight sync is then the validation's
        argv += [f"train.eval_steps={STEPS}", "data.val_fraction=0.25", "train.val_batch_size=16",
                 "train.val_on_start=true"]
    vllm = algo == "grpo" and compute == "gpu_vllm"
    if vllm:
        argv += [f"compute.vllm_gpu_memory_utilization={VLLM_SHARE}", "+train.extra.vllm_enforce_eager=true"]
    expect = (f"checkpoint-{STEPS}/adapter_config.json", "logging.jsonl")
    if algo == "grpo":
        expect += ("validation.jsonl",)
    return Check(name, argv, run_dir, requires=("vllm",) if vllm else (), lane="vllm" if vllm else "hf",
                 trains=True, expect=expect)


def _adapter(out: Path, check: str) -> str:
    return str(out / check.replace("/", "__") / f"checkpoint-{STEPS}")


def _merged(out: Path, check: str) -> str:
    return str(out / check.replace("/", "__") / "merged")


def _infer(name: str, model: str, backend: str, out: Path, python: str, *, adapter_of: str | None = None,
           merged_of: str | None = None, extra: tuple[str, ...] = ()) -> Check:
    run_dir = out / name.replace("/", "__")
    vllm = backend == "vllm"
    argv = [python, "-m", "bbuqc.infer", f"model={model}", f"compute={'gpu_vllm' if vllm else 'gpu'}",
            f"infer.backend={backend}", f"infer.output={run_dir / 'stage_a.jsonl'}", "infer.progress=false",
            "logger=none", f"hydra.run.dir={run_dir}", *extra]
    if vllm:
        argv.append(f"compute.vllm_gpu_memory_utilization={VLLM_SHARE}")
    needs = _model_source(argv, out, adapter_of, merged_of)
    requires = ("vllm",) if vllm else ()
    if any(a.startswith("infer.ray_address") for a in extra):
        requires += ("ray",)
    return Check(name, argv, run_dir, needs=needs, requires=requires, lane="vllm" if vllm else "hf",
                 expect=("stage_a.jsonl",))



def _model_source(argv: list[str], out: Path, adapter_of: str | None, merged_of: str | None) -> tuple[str, ...]:
    """Point ``argv`` at another check's adapter or merged folder; the checks it therefore waits for."""
    if adapter_of:
        argv.append(f"model.adapter={_adapter(out, adapter_of)}")
        return (adapter_of,)
    if merged_of:
        argv.append(f"model.path={_merged(out, merged_of)}")
        return (merged_of,)
    return ()

def _evaluate(name: str, model: str, out: Path, python: str, *, backend: str | None = None,
              adapter_of: str | None = None, merged_of: str | None = None) -> Check:
    run_dir = out / name.replace("/", "__")
    vllm = backend == "vllm"
    argv = [python, "-m", "bbuqc.evaluate", f"model={model}", f"compute={'gpu_vllm' if vllm else 'gpu'}",
            "data.max_rows=12", f"evaluate.output_dir={run_dir / 'eval'}", "evaluate.progress=false",
            "logger=none", f"hydra.run.dir={run_dir}"]
    if backend:
        argv.append(f"evaluate.backend={backend}")
    if vllm:
        argv.append(f"compute.vllm_gpu_memory_utilization={VLLM_SHARE}")
    needs = _model_source(argv, out, adapter_of, merged_of)
    return Check(name, argv, run_dir, needs=needs, requires=("vllm",) if vllm else (),
                 lane="vllm" if vllm else "hf", expect=("eval/metrics.json",))


def _export(name: str, model: str, adapter_of: str, out: Path, python: str) -> Check:
    run_dir = out / name.replace("/", "__")
    argv = [python, "-m", "bbuqc.export", f"model={model}", "compute=gpu", f"model.adapter={_adapter(out, adapter_of)}",
            f"export.output={run_dir / 'merged'}", f"hydra.run.dir={run_dir}"]
    return Check(name, argv, run_dir, needs=(adapter_of,), expect=("merged/config.json",))


def evaluate_has_backend() -> bool:
    """Whether this bbuqc has `evaluate.backend` (vLLM evaluation), read from the schema (no torch import)."""
    try:
        from bbuqc.config.schema import EvaluateConfig
    except ImportError:
        return False
    return "backend" in EvaluateConfig.__dataclass_fields__


def plan(out: Path, python: str = sys.executable) -> list[Check]:
    """Every check, inputs before the checks that read them."""
    # the default synthetic world, built once before the checks that read it start side by side (two first
    # builders would replace each other's folder under a reader)
    world = Check(WORLD, [python, "-m", "bbuqc.synth"], out / WORLD.replace("/", "__"))
    checks: list[Check] = []
    for model in VL_TWINS + TEXT_TWINS:
        for compute in COMPUTES:
            for algo in ("grpo", "sft"):
                checks.append(_train(f"{algo}/{model}/{compute}", model, algo, compute, out, python))
    for model in VL_TWINS:
        sft = f"sft/{model}/gpu"
        for backend in ("hf", "vllm"):
            checks.append(_infer(f"stage_a/{model}/{backend}", model, backend, out, python))
            checks.append(_infer(f"stage_a/{model}/{backend}+adapter", model, backend, out, python, adapter_of=sft))
        checks.append(_export(f"export/{model}", model, sft, out, python))
        for backend in ("hf", "vllm"):
            checks.append(_infer(f"stage_a/{model}/{backend}+merged", model, backend, out, python,
                                 merged_of=f"export/{model}"))
    backends = (None, "vllm") if evaluate_has_backend() else (None,)
    for model in TEXT_TWINS:
        grpo = f"grpo/{model}/gpu"
        for backend in backends:
            how = backend or "hf"
            checks.append(_evaluate(f"evaluate/{model}/{how}", model, out, python, backend=backend))
            checks.append(_evaluate(f"evaluate/{model}/{how}+adapter", model, out, python, backend=backend,
                                    adapter_of=grpo))
        checks.append(_export(f"export/{model}", model, grpo, out, python))
        checks.append(_evaluate(f"evaluate/{model}/hf+merged", model, out, python, merged_of=f"export/{model}"))
    # Ray Data: one model actor on the GPU of a local Ray cluster
    checks.append(_infer("ray_data/tiny_qwen2_vl/hf", "tiny_qwen2_vl", "hf", out, python,
                         extra=("infer.workers=1", "infer.ray_address=local")))
    # the Ray launcher: two jobs, one GPU each (queued one after the other on a one-GPU machine)
    sweep_dir = out / "ray_sweep__tiny_text__gpu"
    checks.append(Check("ray_sweep/tiny_text/gpu", [
        python, "-m", "bbuqc.train", "-m", "model=tiny_text", "task=verdict", "reward=verdict", "compute=gpu",
        "train.max_steps=2", "train.save_steps=2", "train.seed=1,2", "logger=none", "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=local", f"hydra.sweep.dir={sweep_dir}"],
        sweep_dir, requires=("ray",), trains=True,
        expect=("0_*/checkpoint-2/adapter_config.json", "1_*/checkpoint-2/adapter_config.json")))
    # DeepSpeed ZeRO-2 in one process: the preset as it is (vLLM rollouts), and with HF rollouts
    for rollout in ("vllm_colocate", "hf"):
        name = f"zero2/tiny_text/{'vllm' if rollout != 'hf' else 'hf'}"
        run_dir = out / name.replace("/", "__")
        argv = [python, "-m", "bbuqc.train", "model=tiny_text", "task=verdict", "reward=verdict", "compute=gpu_zero2",
                "compute.nproc_per_node=1", f"compute.rollout={rollout}", f"train.max_steps={STEPS}",
                f"train.save_steps={STEPS}", "logger=none", f"hydra.run.dir={run_dir}"]
        if rollout == "hf":
            argv.append("compute.sleep_level=0")
        else:
            argv += [f"compute.vllm_gpu_memory_utilization={VLLM_SHARE}", "+train.extra.vllm_enforce_eager=true"]
        checks.append(Check(name, argv, run_dir, requires=("deepspeed", "vllm") if rollout != "hf" else ("deepspeed",),
                            lane="vllm" if rollout != "hf" else "hf", trains=True,
                            expect=(f"checkpoint-{STEPS}/adapter_config.json",)))
    for c in checks:
        c.needs = (WORLD, *c.needs)
    return [world, *checks]


def select(checks: list[Check], patterns: list[str]) -> list[Check]:
    """The checks matching any pattern (fnmatch on the name), with the checks they need."""
    if not patterns:
        return checks
    by_name = {c.name: c for c in checks}
    chosen: set[str] = set()

    def take(name: str) -> None:
        if name not in chosen:
            chosen.add(name)
            for dep in by_name[name].needs:
                take(dep)

    for c in checks:
        if any(fnmatch.fnmatchcase(c.name, p) for p in patterns):
            take(c.name)
    return [c for c in checks if c.name in chosen]


def on_cpu(checks: list[Check]) -> list[Check]:
    """--cpu (a developer's rehearsal of the plan on a CPU machine): compute=gpu becomes compute=cpu; what
    needs a GPU (vLLM, DeepSpeed) is skipped."""
    out = []
    for c in checks:
        argv = ["compute=cpu" if a == "compute=gpu" else a for a in c.argv]
        gpu_only = c.lane == "vllm" or "deepspeed" in c.requires
        out.append(Check(**{**c.__dict__, "argv": argv, "skip": "needs a GPU (--cpu)" if gpu_only else None}))
    return out


def missing_package(check: Check) -> str | None:
    for package in check.requires:
        if importlib.util.find_spec(package) is None:
            return package
    return None


# ----------------------------------------------------------------------------------------- GPU memory


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += children.get(p, [])
    return out


def _smi(query: str, kind: str) -> list[list[str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        text = subprocess.run([smi, f"--query-{kind}={query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line.strip()]


class MemoryWatch:
    """Polls nvidia-smi; each running check's peak is the sum over the processes of its tree (a Ray or
    vLLM worker is a child of its command), and the device's peak while the check ran."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.running: dict[str, int] = {}  # check -> its command's pid
        self.peak: dict[str, int] = {}
        self.device_peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def start(self, name: str, pid: int) -> None:
        with self._lock:
            self.running[name] = pid

    def stop(self, name: str) -> tuple[int | None, int | None]:
        self.sample()  # a last look before the figures are read
        with self._lock:
            self.running.pop(name, None)
            return self.peak.pop(name, None), self.device_peak.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            running = dict(self.running)
        if not running:
            return
        used = [int(r[0]) for r in _smi("memory.used", "gpu") if r and r[0].isdigit()]
        per_pid = {}
        for row in _smi("pid,used_memory", "compute-apps"):
            if len(row) == 2 and row[0].isdigit() and row[1].isdigit():
                per_pid[int(row[0])] = int(row[1])
        children = _children_map() if per_pid else {}
        with self._lock:
            for name, pid in running.items():
                if name not in self.running:
                    continue
                if used:
                    self.device_peak[name] = max(self.device_peak.get(name, 0), sum(used))
                if per_pid:
                    mine = sum(mem for p, mem in per_pid.items() if p in _tree(pid, children))
                    self.peak[name] = max(self.peak.get(name, 0), mine)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


# ------------------------------------------------------------------------------------------ running


def step_time(run_dir: Path) -> float | None:
    """ms-swift's per-step time: the median `step_time` of GRPO's steps after the first, else the last
    `train_speed(s/it)` (SFT); from every logging.jsonl under the folder (a sweep has one per job)."""
    from bbuqc.io.run_folder import LOGGING, log_rows

    steps, speeds = [], []
    for log in sorted(run_dir.rglob(LOGGING)):
        rows = log_rows(log.parent)
        times = [r["step_time"] for r in rows if isinstance(r.get("step_time"), int | float)]
        steps += times[1:] or times
        speeds += [r["train_speed(s/it)"] for r in rows if isinstance(r.get("train_speed(s/it)"), int | float)][-1:]
    if steps:
        return round(statistics.median(steps), 4)
    return round(statistics.median(speeds), 4) if speeds else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_check(check: Check, watch: MemoryWatch, timeout_s: float) -> Result:
    command = " ".join(check.argv[1:])
    if check.run_dir.exists():
        shutil.rmtree(check.run_dir)  # a fresh run, never a resume of an earlier gpu-check
    check.run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = check.run_dir.parent / f"{check.run_dir.name}.log"
    # a few threads each: the checks run side by side on the node's cores
    env = {"OMP_NUM_THREADS": "2", **os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline",
           "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(" ".join(check.argv) + "\n")
        fh.flush()
        proc = subprocess.Popen(check.argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # its own process group: a timeout ends all of it
        watch.start(check.name, proc.pid)
        try:
            code = proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code, timed_out = proc.wait(), True
    wall = round(time.perf_counter() - start, 2)
    peak, device_peak = watch.stop(check.name)
    missing = [p for p in check.expect if not any(check.run_dir.glob(p))]
    if timed_out:
        status, reason = "failed", f"timed out after {timeout_s:.0f} s"
    elif code != 0:
        status, reason = "failed", f"exit {code}"
    elif missing:
        status, reason = "failed", f"exit 0 but no {', '.join(missing)} under {check.run_dir}"
    else:
        status, reason = "passed", None
    return Result(check.name, command, status, reason, wall_s=wall,
                  step_time_s=step_time(check.run_dir) if check.trains else None, peak_gpu_mem_mib=peak,
                  peak_device_mem_mib=device_peak, returncode=code, log=str(log),
                  error=_tail(log) if status == "failed" else None)


def environment() -> dict:
    """The GPU, the Python and the versions the run used."""
    import importlib.metadata as md

    gpu = _smi("name,memory.total,driver_version", "gpu")
    versions = {}
    for dist in ("torch", "transformers", "peft", "ms-swift", "vllm", "ray", "deepspeed", "bbuqc"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {"gpu": [{"name": r[0], "memory_mib": int(r[1]) if r[1].isdigit() else r[1], "driver": r[2]}
                    for r in gpu if len(r) == 3],
            "python": platform.python_version(), "executable": sys.executable, "packages": versions}


def write_report(path: Path, report: dict) -> None:
    from bbuqc.io.atomic import write_json_atomic

    write_json_atomic(path, report)  # after every check: a reader never sees half a report


def run_all(checks: list[Check], *, report_path: Path, jobs: int = 4, vllm_jobs: int = 2,
            timeout_s: float = 300, env_info: dict | None = None, mode: str = "gpu", budget_s: float | None = None,
            say=print) -> dict:
    """Run the checks (at most `jobs` at once, at most `vllm_jobs` of the vLLM lane), each when the checks it
    needs have passed; none starts once `budget_s` seconds are spent; the report is rewritten after each one."""
    started = time.time()
    results: dict[str, Result] = {}
    report = {"schema": SCHEMA_VERSION, "mode": mode,  # gpu | cpu-rehearsal (--cpu: no GPU figures)
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "environment": env_info or {}, "jobs": jobs, "vllm_jobs": vllm_jobs, "checks": [], "summary": {}}

    def flush() -> None:
        ordered = [asdict(results[c.name]) for c in checks if c.name in results]
        counts = {s: sum(r["status"] == s for r in ordered) for s in ("passed", "failed", "skipped")}
        report.update(checks=ordered, summary={**counts, "planned": len(checks),
                                               "wall_s": round(time.time() - started, 1)})
        write_report(report_path, report)

    def finish(result: Result) -> None:
        results[result.name] = result
        extra = f" ({result.reason})" if result.reason else ""
        timing = f" {result.wall_s:.1f}s" if result.wall_s is not None else ""
        say(f"[gpu-check] {result.status:7s} {result.name}{timing}{extra}")
        flush()

    pending = list(checks)
    running: dict[Future, Check] = {}
    with MemoryWatch() as watch, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            progressed = False
            if budget_s is not None and pending and time.time() - started > budget_s:
                for check in pending:
                    finish(Result(check.name, " ".join(check.argv[1:]), "skipped",
                                  f"not started: the --budget of {budget_s:g} s was spent"))
                pending.clear()
            for check in list(pending):
                blocked = [d for d in check.needs if d in {c.name for c in checks} and d not in results]
                failed = [d for d in check.needs if d in results and results[d].status != "passed"]
                package = None if check.skip else missing_package(check)
                if check.skip or package or failed:
                    pending.remove(check)
                    reason = check.skip or (f"{package} not installed" if package else
                                            f"needs {failed[0]}, which did not pass")
                    finish(Result(check.name, " ".join(check.argv[1:]), "skipped", reason))
                    progressed = True
                    continue
                if blocked or len(running) >= jobs:
                    continue
                if check.lane == "vllm" and sum(c.lane == "vllm" for c in running.values()) >= vllm_jobs:
                    continue
                pending.remove(check)
                running[pool.submit(run_check, check, watch, timeout_s)] = check
                progressed = True
            if running and not progressed:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    finish(future.result())
            elif not running and pending and not progressed:  # a dependency outside the selection
                for check in pending:
                    finish(Result(check.name, " ".join(check.argv[1:]), "skipped", "its inputs were not planned"))
                pending.clear()
    flush()
    return report


# ------------------------------------------------------------------------------------ the wheelhouse venv


def make_venv(wheelhouse: Path, venv: Path, say=print) -> Path:
    """A fresh venv that sees this interpreter's packages (the node's CUDA torch, transformers, PEFT), with
    bbuqc and its dependencies installed from the wheelhouse alone. Returns its python."""
    wheels = sorted(p for p in wheelhouse.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz"))
    if not any(p.name.startswith("bbuqc-") for p in wheels):
        raise SystemExit(f"gpu-check: WHEELHOUSE={wheelhouse}: no bbuqc wheel in it (make wheelhouse builds one)")
    if venv.exists():
        shutil.rmtree(venv)
    # no pip of its own (ensurepip is missing from some system Pythons): this interpreter's pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    if sys.prefix != sys.base_prefix:
        # this interpreter is itself a venv (e.g. /opt/torch/.venv): --system-site-packages reaches the base
        # Python's packages, not this venv's, so its site-packages are added with a .pth file
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        (Path(purelib) / "_node_site.pth").write_text("".join(f"{p}\n" for p in paths))
    say(f"[gpu-check] installing {len(wheels)} files from {wheelhouse} into {venv} (--no-index)")
    # --no-deps: the wheelhouse is the resolved set minus what the node has (make wheelhouse); a resolver here
    # would refuse the node's own torch (bbuqc pins the PyPI pair) though ms-swift runs on it
    subprocess.run([*pip, "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", *map(str, wheels)],
                   check=True)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    if check.returncode:
        say("[gpu-check] pip check (the node's versions against the wheelhouse's requirements; informational):\n"
            + check.stdout.strip())
    return python


# ------------------------------------------------------------------------------------------------ main


def gpu_count() -> int:
    from bbuqc.runtime.devices import local_gpu_count

    return local_gpu_count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check", help="the checks' folders")
    parser.add_argument("--report", type=Path, default=REPO / "outputs" / "bench" / "gpu.json")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run the checks whose name matches (fnmatch; with the checks they need); repeatable")
    parser.add_argument("--jobs", type=int, default=6, help="checks at once (they share the one GPU)")
    parser.add_argument("--vllm-jobs", type=int, default=2, help="vLLM engines at once")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per check before it is killed")
    parser.add_argument("--budget", type=float, help="seconds after which no further check starts")
    parser.add_argument("--dry-run", action="store_true", help="list the plan (and what would be skipped)")
    parser.add_argument("--wheelhouse", type=Path, help="install from this folder into a fresh venv first")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv-gpu", help="the venv --wheelhouse makes")
    parser.add_argument("--cpu", action="store_true", help="rehearse on a CPU machine: compute=cpu, no vLLM/DeepSpeed")
    args = parser.parse_args(argv)

    checks = select(plan(args.out), args.only)
    if args.cpu:
        checks = on_cpu(checks)
    if args.dry_run:
        for c in checks:
            package = missing_package(c)
            note = f"  [skipped: {package} not installed]" if package else ""
            shown = [n for n in c.needs if n != WORLD]  # every check reads the world
            needs = f"  (needs {', '.join(shown)})" if shown else ""
            print(f"{c.name}{needs}{note}\n    {' '.join(c.argv[1:])}")
        print(f"{len(checks)} checks")
        return 0
    if gpu_count() == 0 and not args.cpu:
        print("no GPU: skipped")
        return 0
    if args.wheelhouse:
        python = make_venv(args.wheelhouse.resolve(), args.venv.resolve())
        rest, given = [], list(argv if argv is not None else sys.argv[1:])
        while given:  # the same arguments, less the wheelhouse (installed now)
            arg = given.pop(0)
            if arg == "--wheelhouse":
                given.pop(0)
            elif not arg.startswith("--wheelhouse="):
                rest.append(arg)
        return subprocess.run([str(python), str(Path(__file__).resolve()), *rest], cwd=REPO).returncode
    report = run_all(checks, report_path=args.report, jobs=args.jobs, vllm_jobs=args.vllm_jobs,
                     timeout_s=args.timeout, env_info=environment(), mode="cpu-rehearsal" if args.cpu else "gpu",
                     budget_s=args.budget)
    s = report["summary"]
    print(f"[gpu-check] {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped in {s['wall_s']} s; "
          f"{args.report}")
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
