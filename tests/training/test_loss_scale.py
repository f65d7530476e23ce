"""train.verdict_line_weight: the verdict line's weight in the SFT loss, through ms-swift's loss scale."""

from __future__ import annotations

import pytest

from tests.training.test_args import _problems, kwargs

ANSWER = "不通过\n理由: 未检测到ODF端光纤插头"


def _weighted_tokens(weight: float) -> list[tuple[str, float]]:
    """The answer's trained tokens and the weight ms-swift's template gives each (what its loss multiplies)."""
    from swift.model import get_processor
    from swift.template import get_template

    from bbuqc.models.tiny import ensure_tiny_model
    from bbuqc.training import loss_scale

    processor = get_processor(str(ensure_tiny_model("text")), model_type="qwen2", download_model=False)
    template = get_template(processor, template_type="qwen", loss_scale=loss_scale.register(weight))
    template.set_mode("train")
    enc = template.encode({"messages": [{"role": "user", "content": "图片摘要"}, {"role": "assistant", "content": ANSWER}]})
    return [(processor.decode([tok]), scale) for tok, label, scale in
            zip(enc["input_ids"], enc["labels"], enc["loss_scale"]) if label != -100]


def test_the_verdict_line_weighs_the_weight_and_the_rest_of_the_answer_one(session_cache):
    tokens = _weighted_tokens(8.0)
    text = "".join(tok for tok, _ in tokens)
    assert text.startswith(ANSWER) and text[len(ANSWER):].startswith("<|im_end|>")  # the whole turn trains
    weight_of = [scale for _, scale in tokens]
    assert [tok for tok, _ in tokens[:2]] == ["不通过", "\n"] and weight_of[:2] == [8.0, 8.0]
    # the 理由 line and the end-of-turn suffix keep weight 1
    assert weight_of[2:] == [1.0] * (len(tokens) - 2)
    # registering again replaces the weight (one name in ms-swift's registry)
    assert [scale for _, scale in _weighted_tokens(3.0)][:2] == [3.0, 3.0]


def test_the_weight_maps_to_ms_swift_loss_scale_only_when_set():
    from bbuqc.training.loss_scale import NAME

    assert kwargs("algo=sft", "task=verdict", "train.verdict_line_weight=4")["loss_scale"] == NAME
    # weight 1: ms-swift's default loss (the assistant turn, every token 1)
    assert "loss_scale" not in kwargs("algo=sft", "task=verdict")


@pytest.mark.parametrize("overrides, line", [
    (["algo=sft", "task=summary", "train.verdict_line_weight=4"],
     "train.verdict_line_weight=4.0: weights the verdict line of an SFT target (task=verdict algo=sft), "
     "not task=summary algo=sft; leave it at 1"),
    (["task=verdict", "train.verdict_line_weight=4"],
     "train.verdict_line_weight=4.0: weights the verdict line of an SFT target (task=verdict algo=sft), "
     "not task=verdict algo=grpo; leave it at 1"),
    (["algo=sft", "task=verdict", "train.verdict_line_weight=0"], "train.verdict_line_weight=0.0: expected a number > 0"),
    (["algo=sft", "task=verdict", "train.verdict_line_weight=4", "+train.extra.loss_scale=all"],
     "train.extra.loss_scale: train.verdict_line_weight=4.0 sets ms-swift's loss_scale; use one of the two"),
])
def test_a_weight_without_a_verdict_line_is_refused_naming_the_field(overrides, line):
    assert _problems(*overrides) == [line]
