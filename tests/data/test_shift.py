"""Shifted synthetic worlds (data.synthetic_shift): each shift changes what docs/data.md says it changes,
keeps the rules, the summaries' format and the layout on disk, and shares no group id with an
unshifted world."""

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageStat
from synth_support import world_hash

from bbuqc.config.schema import DataConfig, check_data
from bbuqc.data.discovery import discover_groups
from bbuqc.data.records import read_stage_a_jsonl
from bbuqc.data.synth import SHIFTS, SynthManifest, ensure_synthetic, generate, plan_group, summary_of
from bbuqc.data.synth.draw import IMAGE_SIZE, render
from bbuqc.data.synth.plan import BBU_TEXTS, MAX_IMAGES, RRU_TEXTS, UNSEEN_TEXTS
from bbuqc.missions import MISSIONS, get_mission
from bbuqc.missions.rules import judge_group
from bbuqc.protocol import IRRELEVANT

REPO = Path(__file__).resolve().parents[2]
SEED = 1  # a test world's seed (the demo's), against the training world of seed 0
ALL = tuple(SHIFTS)
# A fresh build of the all-shifts world (seed 1, 2 groups per mission), pinned like the default world's.
WORLD_ALL_SHIFTS_SEED1_G2 = "db711275989df7e580dd438fdaee36d5623dd0e79a20743f24c1f6c7af1fbd8c"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """{shift tuple: (records by mission id, manifest)} for the unshifted world, each shift alone and all."""
    base = tmp_path_factory.mktemp("shift")
    out = {}
    for shift in [(), *((name,) for name in SHIFTS), ALL]:
        manifest = generate(base / ("+".join(shift) or "none"), seed=SEED, groups_per_mission=6, shift=shift)
        out[shift] = ({mid: read_stage_a_jsonl(f) for mid, f in manifest.stage_a_files.items()}, manifest)
    return out


def _records(world):
    return [r for recs in world[0].values() for r in recs]


def _planned(shift, n=120):
    """Scenes of n planned groups per mission (no drawing): the generator's range, not one world's."""
    for m in MISSIONS.values():
        rng = random.Random(f"test-shift:{m.id}:{'+'.join(shift)}")
        for k in range(n):
            scenes, _ = plan_group(m, rng, fail=k % 2 == 1, shift=shift)
            yield m, scenes


# ---- what every shifted world keeps --------------------------------------------------------------


@pytest.mark.parametrize("shift", [(name,) for name in SHIFTS] + [ALL], ids=lambda s: "+".join(s))
def test_a_shifted_world_keeps_rules_format_and_layout(worlds, shift):
    records, manifest = worlds[shift]
    assert manifest.shift == shift and SynthManifest.load(manifest.root) == manifest
    assert json.loads((manifest.root / "manifest.json").read_text(encoding="utf-8"))["shift"] == list(shift)
    for mid, recs in records.items():
        m = get_mission(mid)
        assert len(recs) == 6 and sum(r.label == "pass" for r in recs) == 3  # the same half-and-half split
        groups, warnings = discover_groups(manifest.images_dir, mid)
        assert warnings == [] and [(g.group_id, g.label, g.image_names) for g in groups] == [
            (r.group_id, r.label, r.images) for r in recs
        ]
        for rec in recs:
            assert judge_group(mid, rec.per_image)[0] == rec.label  # the labels follow the same rules
            for summary in rec.per_image.values():  # the reference summaries' format
                if summary != IRRELEVANT:
                    obj = json.loads(summary)
                    assert obj["dataset"] == m.domain and isinstance(obj["统计"], list)
                    assert set(obj) <= {"dataset", "objects_total", "统计", "备注" if m.domain == "BBU" else "分组统计"}
            for name in rec.images:
                folder = "审核通过" if rec.label == "pass" else "审核不通过"
                with Image.open(manifest.images_dir / m.name / folder / rec.group_id / name) as img:
                    assert img.size == IMAGE_SIZE
    rows = manifest.verdict_rows.read_text(encoding="utf-8").splitlines()
    assert len(rows) == manifest.totals["groups"]


@pytest.mark.parametrize("shift", [(name,) for name in SHIFTS] + [ALL], ids=lambda s: "+".join(s))
def test_a_shifted_world_shares_no_group_id(worlds, shift, tmp_path):
    shifted = {r.group_id for r in _records(worlds[shift])}
    code = "".join(SHIFTS[n] for n in shift)
    assert all(g.startswith((f"QC-SHIFT{code}-", f"SHIFT{code}-")) for g in shifted)
    assert not shifted & {r.group_id for r in _records(worlds[()])}  # the unshifted world of the same seed
    training = generate(tmp_path / "train", seed=0, groups_per_mission=6)  # and the training world
    assert not shifted & {r.group_id for f in training.stage_a_files.values() for r in read_stage_a_jsonl(f)}
    for other in worlds:  # nor another shifted world
        if other and other != shift:
            assert not shifted & {r.group_id for r in _records(worlds[other])}


# ---- each shift, as documented -------------------------------------------------------------------


def test_more_images(worlds):
    unshifted_max = max(len(scenes) for _, scenes in _planned(()))
    assert unshifted_max == MAX_IMAGES
    planned = [len(scenes) for _, scenes in _planned(("more_images",))]
    assert min(planned) > unshifted_max and max(planned) <= 8
    for _, scenes in _planned(("more_images",)):
        assert 5 <= sum(not s.irrelevant for s in scenes) <= 7 and all(s.objects for s in scenes if not s.irrelevant)
    assert min(len(r.images) for r in _records(worlds[("more_images",)])) > max(
        len(r.images) for r in _records(worlds[()])
    )


def test_more_irrelevant(worlds):
    def irrelevant(scenes):
        return sum(bool(s.irrelevant) for s in scenes)

    plain = [irrelevant(scenes) for _, scenes in _planned(())]
    more = [irrelevant(scenes) for _, scenes in _planned(("more_irrelevant",))]
    assert max(plain) == 1 and statistics.mean(plain) < 0.4
    assert set(more) == {1, 2} and statistics.mean(more) > 1.3
    # the relevant images are planned as before
    relevant = [len(scenes) - irrelevant(scenes) for _, scenes in _planned(("more_irrelevant",))]
    assert 1 <= min(relevant) and max(relevant) <= 3
    counts = [sum(s == IRRELEVANT for s in r.per_image.values()) for r in _records(worlds[("more_irrelevant",)])]
    assert min(counts) >= 1
    before = [sum(s == IRRELEVANT for s in r.per_image.values()) for r in _records(worlds[()])]
    assert statistics.mean(counts) > statistics.mean(before) + 0.8


def test_layout(worlds):
    for _, scenes in _planned(("layout",)):
        for scene in scenes:
            if not scene.irrelevant:
                assert scene.layout == "large" and len(scene.objects) <= 6
    for _, scenes in _planned(()):
        assert all(s.layout == "grid" for s in scenes)
    # the same scene drawn both ways: other pixels
    m = get_mission("rru_position")
    scene = next(s for s in plan_group(m, random.Random(3), fail=False)[0] if not s.irrelevant)
    grid = render(scene, random.Random(0))
    scene.layout = "large"
    large = render(scene, random.Random(0))
    assert grid.tobytes() != large.tobytes()
    # the install-point plate moved from the top-left cell to the top-right of the strip
    w = IMAGE_SIZE[0]

    def brightness(img, box):
        return ImageStat.Stat(img.convert("L").crop(box)).mean[0]

    assert brightness(grid, (3, 3, 20, 12)) > 215 > brightness(large, (3, 3, 20, 12))
    assert brightness(large, (w - 21, 3, w - 4, 12)) > 215
    records, manifest = worlds[("layout",)]
    rru = get_mission("rru_install")
    for rec in records["rru_install"]:
        folder = "审核通过" if rec.label == "pass" else "审核不通过"
        for name in rec.images:
            if rec.per_image[f"图片_{rec.images.index(name) + 1}"] != IRRELEVANT:
                with Image.open(manifest.images_dir / rru.name / folder / rec.group_id / name) as img:
                    assert brightness(img, (w - 21, 3, w - 4, 12)) > 215


def test_unseen_labels(worlds):
    seen = set(BBU_TEXTS) | set(RRU_TEXTS)
    assert not seen & set(UNSEEN_TEXTS.values()) and len(set(UNSEEN_TEXTS.values())) == len(seen)

    def texts(records):
        out = set()
        for rec in records:
            for summary in rec.per_image.values():
                if summary != IRRELEVANT:
                    for entry in json.loads(summary)["统计"]:
                        out |= set(entry.get("文本", {}))
        return out

    assert texts(_records(worlds[()])) <= seen
    shifted = texts(_records(worlds[("unseen_labels",)]))
    assert shifted and not shifted & seen and shifted <= set(UNSEEN_TEXTS.values())
    planned = {t for _, scenes in _planned(("unseen_labels",)) for s in scenes for o in s.objects
               for t in [o.attrs.get("文本")] if t}
    assert planned == set(UNSEEN_TEXTS.values())
    # the reference summary carries the text drawn on the plate
    for _, scenes in _planned(("unseen_labels",), n=10):
        for scene in scenes:
            for obj in scene.objects:
                if "文本" in obj.attrs:
                    assert f'"{obj.attrs["文本"]}":' in summary_of(scene)


def test_all_shifts_world_is_pinned(tmp_path):
    root = generate(tmp_path / "w", seed=SEED, groups_per_mission=2, shift=list(reversed(ALL))).root
    assert SynthManifest.load(root).shift == ALL  # canonical order, whatever order it was given in
    assert world_hash(root) == WORLD_ALL_SHIFTS_SEED1_G2


# ---- where a shifted world lives, and bad names ---------------------------------------------------


def test_a_shifted_world_has_its_own_folder(tmp_path, monkeypatch):
    from bbuqc.data.sources import synthetic_root

    monkeypatch.setenv("BBUQC_CACHE", str(tmp_path / "cache"))
    plain = OmegaConf.create({"data": {"synthetic_dir": None, "synthetic_seed": 2, "synthetic_groups_per_mission": 1}})
    shifted = OmegaConf.merge(plain, {"data": {"synthetic_shift": ["layout", "more_images"]}})
    a, b = synthetic_root(plain), synthetic_root(shifted)
    assert a.name == "seed2-g1" and b.name == "seed2-g1-shift-more_images+layout" and a.parent == b.parent
    assert SynthManifest.load(a).shift == () and SynthManifest.load(b).shift == ("more_images", "layout")
    # an explicit folder: a world of another shift there is rebuilt, the same one reused
    out = tmp_path / "mine"
    ensure_synthetic(out, seed=2, groups_per_mission=1)
    ensure_synthetic(out, seed=2, groups_per_mission=1, shift=["unseen_labels"])
    assert SynthManifest.load(out).shift == ("unseen_labels",)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    ensure_synthetic(out, seed=2, groups_per_mission=1, shift=["unseen_labels", "unseen_labels"])
    assert (out / "manifest.json").stat().st_mtime_ns == mtime


def test_an_unknown_shift_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic shift 'bigger'; known: more_images, more_irrelevant"):
        generate(tmp_path / "w", shift=["layout", "bigger"])
    assert list(tmp_path.iterdir()) == []
    node = OmegaConf.merge(OmegaConf.structured(DataConfig), {"synthetic_shift": ["layout", "bigger"]})
    assert check_data(node) == [
        "data.synthetic_shift=[layout,bigger]: unknown shift 'bigger'; known: "
        "more_images, more_irrelevant, layout, unseen_labels"
    ]
    assert check_data(OmegaConf.merge(OmegaConf.structured(DataConfig), {"synthetic_shift": list(SHIFTS)})) == []


def test_the_commands_refuse_an_unknown_shift_before_writing(tmp_path):
    env = {**os.environ, "BBUQC_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "bbuqc.evaluate", "data.synthetic_shift=[nope]", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: data.synthetic_shift=[nope]: unknown shift 'nope'; known: "
        "more_images, more_irrelevant, layout, unseen_labels"
    ]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "synth").exists()
    # bbuqc-synth: --shift takes the same names
    synth = [sys.executable, "-m", "bbuqc.synth", "--seed", "4", "--groups-per-mission", "1"]
    proc = subprocess.run([*synth, "--shift", "nope"], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 2 and "--shift" in proc.stderr and "more_irrelevant" in proc.stderr
    assert not (tmp_path / "cache" / "synth").exists()
    proc = subprocess.run([*synth, "--shift", "unseen_labels", "layout"], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "cache" / "synth" / "seed4-g1-shift-layout+unseen_labels"
    assert f"shift layout+unseen_labels) at {root}" in proc.stdout
    assert SynthManifest.load(root).shift == ("layout", "unseen_labels")
