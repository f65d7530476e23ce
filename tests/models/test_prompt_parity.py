"""What a trained model sees at inference is what it saw in training: for every family's tiny twin, the
prompt token ids bbuqc's generation layer (bbuqc/models/generation.py: Stage-A, Stage-B's HF path and
held-out validation) feeds the model equal the ids ms-swift's own template produces for the same
messages, in inference mode and as the prompt part of a training row (issue 30.5)."""

from __future__ import annotations

import os

import pytest
from support import compose

from bbuqc.models import tiny

#: One preset per tiny kind (tiny_qwen2_vl is `tiny`'s twin too).
PRESETS = ("tiny", "tiny_qwen2_5_vl", "tiny_qwen3_vl", "tiny_demo", "tiny_text", "tiny_qwen2_5", "tiny_text_demo")
MISSION = "bbu_wind"


def test_every_tiny_kind_is_checked():
    assert {tiny.PRESET_KINDS[p] for p in PRESETS} == set(tiny.SPECS)


@pytest.fixture
def fresh_image_env(monkeypatch):
    """The image-size environment resolve_model writes stays inside the test, and qwen_vl_utils reads it
    afresh (ms-swift configures it from the environment once per process)."""
    pytest.importorskip("swift")
    from qwen_vl_utils import vision_process

    for key in ("MAX_PIXELS", "MIN_PIXELS", "IMAGE_MAX_TOKEN_NUM", "IMAGE_MIN_TOKEN_NUM"):
        monkeypatch.delenv(key, raising=False)
    saved_env, saved_utils = dict(os.environ), dict(vars(vision_process))
    vars(vision_process).pop("_patch", None)
    yield
    for name in set(vars(vision_process)) - set(saved_utils):
        delattr(vision_process, name)
    vars(vision_process).update(saved_utils)
    os.environ.clear()
    os.environ.update(saved_env)


def _prompt(multimodal: bool, tmp_path):
    """The prompt each kind of twin answers: VL twins a Stage-A summary prompt with one image, text twins a
    Stage-B verdict prompt (both with bbuqc's system prompt), and an answer for the training row."""
    from PIL import Image

    from bbuqc.prompts.summary import summary_messages
    from bbuqc.prompts.verdict import verdict_messages

    if multimodal:
        image = tmp_path / "photo.png"
        Image.new("RGB", (300, 200), (30, 120, 200)).save(image)
        return summary_messages(MISSION, n_images=1), [str(image)], "挡风板: 有, 安装规范"
    return verdict_messages(MISSION, {"图片_1": "挡风板: 有, 安装规范"}), None, "通过\n理由: 图片_1 挡风板安装规范"


# tiny_demo's build pretrains the twin (~6 min of one core, bbuqc/models/twin_pretraining.py): slow
@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p == "tiny_demo" else p for p in PRESETS])
def test_inference_prompt_ids_equal_the_training_templates(preset, tmp_path, fresh_image_env, session_cache):
    from swift.model import get_processor
    from swift.template import get_template

    from bbuqc.io.images import rows_with_training_images
    from bbuqc.models.generation import load_generator, pixel_bounds
    from bbuqc.models.resolve import resolve_model
    from bbuqc.models.swift_template import register_templates

    model = resolve_model(compose("train", [f"model={preset}"]))  # sets the image-size environment
    messages, images, answer = _prompt(model.multimodal, tmp_path)
    generator = load_generator(model.path, multimodal=model.multimodal)
    fed = generator.encode([messages], images)["input_ids"][0].tolist()

    # ms-swift gets the images as training hands them over (bbuqc/training/data.py: copies, read as Stage-A reads)
    images = images and rows_with_training_images([{"images": images}], tmp_path / "copies",
                                                  max_pixels=pixel_bounds().get("max_pixels"))[0]["images"]
    register_templates()  # tiny_demo's template is bbuqc's
    template = get_template(get_processor(model.path, model_type=model.model_type), template_type=model.template)
    template.set_mode("transformers")  # ms-swift's inference encoding: the messages plus the generation prompt
    assert fed == template.encode({"messages": messages, "images": images or []})["input_ids"]
    template.set_mode("train")  # a training row: the same prompt, then the answer the loss is taken on
    row = template.encode({"messages": [*messages, {"role": "assistant", "content": answer}], "images": images or []})
    prompt_len = next(i for i, label in enumerate(row["labels"]) if label != -100)
    assert row["input_ids"][:prompt_len] == fed
    # the system prompt is bbuqc's (not a template default), and a VL prompt holds its image
    tokenizer = generator.tokenizer
    assert messages[0]["content"] in tokenizer.decode(fed)
    if images:
        assert tokenizer.convert_tokens_to_ids("<|image_pad|>") in fed
