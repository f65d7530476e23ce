"""Generation backends: the shared prompt, left padding (batched logits = alone), vLLM's fail-fast."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from stage_a_support import MISSION_ID, noise_image
from support import run_cli

from bbuqc.missions import MISSIONS
from bbuqc.prompts.summary import summary_system_prompt, summary_user_prompt
from bbuqc.stage_a import backends
from bbuqc.stage_a.backends import (
    VLLM_MISSING,
    BackendError,
    GenerationSettings,
    chat_conversation,
    check_backend,
    load_image,
    pixel_bounds,
)

MISSION = MISSIONS[MISSION_ID]
no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


def test_conversation_is_the_shared_summary_prompt():
    system, user = chat_conversation(MISSION)
    assert system == {"role": "system", "content": [{"type": "text", "text": summary_system_prompt(MISSION)}]}
    assert user == {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": summary_user_prompt(MISSION)}]}


def test_rendered_prompt_has_the_system_prompt_and_one_image(backend):
    text = backend.prompt(MISSION)
    assert summary_system_prompt(MISSION) in text and summary_user_prompt(MISSION) in text
    assert text.count("<|image_pad|>") == 1 and text.endswith("<|im_start|>assistant\n")
    assert "You are a helpful assistant" not in text  # our system prompt replaces the template's default


def test_batched_generation_matches_generation_alone(backend, tmp_path):
    """Left padding, attention mask and M-RoPE positions are right: every row of a padded batch
    gets the logits it gets alone (up to float noise; a wrong mask moves them by ~1e-3)."""
    import torch

    paths = []
    for i, size in enumerate([(128, 96), (300, 200), (56, 56), (200, 40), (500, 1000)]):
        paths.append(tmp_path / f"{i}.png")
        noise_image(size, i).save(paths[-1])
    batch = backend.encode(paths, MISSION)
    lengths = batch["attention_mask"].sum(1)
    assert backend.tokenizer.padding_side == "left" and len(set(lengths.tolist())) > 1
    for row in range(len(paths)):  # padding on the left: every row ends with real tokens
        assert batch["attention_mask"][row, -1] == 1
    kw = dict(max_new_tokens=3, do_sample=False, output_scores=True, return_dict_in_generate=True,
              pad_token_id=backend.tokenizer.pad_token_id)
    with torch.inference_mode():
        together = backend.model.generate(**batch, **kw)
        for row, path in enumerate(paths):
            alone = backend.model.generate(**backend.encode([path], MISSION), **kw)
            for step in range(len(alone.scores)):
                a, b = alone.scores[step][0], together.scores[step][row]
                # the vision placeholders are suppressed (-inf) in both: compare the rest
                assert torch.equal(torch.isneginf(a), torch.isneginf(b))
                diff = (a - b)[~torch.isneginf(a)].abs().max().item()
                assert diff < 1e-4, (row, step, diff)
    texts = backend.generate(paths, MISSION, GenerationSettings(max_new_tokens=3))
    assert texts == [backend.generate([p], MISSION, GenerationSettings(max_new_tokens=3))[0] for p in paths]


def test_corrupt_image_raises_in_the_backend(backend, tmp_path):
    bad = tmp_path / "bad.jpg"
    noise_image((64, 64), 0).save(bad, format="JPEG")
    bad.write_bytes(bad.read_bytes()[:150])
    with pytest.raises(OSError):
        load_image(bad)
    with pytest.raises(OSError):
        backend.generate([bad], MISSION, GenerationSettings(max_new_tokens=2))


def test_pixel_bounds_follow_ms_swift_env(monkeypatch, backend):
    monkeypatch.delenv("MIN_PIXELS", raising=False)
    monkeypatch.setenv("MAX_PIXELS", "6272")
    assert pixel_bounds() == {"max_pixels": 6272}
    assert backend._size_kwargs()["size"]["longest_edge"] == 6272
    monkeypatch.delenv("MAX_PIXELS")
    assert pixel_bounds() == {} and backend._size_kwargs() == {}


def test_unknown_backend_is_refused():
    with pytest.raises(BackendError, match="infer.backend='tgi'"):
        check_backend("tgi")


@no_vllm
def test_vllm_missing_fails_with_one_clear_line_before_any_model_loads(tmp_path, make_cfg, monkeypatch):
    from bbuqc.stage_a.runner import run_stage_a

    with pytest.raises(BackendError) as exc:
        check_backend("vllm")
    assert str(exc.value) == VLLM_MISSING
    with pytest.raises(BackendError, match="vLLM is not installed"):
        backends.VLLMBackend(tmp_path)
    monkeypatch.setattr(backends, "load_hf", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "out.jsonl"
    with pytest.raises(BackendError, match="vLLM is not installed"):
        run_stage_a(make_cfg(out, backend="vllm"))
    assert not out.exists()


@no_vllm
def test_cli_vllm_missing(tmp_path, tree):
    out = tmp_path / "out.jsonl"
    proc = run_cli("infer", f"mission={MISSION_ID}", f"data.root={tree}", f"infer.output={out}", "infer.backend=vllm",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {VLLM_MISSING}"]
    assert not out.exists() and not Path(f"{out}.meta.json").exists()
