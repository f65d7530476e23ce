"""The fault battery (issue 16): kills, concurrent writers and every bad input of docs/errors.md.

    .venv/bin/python -m benchmarks.fault_battery [--kills N,M] [--quick] [--cases SUBSTR] [--jobs 2]

Everything goes through the real commands (`python -m bbuqc.<command>`), offline, on CPU, with the
tiny models and a small synthetic world built for the run (in ``outputs/bench/faults-work/``):

(a) **kills**: N SIGKILLs of Stage-A (`bbuqc.infer`) and M of evaluation (`bbuqc.evaluate`), each
    at a random moment (uniform over the reference run's time from opening its output to its exit:
    model loading and generation), then the same command again to resume; the final files are
    compared byte for byte with an uninterrupted run's;
(b) **two evaluations on one folder at once**: the second must be refused, and predictions.jsonl
    must hold no repeated group;
(c) **bad inputs**: every row of docs/errors.md (the ids in its first column are ``CASES``; a test
    keeps the two in step), each run in a folder of its own: exit code, whether stderr is the
    documented line(s) naming the culprit (no traceback), whether anything was written besides
    Hydra's own run-folder files, whether anything that was there before changed or went missing.

Writes ``outputs/bench/faults.json`` (atomically) and prints a summary. About 10 minutes on a
loaded 2-core machine with the defaults (N=8, M=4); ``--quick`` is N=2, M=1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench"
WORK = OUT / "faults-work"
PY = sys.executable
COMMANDS = ("train", "infer", "evaluate", "export", "report")
# what a refused command may leave in its run folder: Hydra's own files and the job's record (never outputs)
HYDRA_OWN = (".hydra/", "cli.log", "infer.log", "evaluate.log", "train.log", "export.log", "job_status.json",
             "error.txt")


def env() -> dict:
    e = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
         "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
         "TOKENIZERS_PARALLELISM": "false"}
    e.pop("WANDB_SERVICE", None)
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def cmd(command: str, *args: str) -> list[str]:
    return [PY, "-m", f"bbuqc.{command}", *args]


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------- fixtures


@dataclass
class World:
    """What the cases and the kill trials share; built once per battery run."""

    small: Path  # synthetic world, 2 groups per mission: bad inputs
    big: Path  # synthetic world, 6 groups per mission: kills
    stage_a_ref: Path  # an uninterrupted Stage-A output (+ .meta.json) of the big world's bbu_cable
    eval_ref: Path  # an uninterrupted evaluation folder (bbu_cable + bbu_wind of the big world)
    stage_a_window: float  # seconds from the output's creation to the exit, uninterrupted
    eval_window: float
    adapter: Path | None = None  # a real LoRA checkpoint of the tiny text model (1 SFT step)
    train_run: Path | None = None  # the run folder that made it
    vl_model: Path | None = None  # the tiny VL model's folder (another base for that adapter)


def infer_args(root: Path, out: Path, run_dir: Path, mission: str = "bbu_cable", *extra: str) -> list[str]:
    return [f"mission={mission}", "data.source=files", f"data.root={root}", f"infer.output={out}", "logger=none",
            "infer.max_new_tokens=48", "infer.batch_size=2", "infer.progress=false", f"hydra.run.dir={run_dir}",
            "infer.resample=0",  # the random model never writes JSON; seeded resampling's resume: test_resample.py
            *extra]


def eval_args(files: list[Path], out_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["data.source=files", f"data.stage_a_jsonl=[{','.join(map(str, files))}]", f"evaluate.output_dir={out_dir}",
            "logger=none", "evaluate.max_new_tokens=32", "evaluate.batch_size=2", "evaluate.progress=false",
            f"hydra.run.dir={run_dir}", *extra]


STAGE_A_FILES = ("out.jsonl", "out.jsonl.meta.json")
EVAL_FILES = ("predictions.jsonl", "predictions.settings.json", "metrics.json", "report.md")


def timed_run(command: list[str], watch: Path, log: Path) -> tuple[int, float]:
    """Run to the end; returns (exit code, seconds from ``watch`` appearing to the exit)."""
    with log.open("w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=err)
        opened = None
        while proc.poll() is None:
            if opened is None and watch.exists():
                opened = time.perf_counter()
            time.sleep(0.02)
    return proc.returncode, time.perf_counter() - (opened or time.perf_counter())


def build_world(need_adapter: bool) -> World:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    small, big = WORK / "world-small", WORK / "world-big"
    for out, n in ((small, 2), (big, 6)):
        proc = run([PY, "-m", "bbuqc.synth", "--out", str(out), "--seed", "7", "--groups-per-mission", str(n)])
        assert proc.returncode == 0, proc.stderr[-2000:]
    trainer = None
    train_run = WORK / "train-run"
    if need_adapter:  # a real checkpoint, made while the references run (it only widens their timing)
        trainer = subprocess.Popen(
            cmd("train", "task=verdict", "algo=sft", "logger=none", "train.max_steps=1", "train.save_steps=1",
                "data.max_rows=4", f"hydra.run.dir={train_run}"),
            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=(WORK / "train-run.log").open("w"))
    ref_a = WORK / "ref-stage-a"
    ref_a.mkdir()
    rc, window_a = timed_run(cmd("infer", *infer_args(big / "images", ref_a / "out.jsonl", ref_a / "run")),
                             ref_a / "out.jsonl", ref_a / "stderr.log")
    assert rc == 0, (ref_a / "stderr.log").read_text()[-3000:]
    ref_e = WORK / "ref-evaluate"
    rc, window_e = timed_run(cmd("evaluate", *eval_args(eval_inputs(big), ref_e / "eval", ref_e / "run")),
                             ref_e / "eval" / "predictions.jsonl", WORK / "ref-evaluate.log")
    assert rc == 0, (WORK / "ref-evaluate.log").read_text()[-3000:]
    world = World(small, big, ref_a, ref_e / "eval", window_a, window_e)
    if trainer is not None:
        assert trainer.wait() == 0, (WORK / "train-run.log").read_text()[-3000:]
        world.adapter, world.train_run = train_run / "checkpoint-1", train_run
    cache = Path(os.environ.get("BBUQC_CACHE") or Path.home() / ".cache" / "bbuqc")
    vl = sorted((cache / "models").glob("tiny-qwen2-vl-*"))
    world.vl_model = vl[-1] if vl else None
    return world


def eval_inputs(world_dir: Path) -> list[Path]:
    return [world_dir / "stage_a" / "bbu_cable.jsonl", world_dir / "stage_a" / "bbu_wind.jsonl"]


# ------------------------------------------------------------------------------------------ (a) kills


def kill_trials(label: str, n: int, window: float, rng: random.Random, make: Callable[[Path], list[str]],
                watch: Callable[[Path], Path], files: tuple[str, ...], ref: Path) -> dict:
    """n SIGKILLs at random moments (each of a fresh run), then a resume; final files vs the reference.

    Every other kill waits for the first record to be written, so that kills land during generation too
    (uniform over the whole window, most would land while the model loads)."""
    trials, attempts = [], 0
    windows = {False: window, True: window / 2}  # from the output's creation / from its first record
    while len(trials) < n and attempts < 3 * n:
        attempts += 1
        d = WORK / "kills" / f"{label}-{attempts}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        command = make(d)
        with (d / "killed.log").open("w") as err:
            proc = subprocess.Popen(command, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            after_record = len(trials) % 2 == 1
            while proc.poll() is None and not watch(d).exists():
                time.sleep(0.01)
            while after_record and proc.poll() is None and b"\n" not in watch(d).read_bytes():
                time.sleep(0.01)
            opened = time.perf_counter()
            delay = rng.uniform(0, windows[after_record])
            deadline = opened + delay
            while proc.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.01)
            if proc.poll() is not None:  # finished before the kill: not a kill; the window was too wide
                windows[after_record] = 0.9 * (time.perf_counter() - opened)
                shutil.rmtree(d)
                continue
            data = watch(d).read_bytes() if watch(d).is_file() else b""
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        resumed = run(command)
        out = d if label == "stage_a" else d / "eval"
        same = {name: (out / name).is_file() and (out / name).read_bytes() == (ref / name).read_bytes()
                for name in files}
        trials.append({
            "kill_after": "first record" if after_record else "output opened",
            "kill_delay_s": round(delay, 2),
            "lines_at_kill": data.count(b"\n"),
            "torn_tail_at_kill": bool(data) and not data.endswith(b"\n"),
            "resume_exit": resumed.returncode,
            "identical": all(same.values()),
            "differing": [k for k, v in same.items() if not v],
        })
        if resumed.returncode == 0 and all(same.values()):
            shutil.rmtree(d)  # keep only what failed, for inspection
    return {
        "kills": len(trials),
        "survived": sum(t["resume_exit"] == 0 for t in trials),
        "identical": sum(t["identical"] for t in trials),
        "mid_file": sum(t["lines_at_kill"] > 0 for t in trials),
        "windows_s": {"from_open": round(windows[False], 2), "from_first_record": round(windows[True], 2)},
        "compared": list(files),
        "trials": trials,
    }


# ---------------------------------------------------------------------------------------- (c) cases


@dataclass
class Probe:
    """One bad input: the arguments and what the command must do with them."""

    args: list[str]  # after `python -m bbuqc.<command>`
    culprit: list[str]  # substrings the error line(s) (form "error") or the message (form "hydra") must hold
    exit: int = 2
    form: str = "error"  # error: `error: ...` line(s) | hydra: Hydra's own message | ok: handled, exit 0
    lines: int = 1  # `error:` lines expected (form "error")
    may_write: tuple[str, ...] = ()  # paths (relative to the case folder) the command may create or change
    check: Callable[[], str | None] | None = None  # an extra check: None when right, else what is wrong
    first: list[str] | None = None  # a run of the same command started before this one (concurrent writers)
    first_watch: str | None = None  # the file (relative to the case folder) that shows the first run holds its lock


@dataclass
class Case:
    id: str
    command: str
    what: str
    build: Callable[[Path, World], Probe]
    needs_adapter: bool = False


CASES: dict[str, Case] = {}


def case(id_: str, what: str, needs_adapter: bool = False):
    def register(fn):
        command = id_.split(".", 1)[0]
        assert command in COMMANDS and id_ not in CASES, id_
        CASES[id_] = Case(id_, command, what, fn, needs_adapter)
        return fn

    return register


def readonly_dir(d: Path) -> Path:
    """A folder nothing can be created in: mode 0555, or for root (whom modes do not stop) a sysfs path."""
    if os.geteuid() == 0:
        return Path("/sys/bbuqc-fault-battery")
    ro = d / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def blocker(d: Path) -> Path:
    """A file where a folder belongs."""
    f = d / "a-file"
    f.write_text("not a folder\n")
    return f


def stage_a_copy(d: Path, world: World, name: str = "in.jsonl", mission: str = "bbu_wind") -> tuple[Path, list[bytes]]:
    src = (world.small / "stage_a" / f"{mission}.jsonl").read_bytes()
    return d / name, src.splitlines(keepends=True)


def bad_stage_a(kind: str, d: Path, world: World) -> tuple[Path, list[str]]:
    """A Stage-A file with one kind of fault, and what the error line must name."""
    path, lines = stage_a_copy(d, world)
    if kind == "empty":
        path.write_bytes(b"")
        return path, [f"{path}: empty file"]
    if kind == "non-utf8":
        path.write_bytes(lines[0] + lines[1].replace(b'"mission"', b'"mission\xe9"', 1))
        return path, [f"{path}:2:", "UTF-8"]
    if kind == "torn":
        path.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])
        return path, [f"{path}:2:", "truncated"]
    if kind == "deep":
        path.write_bytes(lines[0] + b"[" * 100_000 + b"\n")
        return path, [f"{path}:2:", "nested too deeply"]
    if kind == "duplicate":
        path.write_bytes(lines[0] + lines[1] + lines[0])
        return path, [f"{path}:3:", "already at line 1"]
    if kind == "bad-record":
        rec = json.loads(lines[1])
        del rec["label"]
        path.write_bytes(lines[0] + json.dumps(rec, ensure_ascii=False).encode() + b"\n")
        return path, [f"{path}:2:", "label"]
    raise KeyError(kind)


STAGE_A_FAULTS = {
    "empty": "an empty Stage-A file",
    "non-utf8": "a Stage-A line that is not UTF-8",
    "torn": "a Stage-A file whose last line is cut (no newline)",
    "deep": "a Stage-A line nested 100,000 deep",
    "duplicate": "a group repeated in a Stage-A file",
    "bad-record": "a Stage-A record missing a field",
}


def remote_code_model(d: Path) -> Path:
    m = d / "shared-drive-ckpt"
    m.mkdir()
    (m / "config.json").write_text("{}")
    (m / "modeling_evil.py").write_text("raise SystemExit('this must never run')\n")
    return m


# --- every command: the command line itself --------------------------------------------------------

HYDRA_CASES = {
    # command: (unknown group option, unknown field, a field given the wrong type)
    "train": ("mission=foo", "lora.nope=1", "train.max_steps=abc"),
    "infer": ("model=foo", "infer.nope=1", "infer.batch_size=abc"),
    "evaluate": ("mission=foo", "evaluate.nope=1", "evaluate.temperature=hot"),
    "export": ("model=foo", "export.nope=1", "export.overwrite=maybe"),
}
HYDRA_CULPRITS = {"mission=foo": "mission/foo", "model=foo": "model/foo"}

def _valid_args(command: str, d: Path, w: World) -> list[str]:
    """Arguments that pass validation (so that only the run folder is wrong)."""
    return [f"model.adapter={w.adapter}", "model=tiny_text", f"export.output={d}/merged"] if command == "export" else []


def _run_dir_under_file(d: Path, w: World, command: str) -> Probe:
    run_dir = blocker(d) / "run"
    return Probe([*_valid_args(command, d, w), f"hydra.run.dir={run_dir}"], [f"hydra.run.dir={run_dir}", "Not a directory"])


def _run_dir_read_only(d: Path, w: World, command: str) -> Probe:
    run_dir = readonly_dir(d) / "run"
    return Probe([*_valid_args(command, d, w), f"hydra.run.dir={run_dir}"], [f"hydra.run.dir={run_dir}"])


for _command, (_option, _field, _typed) in HYDRA_CASES.items():
    case(f"{_command}.unknown-option", f"an unknown group option (`{_option}`)")(
        lambda d, w, o=_option: Probe([o], [HYDRA_CULPRITS[o]], form="hydra"))
    case(f"{_command}.unknown-field", f"an unknown field (`{_field}`)")(
        lambda d, w, f=_field: Probe([f], [f.split("=")[0]], form="hydra"))
    case(f"{_command}.wrong-type", f"a value of the wrong type (`{_typed}`)")(
        lambda d, w, t=_typed: Probe([t], [t.split("=")[0]]))
    case(f"{_command}.run-dir-under-file", "`hydra.run.dir` under a file", needs_adapter=_command == "export")(
        lambda d, w, c=_command: _run_dir_under_file(d, w, c))
    case(f"{_command}.run-dir-read-only", "`hydra.run.dir` in a folder that cannot be written",
         needs_adapter=_command == "export")(lambda d, w, c=_command: _run_dir_read_only(d, w, c))


@case("train.sweep-dir-under-file", "`hydra.sweep.dir` under a file (a `-m` sweep)")
def _(d, w):
    sweep_dir = blocker(d) / "sweep"
    return Probe(["-m", "lora.last_k=1,2", f"hydra.sweep.dir={sweep_dir}"], [f"hydra.sweep.dir={sweep_dir}", "Not a directory"])


@case("train.bad-value", "a value out of range (`lora.last_k=0`)")
def _(d, w):
    return Probe(["lora.last_k=0"], ["lora.last_k=0"])


@case("train.chinese-path", "an unquoted Chinese path (`data.root=/data/审核通过`)")
def _(d, w):
    return Probe([f"data.root={d}/审核通过"], [f"data.root='{d}/审核通过'"])


@case("infer.bad-value", "a value out of range (`infer.batch_size=0`)")
def _(d, w):
    return Probe(["infer.batch_size=0"], ["infer.batch_size=0"])


@case("infer.chinese-path", "an unquoted Chinese path (`data.root=/data/审核通过`)")
def _(d, w):
    return Probe([f"data.root={d}/审核通过"], [f"data.root='{d}/审核通过'"])


@case("evaluate.bad-value", "a value out of range (`evaluate.samples_per_group=0`)")
def _(d, w):
    return Probe(["evaluate.samples_per_group=0"], ["evaluate.samples_per_group=0"])


@case("evaluate.chinese-path", "an unquoted Chinese path in a list (`data.stage_a_jsonl=[/data/审核/a.jsonl]`)")
def _(d, w):
    return Probe([f"data.stage_a_jsonl=[{d}/审核/a.jsonl]"], [f"'{d}/审核/a.jsonl'"])


@case("evaluate.summary-task", "`task=summary`")
def _(d, w):
    return Probe(["task=summary"], ["task=summary"])


@case("infer.text-model", "a text-only model (`model=tiny_text`)")
def _(d, w):
    return Probe(["model=tiny_text"], ["model=tiny_text"])


# --- missions of your own (docs/data.md, "Your own missions") ------------------------------------


def own_mission(d: Path, stem: str = "bbu_label", **changes) -> Path:
    """``d/conf/mission/<stem>.yaml``: a mission of one's own (a field changed by ``changes``, None drops
    it); returns ``d/conf``, the folder to put on the search path."""
    import yaml

    fields = {"id": stem, "name": "BBU标签检查", "domain": "BBU", "categories": ["BBU设备", "标签"],
              "focus": ["必须检测到BBU设备", "BBU设备必须有可读的标签"], "decision": "标签缺失或不可读即不通过"}
    fields = {k: v for k, v in {**fields, **changes}.items() if v is not None}
    (d / "conf" / "mission").mkdir(parents=True, exist_ok=True)
    (d / "conf" / "mission" / f"{stem}.yaml").write_text(yaml.safe_dump(fields, allow_unicode=True), encoding="utf-8")
    return d / "conf"


@case("infer.mission-missing-field", "a mission file of your own without `decision`")
def _(d, w):
    conf = own_mission(d, decision=None)
    return Probe([f"hydra.searchpath=[file://{conf}]"], [f"{conf}/mission/bbu_label.yaml", "missing field 'decision'"])


@case("infer.mission-unknown-domain", "the chosen mission's file with an unknown domain")
def _(d, w):
    conf = own_mission(d, domain="ODF")
    return Probe([f"hydra.searchpath=[file://{conf}]", "mission=bbu_label"],
                 ["mission.domain='ODF': expected one of BBU, RRU", "mission/bbu_label.yaml"])


@case("infer.mission-duplicate-id", "a mission file of your own with a built-in one's id")
def _(d, w):
    conf = own_mission(d, stem="bbu_wind", name="我的挡风板检查")
    return Probe([f"hydra.searchpath=[file://{conf}]"], ["mission 'bbu_wind' is defined twice",
                                                          f"{conf}/mission/bbu_wind.yaml"])


@case("infer.mission-no-rules", "a mission of your own on the synthetic world")
def _(d, w):
    conf = own_mission(d)
    return Probe([f"hydra.searchpath=[file://{conf}]", "mission=bbu_label"],
                 ["mission=bbu_label", "no pass/fail rules for the synthetic world"])


# --- model folders -------------------------------------------------------------------------------


for _command in ("train", "infer", "evaluate"):
    case(f"{_command}.model-missing", "`model.path` that does not exist")(
        lambda d, w: Probe([f"model.path={d}/no-model"], [f"model.path={d}/no-model", "no such folder"]))
    case(f"{_command}.model-ships-python", "a model folder that ships `modeling_*.py`")(
        lambda d, w: Probe([f"model.path={remote_code_model(d)}"], ["modeling_evil.py", "model.trust_remote_code"]))


@case("train.adapter-other-base", "`model.adapter` trained on another base (a text LoRA for the VL model)",
      needs_adapter=True)
def _(d, w):
    return Probe([f"model.adapter={w.adapter}", "task=summary"], [f"model.adapter={w.adapter}"])


@case("infer.adapter-other-base", "`model.adapter` trained on another base (a text LoRA for the VL model)",
      needs_adapter=True)
def _(d, w):
    return Probe([f"model.adapter={w.adapter}"], [f"model.adapter={w.adapter}"])


@case("evaluate.adapter-other-base", "`model.adapter` trained on another base (a text LoRA, `model=tiny`)",
      needs_adapter=True)
def _(d, w):
    return Probe([f"model.adapter={w.adapter}", "model=tiny"], [f"model.adapter={w.adapter}"])


@case("evaluate.adapter-not-lora", "`model.adapter` that is not a LoRA checkpoint")
def _(d, w):
    (d / "ckpt").mkdir()
    return Probe([f"model.adapter={d}/ckpt"], [f"model.adapter={d}/ckpt", "adapter_config.json"])


@case("train.resume-incomplete", "`train.resume_from` a checkpoint without optimizer.pt", needs_adapter=True)
def _(d, w):
    ckpt = d / "checkpoint-1"
    shutil.copytree(w.adapter, ckpt)
    (ckpt / "optimizer.pt").unlink()
    return Probe(["task=verdict", "algo=sft", f"train.resume_from={ckpt}"],
                 [f"train.resume_from={ckpt}", "missing optimizer.pt"])


@case("train.resume-empty", "`train.resume_from` an empty folder")
def _(d, w):
    (d / "checkpoint-3").mkdir()
    return Probe(["task=verdict", f"train.resume_from={d}/checkpoint-3"],
                 [f"train.resume_from={d}/checkpoint-3", "missing adapter_config.json"])


@case("train.resume-other-settings", "`train.resume_from` with another `lora.rank` than the checkpoint's",
      needs_adapter=True)
def _(d, w):
    return Probe(["task=verdict", "algo=sft", f"train.resume_from={w.adapter}", "lora.rank=16"],
                 ["lora.rank=16", f"train.resume_from={w.adapter}", "lora.rank=8"])


@case("train.modules-to-save-tied", "`lora.modules_to_save` on a model whose output layer is its embeddings")
def _(d, w):
    return Probe(["task=verdict", "algo=sft", "model=tiny_text", "lora.modules_to_save=[embed_tokens]", "logger=none"],
                 ["lora.modules_to_save=['embed_tokens']", "ties lm_head to embed_tokens"])


@case("train.verdict-line-weight-summary", "`train.verdict_line_weight` on a run without a verdict line (task=summary)")
def _(d, w):
    return Probe(["task=summary", "algo=sft", "train.verdict_line_weight=10"],
                 ["train.verdict_line_weight=10.0", "task=verdict algo=sft", "leave it at 1"])


@case("train.vision-lora-text-model", "`lora.vision=true` on a text model")
def _(d, w):
    return Probe(["model=tiny_text", "task=verdict", "reward=verdict", "lora.vision=true"],
                 ["lora.vision=true", "model=tiny_text is a text-only model"])


@case("train.vllm-memory-fraction", "a vLLM memory fraction outside (0, 1]")
def _(d, w):
    return Probe(["compute=gpu_vllm", "compute.vllm_gpu_memory_utilization=1.5"],
                 ["compute.vllm_gpu_memory_utilization=1.5", "0 < x <= 1"])


@case("train.vllm-tensor-parallel", "a vLLM tensor parallel size that does not divide the GPUs")
def _(d, w):
    return Probe(["compute=gpu_zero2", "compute.vllm_tensor_parallel_size=3"],
                 ["compute.vllm_tensor_parallel_size=3", "must divide compute.nproc_per_node=8"])


@case("train.reward-param-negative", "a reward parameter out of its declared range")
def _(d, w):
    return Probe(["task=verdict", "reward=verdict_cost", "reward.params.verdict.cost.false_pass=-1"],
                 ["reward.params.verdict.cost.false_pass=-1", "expected a finite number >= 0"])


@case("train.reward-param-unknown-id", "reward parameters for a reward id that does not exist")
def _(d, w):
    return Probe(["task=verdict", "reward=verdict_cost", "+reward.params.verdict.nope.x=1"],
                 ["reward.params.verdict.nope", "unknown reward id 'verdict.nope'"])


@case("train.reward-plugin-missing", "a reward plug-in that does not exist")
def _(d, w):
    return Probe([f"reward.plugins=[{d / 'nope.py'}]"], ["reward.plugins", "nope.py: no such file"])


@case("train.reward-plugin-clash", "a reward plug-in that registers a built-in's id")
def _(d, w):
    plugin = d / "clash.py"
    plugin.write_text("from bbuqc.rewards import row_reward\n\n\n@row_reward('verdict.label', 0.0, 1.0)\n"
                      "def f(completion, **_):\n    return 1.0\n", encoding="utf-8")
    return Probe([f"reward.plugins=[{plugin}]"], ["reward.plugins", "'verdict.label' is already registered"],
                 may_write=("clash.py",))


@case("train.swift-row-missing-column", "an ms-swift row without a column a chosen reward reads")
def _(d, w):
    rows = d / "train.jsonl"
    row = {"messages": [{"role": "user", "content": "图片_1: 挡风板安装到位"}], "group_label": "通过",
           "summaries": '{"图片_1": "挡风板安装到位"}'}
    rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (row, {**row, "group_label": None})),
                    encoding="utf-8")
    return Probe(["task=verdict", "reward=verdict", "data.source=files", f"data.swift_jsonl=[{rows}]"],
                 [f"{rows}:2: group_label: missing column, which reward verdict.label reads"],
                 may_write=("train.jsonl",))


@case("evaluate.synthetic-shift-unknown", "a shifted world with an unknown shift name")
def _(d, w):
    return Probe(["data.synthetic_shift=[nope]"], ["data.synthetic_shift=[nope]", "unknown shift 'nope'"])


@case("infer.vllm-modules-to-save", "`infer.backend=vllm` with an adapter that trains whole modules")
def _(d, w):
    import torch
    from safetensors.torch import save_file

    ckpt = d / "checkpoint-1"  # only what the check reads: the adapter's config and a weights file
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                          "modules_to_save": ["embed_tokens", "lm_head"]}))
    save_file({"w": torch.zeros(2, 2)}, str(ckpt / "adapter_model.safetensors"))
    return Probe([f"model.adapter={ckpt}", "infer.backend=vllm"],
                 [f"model.adapter={ckpt}", "infer.backend=vllm cannot apply", "bbuqc-export"])


@case("evaluate.vllm-modules-to-save", "`evaluate.backend=vllm` with an adapter that trains whole modules")
def _(d, w):
    import numpy as np
    from safetensors.numpy import save_file

    ckpt = d / "checkpoint-1"  # only what the check reads: the adapter's config and a weights file
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                          "modules_to_save": ["embed_tokens", "lm_head"]}))
    save_file({"w": np.zeros((2, 2), np.float32)}, str(ckpt / "adapter_model.safetensors"))
    return Probe([f"model.adapter={ckpt}", "evaluate.backend=vllm"],
                 [f"model.adapter={ckpt}", "evaluate.backend=vllm cannot apply", "bbuqc-export"])


# --- several nodes (docs/gpu.md, "Several nodes") --------------------------------------------------
@case("train.nnodes-zero", "`compute.nnodes` below 1")
def _(d, w):
    return Probe(["compute.nnodes=0"], ["compute.nnodes=0", "expected an integer >= 1"])


@case("train.node-rank-out-of-range", "`compute.node_rank` not below `compute.nnodes`")
def _(d, w):
    return Probe(["compute.nnodes=2", "compute.node_rank=2", "compute.master_addr=127.0.0.1"],
                 ["compute.node_rank=2", "0 <= node_rank < compute.nnodes=2"])


@case("train.master-addr-unresolvable", "a master address that does not resolve (within 5 s)")
def _(d, w):
    return Probe(["compute.nnodes=2", "compute.master_addr=node0.bbuqc.invalid"],
                 ["compute.master_addr=node0.bbuqc.invalid", "does not resolve"])


# --- data files ----------------------------------------------------------------------------------

TRAIN_VERDICT = ["task=verdict", "algo=sft", "data.source=files", "logger=none", "train.max_steps=1"]

for _kind, _what in STAGE_A_FAULTS.items():
    def _train(d, w, kind=_kind):
        path, culprit = bad_stage_a(kind, d, w)
        return Probe([*TRAIN_VERDICT, f"data.stage_a_jsonl=[{path}]"], culprit)

    def _evaluate(d, w, kind=_kind):
        path, culprit = bad_stage_a(kind, d, w)
        return Probe(eval_args([path], d / "eval", d / "run"), culprit)

    case(f"train.stage-a-{_kind}", _what)(_train)
    case(f"evaluate.stage-a-{_kind}", _what)(_evaluate)


@case("train.stage-a-missing", "a Stage-A file that does not exist")
def _(d, w):
    return Probe([*TRAIN_VERDICT, f"data.stage_a_jsonl=[{d}/nope.jsonl]"], [f"data.stage_a_jsonl[0]={d}/nope.jsonl"])


@case("evaluate.stage-a-missing", "a Stage-A file that does not exist")
def _(d, w):
    return Probe(eval_args([d / "nope.jsonl"], d / "eval", d / "run"), [f"data.stage_a_jsonl[0]={d}/nope.jsonl"])


@case("train.stage-a-twice", "the same Stage-A file given twice")
def _(d, w):
    path, lines = stage_a_copy(d, w)
    path.write_bytes(b"".join(lines))
    return Probe([*TRAIN_VERDICT, f"data.stage_a_jsonl=[{path},{path}]"], [f"{path}: the same Stage-A file"])


@case("evaluate.stage-a-twice", "the same Stage-A file given twice")
def _(d, w):
    path, lines = stage_a_copy(d, w)
    path.write_bytes(b"".join(lines))
    return Probe(eval_args([path, path], d / "eval", d / "run"), [f"{path}: the same Stage-A file"])


@case("train.val-shares-groups", "`data.val_stage_a_jsonl` sharing groups with the training data")
def _(d, w):
    path, lines = stage_a_copy(d, w)
    path.write_bytes(b"".join(lines))
    val = d / "val.jsonl"
    val.write_bytes(lines[0])
    return Probe([*TRAIN_VERDICT, f"data.stage_a_jsonl=[{path}]", f"data.val_stage_a_jsonl=[{val}]"],
                 ["data.val_stage_a_jsonl", "also in the training data"])


def summary_rows_with(d: Path, w: World, image: Path) -> Path:
    rows = [json.loads(x) for x in (w.small / "summary_rows.jsonl").read_text().splitlines()[:3]]
    rows[1]["images"] = [str(image)]
    path = d / "summary_rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


TRAIN_SUMMARY = ["task=summary", "algo=sft", "data.source=files", "logger=none", "train.max_steps=1"]


@case("train.image-corrupt", "a training row whose image is corrupt")
def _(d, w):
    bad = d / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG" * 20)
    return Probe([*TRAIN_SUMMARY, f"data.summary_jsonl={summary_rows_with(d, w, bad)}"],
                 [f"{d}/summary_rows.jsonl:2:", str(bad)])


@case("train.image-missing", "a training row whose image does not exist")
def _(d, w):
    return Probe([*TRAIN_SUMMARY, f"data.summary_jsonl={summary_rows_with(d, w, d / 'gone.jpg')}"],
                 [f"{d}/summary_rows.jsonl:2:", str(d / "gone.jpg")])


# --- images in Stage-A -----------------------------------------------------------------------------


def image_tree(d: Path, w: World, mission: str = "bbu_wind") -> tuple[Path, Path]:
    """A copy of one mission's image tree; returns (root, the first image of its first group)."""
    from bbuqc.missions import MISSIONS

    name = MISSIONS[mission].name
    root = d / "images"
    shutil.copytree(w.small / "images" / name, root / name)
    first = sorted(sorted((root / name).glob("*/*"))[0].iterdir())[0]
    return root, first


def stage_a_check(out: Path, want: int, failed: int = 0) -> Callable[[], str | None]:
    def check():
        lines = out.read_text().splitlines() if out.is_file() else []
        summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
        if len(lines) != want or len(summary["failed"]) != failed:
            return f"{len(lines)} records, {len(summary['failed'])} failed groups (expected {want}, {failed})"
        return None

    return check


def groups_in(root: Path) -> int:
    return len([g for label in root.glob("*/*") for g in label.iterdir() if g.is_dir()])


def image_case(kind: str):
    def build(d, w):
        from PIL import Image

        root, first = image_tree(d, w)
        n = groups_in(root)
        if kind == "corrupt":
            first.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG" * 50)
        elif kind == "truncated":
            data = first.read_bytes()
            first.write_bytes(data[: len(data) // 2])
        elif kind == "16bit":
            img = Image.new("I;16", (128, 96))
            img.putdata([(i * 37) % 65536 for i in range(128 * 96)])
            first.unlink()
            first = first.with_suffix(".png")
            img.save(first)
        elif kind == "huge":
            Image.new("L", (12000, 12000), 128).save(first, quality=50)
        out = d / "out" / "s.jsonl"
        failed = 1 if kind in ("corrupt", "truncated") else 0
        return Probe(infer_args(root, out, d / "run", "bbu_wind"), [], exit=0, form="ok",
                     may_write=("out/",), check=stage_a_check(out, n - failed, failed))

    return build


case("infer.image-corrupt", "a corrupt image in one group")(image_case("corrupt"))
case("infer.image-truncated", "a truncated JPEG in one group")(image_case("truncated"))
case("infer.image-16bit", "a 16-bit PNG")(image_case("16bit"))
case("infer.image-huge", "a 12000×12000 photo")(image_case("huge"))


@case("infer.root-missing", "`data.root` that does not exist")
def _(d, w):
    return Probe(infer_args(d / "nope", d / "out" / "s.jsonl", d / "run"), [f"data.root={d}/nope"])


@case("infer.mission-folder-missing", "`data.root` without the mission's folder")
def _(d, w):
    (d / "root").mkdir()
    return Probe(infer_args(d / "root", d / "out" / "s.jsonl", d / "run"), [f"{d}/root", "mission folder not found"])


# --- outputs -------------------------------------------------------------------------------------


@case("infer.output-under-file", "`infer.output` under a file")
def _(d, w):
    out = blocker(d) / "s.jsonl"
    return Probe(infer_args(w.small / "images", out, d / "run", "bbu_wind"), [str(out), "Not a directory"])


@case("infer.output-read-only", "`infer.output` in a folder that cannot be written")
def _(d, w):
    out = readonly_dir(d) / "s.jsonl"
    return Probe(infer_args(w.small / "images", out, d / "run", "bbu_wind"), [str(out)])


def stage_a_output(d: Path, w: World, meta: bool = True) -> Path:
    out = d / "out.jsonl"
    shutil.copy(w.stage_a_ref / "out.jsonl", out)
    if meta:
        shutil.copy(w.stage_a_ref / "out.jsonl.meta.json", d / "out.jsonl.meta.json")
    return out


@case("infer.resume-other-settings", "resuming an output made with other settings (`infer.max_new_tokens`)")
def _(d, w):
    out = stage_a_output(d, w)
    return Probe(infer_args(w.big / "images", out, d / "run", "bbu_cable", "infer.max_new_tokens=40"),
                 [str(out), "max_new_tokens=48 (now 40)"])


@case("infer.resume-unknown-settings", "resuming an output whose `.meta.json` is gone")
def _(d, w):
    out = stage_a_output(d, w, meta=False)
    return Probe(infer_args(w.big / "images", out, d / "run"), [str(out), "infer.force_resume=true"])


@case("infer.output-bad-line", "an output whose middle line is not a record")
def _(d, w):
    out = stage_a_output(d, w)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0] + b'{"group_id": 1}\n' + b"".join(lines[2:]))
    return Probe(infer_args(w.big / "images", out, d / "run"), [f"{out}:2:"])


@case("infer.output-torn-tail", "an output whose last line was cut by a kill")
def _(d, w):
    out = stage_a_output(d, w)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])

    def check():
        return None if out.read_bytes() == data else "the repaired file differs from the uninterrupted run's"

    return Probe(infer_args(w.big / "images", out, d / "run"), [], exit=0, form="ok",
                 may_write=("out.jsonl", "out.jsonl.meta.json", "out.jsonl.summary.json"), check=check)


@case("infer.concurrent-writer", "a second Stage-A run on an output another run is writing")
def _(d, w):
    out = d / "out.jsonl"
    args = infer_args(w.big / "images", out, d / "run")
    return Probe(args, [str(out), "another run is writing"], first=cmd("infer", *args[:-1], f"hydra.run.dir={d}/run0"),
                 first_watch="out.jsonl", may_write=("out.jsonl", "out.jsonl.meta.json", "out.jsonl.summary.json"),
                 check=lambda: _same(out, w.stage_a_ref / "out.jsonl"))


def _same(a: Path, b: Path) -> str | None:
    return None if a.read_bytes() == b.read_bytes() else f"{a} differs from the uninterrupted run's {b}"


def eval_folder(d: Path, w: World, settings: bool = True) -> Path:
    out = d / "eval"
    shutil.copytree(w.eval_ref, out)
    if not settings:
        (out / "predictions.settings.json").unlink()
    return out


@case("evaluate.output-is-file", "`evaluate.output_dir` that is a file")
def _(d, w):
    f = blocker(d)
    return Probe(eval_args(eval_inputs(w.small), f, d / "run"), [f"evaluate.output_dir={f}"])


@case("evaluate.output-under-file", "`evaluate.output_dir` under a file")
def _(d, w):
    out = blocker(d) / "eval"
    return Probe(eval_args(eval_inputs(w.small), out, d / "run"), [str(out), "Not a directory"])


@case("evaluate.output-read-only", "`evaluate.output_dir` in a folder that cannot be written")
def _(d, w):
    out = readonly_dir(d) / "eval"
    return Probe(eval_args(eval_inputs(w.small), out, d / "run"), [str(out)])


@case("evaluate.resume-other-settings", "resuming predictions made with other settings (`evaluate.max_new_tokens`)")
def _(d, w):
    out = eval_folder(d, w)
    return Probe(eval_args(eval_inputs(w.big), out, d / "run", "evaluate.max_new_tokens=40"),
                 [str(out / "predictions.jsonl"), "max_new_tokens=32 (now 40)"])


@case("evaluate.resume-unknown-settings", "resuming predictions whose `predictions.settings.json` is gone")
def _(d, w):
    out = eval_folder(d, w, settings=False)
    return Probe(eval_args(eval_inputs(w.big), out, d / "run"),
                 [str(out / "predictions.jsonl"), "evaluate.force_resume=true"])


@case("evaluate.duplicate-predictions", "predictions.jsonl holding a group twice (two runs wrote into it)")
def _(d, w):
    out = eval_folder(d, w)
    p = out / "predictions.jsonl"
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines) + lines[0])
    return Probe(eval_args(eval_inputs(w.big), out, d / "run"), [f"{p}:{len(lines) + 1}:", "already on line 1"])


@case("evaluate.concurrent-writer", "a second evaluation of a folder another evaluation is writing")
def _(d, w):
    out = d / "eval"
    args = eval_args(eval_inputs(w.big), out, d / "run")
    return Probe(args, [str(out / "predictions.jsonl"), "another run is writing"],
                 first=cmd("evaluate", *args[:-1], f"hydra.run.dir={d}/run0"), first_watch="eval/predictions.jsonl",
                 may_write=("eval/",), check=lambda: _same(out / "predictions.jsonl", w.eval_ref / "predictions.jsonl"))


# --- export --------------------------------------------------------------------------------------


@case("export.nothing-given", "neither `model.adapter` nor `export.output`")
def _(d, w):
    return Probe([], ["model.adapter: required", "export.output: required"], lines=2)


@case("export.adapter-missing", "`model.adapter` that does not exist")
def _(d, w):
    return Probe([f"model.adapter={d}/nope", f"export.output={d}/merged"], [f"model.adapter={d}/nope"])


@case("export.adapter-not-lora", "`model.adapter` that is not a LoRA checkpoint")
def _(d, w):
    (d / "ckpt").mkdir()
    (d / "ckpt" / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    return Probe([f"model.adapter={d}/ckpt", f"export.output={d}/merged"], [f"model.adapter={d}/ckpt", "LORA"])


@case("export.adapter-other-base", "`model.adapter` trained on another base than `model.path`", needs_adapter=True)
def _(d, w):
    return Probe([f"model.adapter={w.adapter}", f"model.path={w.vl_model}", f"export.output={d}/merged"],
                 [f"model.adapter={w.adapter}"])


@case("export.adapter-ships-python", "a `model.adapter` folder that ships `modeling_*.py`", needs_adapter=True)
def _(d, w):
    ckpt = d / "ckpt"
    shutil.copytree(w.adapter, ckpt)
    (ckpt / "modeling_evil.py").write_text("raise SystemExit('this must never run')\n")
    return Probe([f"model.adapter={ckpt}", "model=tiny_text", f"export.output={d}/merged"], ["modeling_evil.py"])


@case("export.output-is-file", "`export.output` that is a file", needs_adapter=True)
def _(d, w):
    f = blocker(d)
    return Probe([f"model.adapter={w.adapter}", "model=tiny_text", f"export.output={f}"], [f"export.output={f}"])


@case("export.output-not-empty", "`export.output` that exists and is not empty", needs_adapter=True)
def _(d, w):
    (d / "merged").mkdir()
    (d / "merged" / "keep.txt").write_text("mine\n")
    return Probe([f"model.adapter={w.adapter}", "model=tiny_text", f"export.output={d}/merged"],
                 [f"export.output={d}/merged", "export.overwrite=true"])


@case("export.output-read-only", "`export.output` in a folder that cannot be written", needs_adapter=True)
def _(d, w):
    out = readonly_dir(d) / "merged"
    return Probe([f"model.adapter={w.adapter}", "model=tiny_text", f"export.output={out}"], [str(readonly_dir(d))])


# --- report --------------------------------------------------------------------------------------


@case("report.folder-missing", "a folder that does not exist")
def _(d, w):
    return Probe([str(d / "nope")], [f"{d}/nope: no such folder"])


@case("report.not-a-folder", "a file instead of a folder")
def _(d, w):
    return Probe([str(blocker(d))], [f"{d}/a-file: not a folder"])


@case("report.no-jobs", "a folder without Hydra job folders")
def _(d, w):
    (d / "sweep").mkdir()
    return Probe([str(d / "sweep")], [f"{d}/sweep: no Hydra job folders"])


@case("report.no-finished-job", "a sweep whose jobs never logged a step")
def _(d, w):
    job = d / "sweep" / "0_lora.last_k=2"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- lora.last_k=2\n")
    return Probe([str(d / "sweep")], [f"{d}/sweep: no finished job"])


@case("report.unknown-metric", "`--metric` no job logged", needs_adapter=True)
def _(d, w):
    shutil.copytree(w.train_run, d / "run-folder", ignore=shutil.ignore_patterns("checkpoint-*", "last-checkpoint"))
    return Probe([str(d / "run-folder"), "--metric", "val/nope"], ["--metric val/nope"])


@case("report.output-unwritable", "report.md cannot be written (a folder in its place)", needs_adapter=True)
def _(d, w):
    shutil.copytree(w.train_run, d / "run-folder", ignore=shutil.ignore_patterns("checkpoint-*", "last-checkpoint"))
    (d / "run-folder" / "report.md").mkdir()
    return Probe([str(d / "run-folder")], [f"{d}/run-folder/report.md"])


# ------------------------------------------------------------------------------------------ running


def snapshot(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(d))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _allowed(rel: str, probe: Probe) -> bool:
    if rel.startswith("run/") or rel.startswith("run0/"):
        inner = rel.split("/", 1)[1]
        if any(inner.startswith(h) for h in HYDRA_OWN):
            return True
    return any(rel == m or (m.endswith("/") and rel.startswith(m)) for m in probe.may_write) or rel.startswith("run0/")


def run_case(c: Case, world: World) -> dict:
    d = WORK / "cases" / c.id
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    probe = c.build(d, world)
    args = list(probe.args)
    if c.command != "report" and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={d}/run")
    before = snapshot(d)
    first = None
    start = time.perf_counter()
    if probe.first:
        first = subprocess.Popen(probe.first, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                                 stderr=(WORK / f"{c.id}.first.log").open("w"))
        while first.poll() is None and not (d / probe.first_watch).exists():
            time.sleep(0.01)
    proc = run(cmd(c.command, *args))
    first_exit = first.wait() if first else None
    seconds = time.perf_counter() - start
    after = snapshot(d)
    stderr = proc.stderr
    error_lines = [x for x in stderr.splitlines() if x.startswith("error: ")]
    written = sorted(k for k in after if before.get(k) != after[k] and k not in before and not _allowed(k, probe))
    lost = sorted(k for k in before if after.get(k) != before[k] and not _allowed(k, probe))
    problems = []
    if proc.returncode != probe.exit:
        problems.append(f"exit {proc.returncode}, expected {probe.exit}")
    if "Traceback" in stderr:
        problems.append("a traceback on stderr")
    if probe.form == "error":
        shown = "\n".join(error_lines)
        if len(error_lines) != probe.lines:
            problems.append(f"{len(error_lines)} error: lines, expected {probe.lines}")
        missing = [s for s in probe.culprit if s not in shown]
        if missing:
            problems.append(f"the error line does not name {missing}")
    elif probe.form == "hydra":
        missing = [s for s in probe.culprit if s not in stderr]
        if missing:
            problems.append(f"Hydra's message does not name {missing}")
    if first is not None and first_exit != 0:
        problems.append(f"the first run exited {first_exit}")
    if written:
        problems.append(f"wrote {written}")
    if lost:
        problems.append(f"changed or removed {lost}")
    if probe.check is not None and not problems:
        why = probe.check()
        if why:
            problems.append(why)
    result = {
        "id": c.id,
        "command": c.command,
        "what": c.what,
        "exit": proc.returncode,
        "form": probe.form,
        "error_lines": error_lines,
        "stderr_tail": "" if error_lines and not problems else stderr[-1500:],
        "traceback": "Traceback" in stderr,
        "written": written,
        "lost": lost,
        "seconds": round(seconds, 1),
        "ok": not problems,
        "problems": problems,
    }
    if not problems:
        shutil.rmtree(d, ignore_errors=True)
    return result


def summarize(result: dict) -> str:
    lines = []
    for label, k in result.get("kills", {}).items():
        lines.append(f"{label}: {k['kills']} SIGKILLs ({k['mid_file']} with records already written), "
                     f"{k['survived']} resumed, {k['identical']} final files byte-identical to an uninterrupted run")
    if "concurrent" in result:
        c = result["concurrent"]
        lines.append(f"two evaluations on one folder: second refused={c['second_refused']}, "
                     f"duplicate group ids in predictions={c['duplicate_group_ids']}")
    b = result.get("bad_inputs")
    if b:
        lines.append(f"bad inputs: {b['tried']} tried, {b['handled']} handled as documented "
                     f"({b['error_line']} as error: lines, {b['hydra_message']} as Hydra's message, "
                     f"{b['handled_ok']} handled and run), {b['tracebacks']} tracebacks, {b['wrote']} wrote "
                     f"something, {b['lost']} changed what was there")
        for r in b["cases"]:
            if not r["ok"]:
                lines.append(f"  FAIL {r['id']}: {'; '.join(r['problems'])}")
    return "\n".join(lines)


def duplicate_ids(path: Path) -> int:
    keys = [(r["source"], r["group_id"], r["label"]) for r in map(json.loads, path.read_text().splitlines())]
    return len(keys) - len(set(keys))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fault_battery", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", default="8,4", help="N,M: SIGKILLs of Stage-A and of evaluation (default 8,4)")
    parser.add_argument("--quick", action="store_true", help="--kills 2,1")
    parser.add_argument("--cases", default="", help="only the bad inputs whose id contains this (with --kills 0,0)")
    parser.add_argument("--jobs", type=int, default=2, help="bad inputs run this many at a time (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args(argv)
    n, m = (2, 1) if args.quick else map(int, args.kills.split(","))
    cases = [c for c in CASES.values() if args.cases in c.id]
    started = time.perf_counter()
    world = build_world(need_adapter=any(c.needs_adapter for c in cases))
    result: dict = {"settings": {"kills_stage_a": n, "kills_evaluate": m, "seed": args.seed, "jobs": args.jobs,
                                 "cases": args.cases or "all", "cpu_count": os.cpu_count(),
                                 "load_average": os.getloadavg()}}
    rng = random.Random(args.seed)
    result["kills"] = {}
    if n:
        result["kills"]["stage_a"] = kill_trials(
            "stage_a", n, world.stage_a_window, rng,
            lambda d: cmd("infer", *infer_args(world.big / "images", d / "out.jsonl", d / "run")),
            lambda d: d / "out.jsonl", STAGE_A_FILES, world.stage_a_ref)
    if m:
        result["kills"]["evaluate"] = kill_trials(
            "evaluate", m, world.eval_window, rng,
            lambda d: cmd("evaluate", *eval_args(eval_inputs(world.big), d / "eval", d / "run")),
            lambda d: d / "eval" / "predictions.jsonl", EVAL_FILES, world.eval_ref)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda c: run_case(c, world), cases))
    conc = next((r for r in rows if r["id"] == "evaluate.concurrent-writer"), None)
    if conc is not None:
        p = WORK / "cases" / conc["id"] / "eval" / "predictions.jsonl"
        result["concurrent"] = {
            "second_refused": conc["exit"] == 2 and any("another run is writing" in x for x in conc["error_lines"]),
            "duplicate_group_ids": duplicate_ids(p) if p.is_file() else 0,
            "identical_to_uninterrupted": conc["ok"],
        }
    result["bad_inputs"] = {
        "tried": len(rows),
        "handled": sum(r["ok"] for r in rows),
        "error_line": sum(r["ok"] and r["form"] == "error" for r in rows),
        "hydra_message": sum(r["ok"] and r["form"] == "hydra" for r in rows),
        "handled_ok": sum(r["ok"] and r["form"] == "ok" for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "wrote": sum(bool(r["written"]) for r in rows),
        "lost": sum(bool(r["lost"]) for r in rows),
        "failed": [r["id"] for r in rows if not r["ok"]],
        "cases": rows,
    }
    result["wall_s"] = round(time.perf_counter() - started, 1)
    write_json_atomic(OUT / "faults.json", result)
    print(summarize(result))
    print(f"wall time {result['wall_s']} s; figures in {OUT / 'faults.json'}")
    k = result["kills"]
    clean = all(x["identical"] == x["kills"] for x in k.values()) and not result["bad_inputs"]["failed"]
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
