"""A VL model never writes its vision placeholder tokens (bbuqc/models/generation.py, forbid_vision_placeholders):
a GRPO completion with one `<|image_pad|>` more than its image has fails ms-swift's training forward ("Number of
elements of source < number of ones in mask"; the demo's quick run hit it 2 steps after the pretrained twin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbuqc.models.generation import VISION_PLACEHOLDERS, Generator, forbid_vision_placeholders
from bbuqc.models.loading import load_model_and_processor
from bbuqc.models.tiny import ensure_tiny_model
from bbuqc.prompts.summary import summary_messages


@pytest.fixture(scope="module")
def twin(session_cache) -> str:
    return str(ensure_tiny_model("vl"))


def _eager_to_write(model, token: int) -> None:
    """The model's output layer favours ``token`` above all others (as an unsure model may sample it)."""
    def boost(_module, _inputs, logits):
        logits[..., token] += 100.0
        return logits

    model.get_output_embeddings().register_forward_hook(boost)


def _image(tmp_path: Path) -> str:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (120, 90, 60)).save(path)
    return str(path)


def _written_ids(model, processor, image: str) -> list[int]:
    """The token ids bbuqc's generation layer has the model write (greedy, 4 tokens) for a Stage-A prompt."""
    from bbuqc.missions import get_mission

    calls = []
    generate = model.generate

    def recording(**batch):
        out = generate(**batch)
        calls.append(out[0, batch["input_ids"].shape[1]:].tolist())
        return out

    model.generate = recording
    Generator(model, processor).generate([summary_messages(get_mission("bbu_wind"), n_images=1)], [image],
                                         max_new_tokens=4)
    return calls[0]


def test_a_model_eager_to_write_an_image_placeholder_never_does(twin, tmp_path):
    model, processor = load_model_and_processor(twin, multimodal=True)
    placeholders = {getattr(model.config, key) for key in VISION_PLACEHOLDERS}
    _eager_to_write(model, model.config.image_token_id)
    written = _written_ids(model, processor, _image(tmp_path))
    assert written and not placeholders & set(written)
    # the same model without the rule writes nothing but placeholders (the boost is what it obeys)
    model.generation_config.suppress_tokens = None
    assert _written_ids(model, processor, _image(tmp_path)) == [model.config.image_token_id] * 4


def test_the_rule_reaches_ms_swifts_rollout_engine(twin):
    from swift.infer_engine.protocol import RequestConfig
    from swift.infer_engine.utils import prepare_generation_config

    model, processor = load_model_and_processor(twin, multimodal=True)
    ids = {getattr(model.config, key) for key in VISION_PLACEHOLDERS}
    # what ms-swift's transformers engine builds for each rollout from the model's generation config
    rollout = prepare_generation_config(model.generation_config, RequestConfig(temperature=1.0, max_tokens=8),
                                        processor.tokenizer)
    assert ids <= set(rollout.suppress_tokens) and rollout.do_sample


def test_a_text_model_has_no_placeholders(session_cache):
    model, _ = load_model_and_processor(ensure_tiny_model("text"), multimodal=False)
    assert forbid_vision_placeholders(model) == [] and not model.generation_config.suppress_tokens
