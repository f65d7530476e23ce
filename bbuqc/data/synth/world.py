"""The synthetic world on disk: generate it (atomically), describe it (manifest), reuse it.

Layout and rules: docs/data.md. Everything is a function of the seed: one
``random.Random`` stream per mission for the plans, one per image for the drawing,
JPEGs at a fixed quality, no timestamps. A world is built in a temporary sibling
folder and renamed into place, so an interrupted ``generate`` never leaves a half
world behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bbuqc.missions import MISSIONS
from bbuqc.missions.rules import judge_group
from bbuqc.protocol import IRRELEVANT

from ..discovery import group_sort_key
from ..records import LABEL_DIRS, StageARecord, align_summaries, record_to_line
from .draw import IMAGE_SIZE, jpeg_bytes, render
from .plan import plan_group, summary_of
from .shift import canonical_shift, shift_tag

GENERATOR_VERSION = 3  # 2: group numbers offset by the seed; 3: a fibre's tube drawn purple, not cabinet grey
DATE = "20260101"
MANIFEST = "manifest.json"
DIR_OF_LABEL = {label: name for name, label in LABEL_DIRS.items()}
WORLD_ENTRIES = ("images", "stage_a", "summary_rows.jsonl", "verdict_rows.jsonl", MANIFEST)


@dataclass
class SynthManifest:
    root: Path
    seed: int
    groups_per_mission: int
    missions: dict[str, dict]  # id -> {name, groups, pass, fail, images, irrelevant_images}
    generator_version: int = GENERATOR_VERSION
    shift: tuple[str, ...] = ()  # shift.SHIFTS names, canonical order; () = the unshifted world

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def stage_a_files(self) -> dict[str, Path]:
        return {mid: self.root / "stage_a" / f"{mid}.jsonl" for mid in self.missions}

    @property
    def summary_rows(self) -> Path:
        return self.root / "summary_rows.jsonl"

    @property
    def verdict_rows(self) -> Path:
        return self.root / "verdict_rows.jsonl"

    @property
    def totals(self) -> dict[str, int]:
        keys = ("groups", "pass", "fail", "images", "irrelevant_images")
        return {k: sum(v[k] for v in self.missions.values()) for k in keys}

    def to_json(self) -> str:
        data = {
            "generator_version": self.generator_version,
            "seed": self.seed,
            "groups_per_mission": self.groups_per_mission,
            **({"shift": list(self.shift)} if self.shift else {}),  # absent: an unshifted world, as before
            "root": str(self.root),
            "image_size": list(IMAGE_SIZE),
            "missions": self.missions,
            "totals": self.totals,
        }
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, out_dir: str | Path) -> SynthManifest:
        data = json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))
        return cls(
            root=Path(data["root"]),
            seed=data["seed"],
            groups_per_mission=data["groups_per_mission"],
            missions=data["missions"],
            generator_version=data["generator_version"],
            shift=tuple(data.get("shift", ())),
        )


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _build(tmp: Path, final: Path, seed: int, groups_per_mission: int, shift: tuple[str, ...] = ()) -> SynthManifest:
    """Write a world into ``tmp`` whose rows point at ``final`` (where it will live)."""
    from ..rows import summary_row, verdict_row  # rows builds prompts; no cycle at import time

    # Group numbers start at seed x 10^6, so two worlds of different seeds never share a group id
    # (a held-out world can validate a model trained on another; seed 0 keeps 0001, 0002, ...).
    # A shifted world has its own random streams and id prefix (QC-SHIFT<codes>- instead of QC-SYN-),
    # so it shares no group id with an unshifted world of any seed.
    counter = seed * 1_000_000
    tag = shift_tag(shift)
    prefix = tag or "SYN"
    stream = f":shift={'+'.join(shift)}" if shift else ""
    summary_lines: list[str] = []
    verdict_lines: list[str] = []
    stats: dict[str, dict] = {}
    for m in MISSIONS.values():
        rng = random.Random(f"bbuqc-synth:{seed}:{m.id}{stream}")
        groups = []  # (record, reason)
        previous_id = None
        for slot in range(groups_per_mission):
            fail = slot % 2 == 1
            counter += 1
            scenes, _mode = plan_group(m, rng, fail, shift)
            if slot == 2 and previous_id:  # slot 1 (a fail) resubmitted: same id, fixed
                group_id, folder = previous_id, previous_id
                names = [f"{group_id}_{k}.jpg" for k in range(1, len(scenes) + 1)]
            elif slot % 5 == 4:  # no QC prefix: the folder name is the group id
                group_id = folder = f"{prefix}-{m.id}-{counter:04d}"
                names = [f"img{4 * k - 2}.jpg" for k in range(1, len(scenes) + 1)]  # img2 ... img14
            else:
                group_id = folder = f"QC-{prefix}-{DATE}-{counter:04d}"
                names = [f"{group_id}_{k}.jpg" for k in range(1, len(scenes) + 1)]
            if slot == 1:
                previous_id = group_id
            summaries = [summary_of(s) for s in scenes]
            per_image = align_summaries(names, summaries)
            label, reason = judge_group(m, per_image)
            if label != ("fail" if fail else "pass"):  # a plan that misses its target is a bug
                raise AssertionError(f"synthetic plan for {m.id} slot {slot} judged {label}: {reason}")
            group_dir = Path("images") / m.name / DIR_OF_LABEL[label] / folder
            for name, scene in zip(names, scenes):
                image_rng = random.Random(f"{seed}:{m.id}:{slot}:{name}{stream}")
                _write(tmp / group_dir / name, jpeg_bytes(render(scene, image_rng)))
            rec = StageARecord(group_id, m.name, label, names, per_image)
            groups.append((rec, reason))
            for name, summary in zip(names, summaries):
                row = summary_row(m, final / group_dir / name, summary)
                summary_lines.append(json.dumps(row, ensure_ascii=False))
        groups.sort(key=lambda g: group_sort_key(g[0].group_id, g[0].label))
        _write(tmp / "stage_a" / f"{m.id}.jsonl", "".join(record_to_line(rec) + "\n" for rec, _ in groups))
        verdict_lines += [json.dumps(verdict_row(rec, reason=reason), ensure_ascii=False) for rec, reason in groups]
        records = [rec for rec, _ in groups]
        stats[m.id] = {
            "name": m.name,
            "groups": len(records),
            "pass": sum(r.label == "pass" for r in records),
            "fail": sum(r.label == "fail" for r in records),
            "images": sum(len(r.images) for r in records),
            "irrelevant_images": sum(s == IRRELEVANT for r in records for s in r.per_image.values()),
        }
    _write(tmp / "summary_rows.jsonl", "".join(line + "\n" for line in summary_lines))
    _write(tmp / "verdict_rows.jsonl", "".join(line + "\n" for line in verdict_lines))
    manifest = SynthManifest(final, seed, groups_per_mission, stats, shift=shift)
    _write(tmp / MANIFEST, manifest.to_json())  # last: its presence means "complete"
    return manifest


def _matches(out: Path, seed: int, groups_per_mission: int, shift: tuple[str, ...] = ()) -> bool:
    try:
        manifest = SynthManifest.load(out)
    except (OSError, ValueError, KeyError):
        return False
    return (
        manifest.generator_version == GENERATOR_VERSION
        and manifest.seed == seed
        and manifest.groups_per_mission == groups_per_mission
        and manifest.shift == shift
        and manifest.root == out
    )


def generate(
    out_dir: str | Path, seed: int = 0, groups_per_mission: int = 6, shift: Iterable[str] = ()
) -> SynthManifest:
    """(Re)build the synthetic world at ``out_dir``, atomically.

    ``shift``: names from ``shift.SHIFTS`` (docs/data.md, "Shifted worlds"); an unknown one raises
    ValueError before anything is written. An existing ``out_dir`` is replaced only when it holds
    nothing but a world's entries (possibly none); anything else raises FileExistsError.
    """
    shift = canonical_shift(shift)
    if groups_per_mission < 1:
        raise ValueError(f"groups_per_mission must be >= 1, got {groups_per_mission}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (out.is_dir() and {p.name for p in out.iterdir()} <= set(WORLD_ENTRIES)):
        raise FileExistsError(f"{out} exists and is not a synthetic world; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        manifest = _build(tmp, out, seed, groups_per_mission, shift)
        _replace_dir(tmp, out, seed, groups_per_mission, shift)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(tmp: Path, out: Path, seed: int, groups_per_mission: int, shift: tuple[str, ...] = ()) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "world")
    try:
        os.rename(tmp, out)
    except OSError:
        # Another process put a world there first: keep it if it is the same one.
        if not _matches(out, seed, groups_per_mission, shift):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_synthetic(
    out_dir: str | Path, seed: int = 0, groups_per_mission: int = 6, shift: Iterable[str] = ()
) -> Path:
    """``out_dir`` holding the world for (seed, groups_per_mission, shift); generated only when its
    manifest is missing or differs (another seed, size or shift, an older generator, a moved folder)."""
    shift = canonical_shift(shift)
    out = Path(out_dir).expanduser().resolve()
    if not _matches(out, seed, groups_per_mission, shift):
        generate(out, seed, groups_per_mission, shift)
    return out
