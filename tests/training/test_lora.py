"""LoRA last-K targeting from real module names, for every supported model family."""

from __future__ import annotations

import re

import pytest

from bbuqc.training.lora import last_k_target_regex, linear_module_names, llm_block_prefix


def _save(config, tmp_path):
    config.save_pretrained(tmp_path)
    return str(tmp_path)


def _qwen2_vl(tmp_path):
    from transformers import Qwen2VLConfig

    return _save(Qwen2VLConfig(
        text_config={"num_hidden_layers": 3, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "vocab_size": 256},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2},
    ), tmp_path)


def _qwen2_5_vl(tmp_path):
    from transformers import Qwen2_5_VLConfig

    return _save(Qwen2_5_VLConfig(
        text_config={"num_hidden_layers": 3, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "vocab_size": 256},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
                       "fullatt_block_indexes": [0]},
    ), tmp_path)


def _qwen3_vl(tmp_path):
    from transformers import Qwen3VLConfig

    return _save(Qwen3VLConfig(
        text_config={"num_hidden_layers": 3, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "vocab_size": 256, "head_dim": 16},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
                       "deepstack_visual_indexes": [0]},
    ), tmp_path)


def _qwen2(tmp_path):
    from transformers import Qwen2Config

    return _save(Qwen2Config(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                             num_key_value_heads=1, vocab_size=256), tmp_path)


FAMILIES = {
    "qwen2_vl": (_qwen2_vl, "model.language_model.layers"),
    "qwen2_5_vl": (_qwen2_5_vl, "model.language_model.layers"),
    "qwen3_vl": (_qwen3_vl, "model.language_model.layers"),
    "qwen2": (_qwen2, "model.layers"),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("last_k", [1, 2, 3])
def test_regex_selects_exactly_the_last_k_llm_blocks(family, last_k, tmp_path):
    build, prefix = FAMILIES[family]
    names = linear_module_names(build(tmp_path))
    regex, selected = last_k_target_regex(names, last_k)
    wanted = {str(i) for i in range(3 - last_k, 3)}
    matched = [n for n in names if re.fullmatch(regex, n)]
    assert matched == selected and matched
    for name in matched:
        assert name.startswith(prefix + ".") and name.split(".")[len(prefix.split("."))] in wanted
    # every Linear of those blocks, nothing of the vision tower, the aligner or the head
    in_blocks = [n for n in names if re.match(rf"{re.escape(prefix)}\.({'|'.join(wanted)})\.", n)]
    assert sorted(matched) == sorted(in_blocks)
    assert not [n for n in matched if "visual" in n or "merger" in n or n == "lm_head"]


def test_block_prefix_ignores_vision_blocks():
    names = ["model.visual.blocks.0", "model.visual.layers.0", "model.language_model.layers.0", "model.language_model.layers.1"]
    assert llm_block_prefix(names) == ("model.language_model.layers", 2)


def test_last_k_beyond_depth_is_refused(tmp_path):
    names = linear_module_names(_qwen2(tmp_path))
    with pytest.raises(ValueError, match="lora.last_k=4"):
        last_k_target_regex(names, 4)


def test_text_config_never_goes_through_the_vl_auto_class(tmp_path, monkeypatch):
    """A text config is built with AutoModelForCausalLM directly: the VL auto class's refusal message alone
    imports every config class transformers knows (~0.8 s of each text-model run)."""
    from transformers import AutoModelForImageTextToText

    def refuse(*args, **kwargs):
        raise AssertionError("AutoModelForImageTextToText tried for a text config")

    path = _qwen2(tmp_path)
    monkeypatch.setattr(AutoModelForImageTextToText, "from_config", refuse)
    assert "model.layers.0.mlp.down_proj" in linear_module_names(path)


@pytest.mark.parametrize("family", ["vl", "qwen2_5_vl", "qwen3_vl"])
def test_vision_options_add_exactly_the_tower_or_the_aligner(family):
    """lora.vision: the tower's Linears less the aligner's; lora.aligner: the aligner's (ms-swift's split:
    the aligner of its MODEL_ARCH for the family lies inside the tower)."""
    from bbuqc.models.tiny import ensure_tiny_model
    from bbuqc.training.lora import lora_target_regex

    names = linear_module_names(str(ensure_tiny_model(family)))
    llm_only, llm = lora_target_regex(names, 2)
    assert not [n for n in llm if "visual" in n]
    aligner = [n for n in names if re.search(r"visual\.(merger|deepstack_merger_list)\.", n)]
    tower = [n for n in names if "visual." in n and n not in aligner]
    assert aligner and tower
    for vision, with_aligner, expected in [(True, False, tower), (False, True, aligner), (True, True, tower + aligner)]:
        regex, selected = lora_target_regex(names, 2, vision=vision, aligner=with_aligner)
        assert set(selected) == set(llm) | set(expected)
        assert {n for n in names if re.fullmatch(regex, n)} == set(selected)  # what PEFT's fullmatch selects


def test_the_aligner_is_ms_swifts():
    """bbuqc's vision split is ms-swift's own (MODEL_ARCH): the aligner lies inside the tower `visual`."""
    from swift.model.model_arch import MLLMModelArch, get_model_arch

    from bbuqc.models.adapters import ALIGNER_PARTS

    for arch in (MLLMModelArch.qwen2_vl, MLLMModelArch.qwen3_vl):
        keys = get_model_arch(arch)
        towers, aligners = keys.vision_tower, keys.aligner
        assert [t.rsplit(".", 1)[-1] for t in towers] == ["visual"]
        assert {a.rsplit(".", 1)[-1] for a in aligners} <= set(ALIGNER_PARTS)
        assert all(a.startswith(towers[0] + ".") for a in aligners)
