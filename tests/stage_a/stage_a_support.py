"""Helpers of the Stage-A tests: a small image tree with the layout's edge cases, the test model, configs.

The test model: the stock tiny VL model is untrained with tied input/output embeddings, so
under greedy decoding it repeats the prompt's last token (a newline) forever; every summary is
empty and every group fails validation (the right outcome for such output). The runner tests
need text, so they use a *variant* of the tiny checkpoint with an untied random ``lm_head``
and stronger attention outputs (so the logits depend on the whole prompt, padding included).
Same architecture, processor and tokenizer; greedy output like ``<fill_48650><fill_48650>...``:
non-empty and deterministic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MISSION_ID = "bbu_wind"
MAX_NEW_TOKENS = 4  # small: keeps the model tests fast

# (label folder, group folder, [(file name, (width, height))]); sizes vary so batches are left-padded
TREE = [
    ("审核通过", "folder-a", [("QC-TEMP-20241206-0015502_10.jpeg", (128, 96)),
                            ("QC-TEMP-20241206-0015502_2.JPG", (300, 200)),
                            ("QC-TEMP-20241206-0015502_1.png", (56, 56))]),
    ("审核不通过", "folder-b", [("QC-TEMP-20241206-0015502_7.jpg", (200, 40))]),  # resubmission of the same id
    ("审核不通过", "site 9", [("img10.jpg", (112, 112)), ("img2.jpg", (90, 70)), ("IMG1.PNG", (500, 1000))]),
    ("审核通过", "site 10", [("b.jpg", (128, 96)), ("a.jpeg", (64, 200))]),
    ("审核不通过", "QC-ABC-20250101-7", [("QC-ABC-20250101-7_3.jpg", (140, 60)), ("QC-ABC-20250101-7_1.jpg", (96, 128))]),
]
N_GROUPS = len(TREE)
N_IMAGES = sum(len(files) for _, _, files in TREE)


def rec(i: int, label: str = "pass", n: int = 2):
    """A valid Stage-A record (no model involved)."""
    from bbuqc.data.records import StageARecord

    images = [f"QC-TEMP-20241206-{i:07d}_{k}.jpg" for k in range(1, n + 1)]
    per_image = {f"图片_{k}": ("无关图片" if k % 2 == 0 else f'{{"统计":[{{"类别":"BBU设备","n":{i}}}]}}')
                 for k in range(1, n + 1)}
    return StageARecord(f"QC-TEMP-20241206-{i:07d}", "挡风板安装检查", label, images, per_image)


# four records in the order a discovery would give them
RECORDS = [rec(1), rec(2, "fail", 3), rec(2, "pass", 1), rec(3)]


def noise_image(size: tuple[int, int], seed: int):
    import numpy as np
    from PIL import Image

    w, h = size
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def make_tree(root: Path) -> Path:
    """``<root>/<mission name>/...`` with the layout's edge cases (a non-image file, an empty
    group, an unknown label folder, mixed-case extensions, a resubmission); returns ``root``."""
    from bbuqc.missions import MISSIONS

    base = root / MISSIONS[MISSION_ID].name
    seed = 0
    for label_dir, group_dir, files in TREE:
        for name, size in files:
            path = base / label_dir / group_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            noise_image(size, seed).save(path, format="PNG" if name.lower().endswith(".png") else "JPEG")
            seed += 1
    (base / "审核通过" / "folder-a" / "notes.txt").write_text("not an image")
    (base / "审核通过" / "empty").mkdir()
    unknown = base / "待审核" / "g"
    unknown.mkdir(parents=True)
    noise_image((64, 64), 99).save(unknown / "x.jpg")
    return root


def build_chatty(src: Path, dst: Path) -> Path:
    """The test model: the tiny VL checkpoint at ``src`` with an untied random lm_head."""
    import torch
    from transformers import AutoModelForImageTextToText

    if (dst / "model.safetensors").is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, tmp / f.name)
    model = AutoModelForImageTextToText.from_pretrained(str(src), dtype=torch.float32)
    model.config.tie_word_embeddings = False
    model.config.text_config.tie_word_embeddings = False
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=gen) * 0.05)
        for layer in model.model.language_model.layers:
            layer.self_attn.o_proj.weight.mul_(10.0)
            layer.self_attn.v_proj.weight.mul_(10.0)
    model.save_pretrained(str(tmp))
    os.replace(tmp, dst)
    return dst


def compose(overrides: list[str]):
    """The ``infer`` config. support is imported here, not at the top: Ray workers import this module
    with only its own folder on their path."""
    from support import compose as compose_config

    return compose_config("infer", overrides)


def base_overrides(root: Path, output: Path, model: Path | None = None, **infer) -> list[str]:
    over = [f"mission={MISSION_ID}", f"data.root={root}", f"infer.output={output}",
            f"infer.max_new_tokens={MAX_NEW_TOKENS}", "infer.progress=false"]
    # the test model never writes JSON, so resampling would only multiply its work: off unless a test asks
    # (test_resample.py, where it is on and checked, the test model included)
    infer.setdefault("resample", 0)
    if model is not None:
        over.append(f"model.path={model}")
    over += [f"infer.{k}={v}" for k, v in infer.items()]
    return over


def backend_killed_once(cfg, marker: str):
    """A Ray worker's backend (``run_stage_a(backend_factory=...)``): the real one, except that the
    first ``generate`` of the whole run (whichever actor makes it) SIGKILLs its own process, as an
    OOM kill would. ``marker`` records that it happened."""
    import signal

    from bbuqc.stage_a.backends import backend_for

    real = backend_for(cfg)

    class KilledOnce:
        name = real.name

        def generate(self, images, mission, settings):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return real.generate(images, mission, settings)
            os.kill(os.getpid(), signal.SIGKILL)

    return KilledOnce()


def backend_killed_on(cfg, image_name: str):
    """A Ray worker's backend that SIGKILLs its own process whenever a batch holds ``image_name``:
    that chunk can never finish, however often Ray restarts the actor."""
    import signal

    from bbuqc.stage_a.backends import backend_for

    real = backend_for(cfg)

    class KilledOn:
        name = real.name

        def generate(self, images, mission, settings):
            if any(p.name == image_name for p in images):
                os.kill(os.getpid(), signal.SIGKILL)
            return real.generate(images, mission, settings)

    return KilledOn()
