"""Stage-A's second chance for an unusable summary (``infer.resample``): which images are sampled again, with
which seeds, what is written, what is counted; and that the seeded samples make a resumed run write the same
bytes (the test model, not a stub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage_a_support import MISSION_ID, N_GROUPS, base_overrides, compose

from bbuqc.errors import InputError
from bbuqc.missions import MISSIONS
from bbuqc.stage_a import runner as runner_mod
from bbuqc.stage_a.backends import GenerationSettings
from bbuqc.stage_a.resample import try_seed
from bbuqc.stage_a.runner import run_stage_a
from bbuqc.stage_a.workers import StageAWorker, group_payload

MISSION = MISSIONS[MISSION_ID]
HEADER = f"<DOMAIN={MISSION.domain}>, <TASK=SUMMARY>"
BROKEN = '{"统计": [{"类别": "BBU设备"'  # cut off: not JSON


class SeededStub:
    """Greedy answers from file names (``broken`` ones unusable); a sample is usable only when ``usable`` says
    so of its seed, and then says which seed drew it. Every call is recorded."""

    name = "stub"

    def __init__(self, broken=(), irrelevant=(), usable=lambda seed: False):
        self.broken, self.irrelevant, self.usable = set(broken), set(irrelevant), usable
        self.calls: list[tuple[list[str], GenerationSettings]] = []

    def generate(self, images, mission, settings):
        self.calls.append(([p.name for p in images], settings))
        out = []
        for p in images:
            if settings.seed is not None:
                out.append(f'{HEADER}\n{{"seed":{settings.seed}}}' if self.usable(settings.seed)
                           else "<fill_1><fill_2>")
            elif p.name in self.irrelevant:
                out.append("无关图片")
            elif p.name in self.broken:
                out.append(f"{HEADER}\n{BROKEN}")
            else:
                out.append(f'{HEADER}\n{{"图片":"{p.name}"}}')
        return out


def per_image(out: Path) -> dict[str, str]:
    """image name -> written summary, over the whole file."""
    return {name: r["per_image"][f"图片_{i}"] for line in out.read_text(encoding="utf-8").splitlines()
            for r in [json.loads(line)] for i, name in enumerate(r["images"], 1)}


def image_path(tree: Path, name: str) -> Path:
    return next(tree.rglob(name))


def test_an_unusable_summary_is_replaced_by_the_first_usable_sample(tmp_path, make_cfg, tree, capsys):
    fixed, hopeless = "img2.jpg", "a.jpeg"
    seeds = {n: [try_seed(image_path(tree, n), 0, k) for k in (1, 2, 3, 4)] for n in (fixed, hopeless)}
    stub = SeededStub(broken={fixed, hopeless}, irrelevant={"b.jpg"}, usable=lambda seed: seed == seeds[fixed][2])
    out = tmp_path / "out.jsonl"
    summary = run_stage_a(make_cfg(out, resample=4, resample_temperature=0.7), backend=stub)
    written = per_image(out)
    assert written[fixed] == f'{{"seed":{seeds[fixed][2]}}}'  # the third try, the first usable one
    assert written[hopeless] == BROKEN  # no try usable: the first answer stays
    assert written["b.jpg"] == "无关图片" and written["img10.jpg"] == '{"图片":"img10.jpg"}'
    resampled = [(names, s) for names, s in stub.calls if s.seed is not None]
    # one image per try, at the resampling temperature, seeded by the image and the try; nothing else resampled
    assert [(names, s.seed) for names, s in resampled] == \
        [([fixed], seeds[fixed][k]) for k in range(3)] + [([hopeless], seeds[hopeless][k]) for k in range(4)]
    assert {s.temperature for _, s in resampled} == {0.7}
    assert summary["resampled"] == {"images": 2, "fixed": 1, "tries": 7}
    assert summary["written"] == N_GROUPS
    assert json.loads((tmp_path / "out.jsonl.summary.json").read_text(encoding="utf-8"))["resampled"] == \
        summary["resampled"]
    assert "resampled 2 images whose summary was neither JSON nor 无关图片: 1 fixed in 7 samples" in \
        capsys.readouterr().out


def test_resample_off_writes_the_first_answer_and_samples_nothing(tmp_path, make_cfg):
    stub = SeededStub(broken={"img2.jpg"}, usable=lambda seed: True)
    summary = run_stage_a(make_cfg(tmp_path / "out.jsonl", resample=0), backend=stub)
    assert per_image(tmp_path / "out.jsonl")["img2.jpg"] == BROKEN
    assert all(s.seed is None for _, s in stub.calls)
    assert summary["resampled"] == {"images": 0, "fixed": 0, "tries": 0}


def test_a_tries_seed_follows_the_images_bytes_not_its_path(tmp_path, tree):
    image = image_path(tree, "img2.jpg")
    copy = tmp_path / "elsewhere.jpg"
    copy.write_bytes(image.read_bytes())
    assert try_seed(copy, 0, 1) == try_seed(image, 0, 1)  # a Ray worker's absolute path, a moved tree
    others = {try_seed(image, 0, 2), try_seed(image, 1, 1), try_seed(image_path(tree, "img10.jpg"), 0, 1)}
    assert try_seed(image, 0, 1) not in others and len(others) == 3
    assert all(0 <= s < 2**31 for s in others)


def test_a_ray_worker_resamples_and_sends_its_counts(tree):
    """The actor's side of ``infer.workers > 1`` (no Ray needed: the class is called directly)."""
    cfg = compose(base_overrides(tree, tree / "unused.jsonl", resample=2))
    from omegaconf import OmegaConf

    stub = SeededStub(broken={"img2.jpg"})
    worker = StageAWorker(OmegaConf.to_container(cfg, resolve=True), backend_factory=lambda _: stub)
    from bbuqc.data.discovery import discover_groups

    groups, _ = discover_groups(tree, MISSION)
    result = worker.process([group_payload(g) for g in groups])
    assert result["resampled"] == {"images": 1, "fixed": 0, "tries": 2}
    assert len(result["groups"]) == len(groups) and all("line" in g for g in result["groups"])


def test_resampling_is_part_of_the_resume_identity(tmp_path, make_cfg):
    out = tmp_path / "out.jsonl"
    off = runner_mod.run_identity(make_cfg(out, resample=0), MISSION, runner_mod.input_root(make_cfg(out)))
    assert "resample" not in off  # files from before resampling, or with it off, resume as before
    run_stage_a(make_cfg(out, resample=0), backend=SeededStub())
    with pytest.raises(InputError, match=r"resample.*infer.output"):
        run_stage_a(make_cfg(out, resample=4), backend=SeededStub())
    run_stage_a(make_cfg(tmp_path / "b.jsonl", resample=4, seed=1), backend=SeededStub())
    with pytest.raises(InputError, match="resample"):
        run_stage_a(make_cfg(tmp_path / "b.jsonl", resample=4, seed=2), backend=SeededStub())


@pytest.mark.parametrize("override, named", [("infer.resample=-1", "infer.resample=-1"),
                                              ("infer.resample_temperature=0", "infer.resample_temperature=0")])
def test_bad_resampling_settings_are_refused_before_anything_runs(tmp_path, tree, override, named):
    from support import run_cli

    out = tmp_path / "out.jsonl"
    proc = run_cli("infer", f"data.root={tree}", f"infer.output={out}", override, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------- the test model


class SampledAsJson:
    """The test model, whose answers are never JSON; a sample is handed on wrapped in JSON, so that the
    file shows which text the seeded sampling drew (the greedy answers stay unusable)."""

    name = "hf"

    def __init__(self, backend):
        self.backend = backend

    def generate(self, images, mission, settings):
        texts = self.backend.generate(images, mission, settings)
        return [json.dumps({"sample": t}) if settings.seed is not None else t for t in texts]


def test_seeded_samples_make_a_resumed_run_write_the_same_bytes(tmp_path, make_cfg, backend, chatty_model):
    import torch

    model = SampledAsJson(backend)
    first = tmp_path / "first.jsonl"
    run_stage_a(make_cfg(first, model=chatty_model, batch_size=8, resample=4), backend=model)
    samples = per_image(first)
    assert all(json.loads(s)["sample"] for s in samples.values())  # every image resampled, a sample written
    assert len(set(samples.values())) > 1
    # batch size 1, and a run resumed after its first record: the same bytes
    again = tmp_path / "again.jsonl"
    run_stage_a(make_cfg(again, model=chatty_model, batch_size=1, resample=4), backend=model)
    assert again.read_bytes() == first.read_bytes()
    resumed = tmp_path / "resumed.jsonl"
    cfg = make_cfg(resumed, model=chatty_model, batch_size=8, resample=4)
    run_stage_a(cfg, backend=model)
    resumed.write_bytes(first.read_bytes().split(b"\n", 1)[0] + b"\n")
    torch.manual_seed(12345)  # whatever the process's random state
    run_stage_a(cfg, backend=model)
    assert resumed.read_bytes() == first.read_bytes()
    # another infer.seed draws other samples
    other = tmp_path / "other.jsonl"
    run_stage_a(make_cfg(other, model=chatty_model, batch_size=8, seed=3, resample=4), backend=model)
    assert per_image(other) != samples


def test_a_seeded_sample_leaves_the_process_random_state_alone(tree, backend):
    import torch

    image = [image_path(tree, "img2.jpg")]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = backend.generate(image, MISSION, GenerationSettings(4, temperature=1.0, seed=5))
    assert torch.equal(torch.rand(3), expected)
    assert backend.generate(image, MISSION, GenerationSettings(4, temperature=1.0, seed=5)) == a
