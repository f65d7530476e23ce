"""The demo summary twin's stand-in for a pretrained VLM: a tower that sees and an LLM that reads it.

A real Qwen-VL checkpoint arrives pretrained: its tower sees, and its LLM can already say what the tower
reports; its summary SFT only teaches bbuqc's format and the missions. The demo's twin is built from random
weights, so its build gives it the two pretraining stages VLMs go through before any instruction tuning, on a
world of its own (seed :data:`WORLD_SEED`, generated in a temporary folder and deleted; no demo world uses that
seed, and group numbers start at seed x 10^6, so no image is shared with training, validation or test worlds):

1. **vision** (:func:`pretrain_vision`): the tower and merger learn which facts an image shows (every category
   present, every ``category/attribute=value`` of the image's reference summary and an RRU image's install
   point; multi-label, a small head over the merged visual tokens, max-pooled, thrown away afterwards). A
   random tower had kept the summaries on the mission's prior (docs/demo.md, second design).
2. **reading** (:func:`pretrain_reading`): with the tower frozen, the LLM (every weight) and the merger learn
   to caption an image's facts in plain words (:func:`caption`: no JSON, no attribute keys, no totals, another
   prompt than any mission's), as a VLM's captioning pretraining does; images stating a rare fact are drawn
   :data:`READ_RARE_REPEAT` times as often. With the tower alone pretrained, the
   random LLM learned to read it only in part through the summary SFT, and the RRU failures stayed unread
   (docs/demo.md, third design). Writing the mission's JSON summary stays the summary SFT's job.

Deterministic like the rest of the build: fixed seeds, one torch thread, so a fresh build gives the same bytes
(``tests/models/test_tiny.py`` pins the hash). Each stage's held-out figures are returned and recorded in the
twin's build info (``bbuqc_tiny_complete.json``).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from pathlib import Path

#: The pretraining world: seed 3 (the demo's worlds are 0, 1 and 2), 400 groups a mission (~6,000 images,
#: ~5,000 relevant: the rarest failing facts are 0.5% of them, ~25 images each).
WORLD_SEED = 3
WORLD_GROUPS = 400
SEED = 1234
#: Stage 1, vision: the tower and merger learn the image's facts.
STEPS = 3000
BATCH = 16
LR = 3e-3
HELD_OUT = 300
#: Stage 2, reading: the LLM and the merger learn to caption the facts from the frozen tower (6000 steps: in
#: the probes, held-out captions were exact 0.55 after 3000 and 0.76 after 6000; docs/demo.md).
READ_STEPS = 6000
READ_BATCH = 8
READ_LR = 1e-3
READ_HELD_OUT = 200
#: An image stating a rare fact (fewer than READ_RARE_SHARE of the images: a failing screw, a fibre without its
#: tube) is drawn READ_RARE_REPEAT times as often in the reading stage, as the summary SFT does
#: (``data.rare_fact_repeat``). Drawn as often as the rest, the LLM wrote the common value over what the tower
#: saw: captions of another world's images stated 半径不合理 for 0 of the 25 that show it; with the repeat, for
#: all 25 (docs/demo.md, eighth session).
READ_RARE_SHARE = 0.03
READ_RARE_REPEAT = 3
#: The captioning prompt, another task than any mission's summary prompt: what a real checkpoint's
#: pretraining gives its LLM is reading the image, not bbuqc's JSON.
CAPTION_PROMPT = "图片"
IRRELEVANT_CAPTION = "无关图片"
#: A caption joins an object's words with WORD_SEP and its objects with PART_SEP (:func:`caption`).
WORD_SEP, PART_SEP = "、", "；"


def image_facts(summary_ref: str) -> set[str]:
    """The facts a reference summary states (the rewards' reading, :func:`extract_facts`), as the labels the
    head learns: each category, each ``category/attribute=value`` (free text and numbers included) and an RRU
    image's install point (``分组统计=N``)."""
    from bbuqc.rewards.summary.facts import extract_facts

    facts = extract_facts(json.loads(summary_ref))
    return (set(facts.categories) | {f"{c}/{a}={v}" for _, c, a, v in {**facts.stats, **facts.texts}}
            | {f"{key}={point}" for key, point in facts.groups})


def caption(summary_ref: str | None) -> str:
    """An image's facts as plain words, one object category after another: the category, then each
    stated value as many times as it is counted (``"BBU设备、华为、完整、免装；BBU安装螺丝、不符合、符合"``); an
    irrelevant image (no reference) is ``无关图片``; an RRU image ends with its install point (``分组统计、2``).
    Not the summary format: no attribute keys, no JSON, no totals.
    The words are joined by ``、`` and ``；``, not spaces: a space would make each value another token than
    the one the summary's JSON writes (`` 无套管`` against ``无套管``), and the SFT would not inherit the
    reading (docs/demo.md: with spaces, the summary model never wrote ``无套管``)."""
    if summary_ref is None:
        return IRRELEVANT_CAPTION
    obj = json.loads(summary_ref)
    parts = []
    for entry in obj["统计"]:
        words = [str(entry["类别"])]
        for attribute, counts in entry.items():
            if attribute == "类别":
                continue
            if isinstance(counts, dict):
                words += [str(value) for value, n in counts.items() for _ in range(int(n))]
            else:
                words.append(str(counts))
        parts.append(WORD_SEP.join(words))
    # an RRU image's install point (the "P2" plate): the per-point rules read it from the summary
    parts += [WORD_SEP.join(["分组统计", str(point)]) for point in (obj.get("分组统计") or {})]
    return PART_SEP.join(parts)


def caption_words(text: str) -> Counter:
    """The words of a caption (or of a generated one), counted: what the reading stage's word F1 compares."""
    return Counter(text.replace(PART_SEP, WORD_SEP).split(WORD_SEP))


def pretrain_twin(model, processor, min_pixels: int, max_pixels: int) -> dict:
    """Both stages, in place, on one pretraining world; returns ``{"world_seed", "vision": ..., "reading":
    ...}`` (each stage's steps and held-out figures)."""
    import torch

    from bbuqc.data.synth import ensure_synthetic

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same summation order on every machine of a kind: the pinned hash
    try:
        with tempfile.TemporaryDirectory(prefix="bbuqc-pretraining-world-") as tmp:
            world = ensure_synthetic(Path(tmp) / "world", seed=WORLD_SEED, groups_per_mission=WORLD_GROUPS)
            rows = [json.loads(line) for line in (world / "summary_rows.jsonl").open(encoding="utf-8")]
            images = [(r["images"][0], None if r["metadata"]["irrelevant"] else r["metadata"]["summary_ref"])
                      for r in rows]
            vision = pretrain_vision(model, processor.image_processor, min_pixels, max_pixels, images)
            reading = pretrain_reading(model, processor, min_pixels, max_pixels, images)
    finally:
        torch.set_num_threads(threads)
    return {"world_seed": WORLD_SEED, "vision": vision, "reading": reading}


def pretrain_vision(model, image_processor, min_pixels: int, max_pixels: int, images) -> dict:
    """Train ``model``'s vision tower and merger (module ``model.model.visual``) on ``images`` ((path,
    reference summary or None) pairs; the irrelevant ones are left out) in place; returns ``{"steps", "facts",
    "held_out_f1"}``."""
    import torch
    from PIL import Image

    from bbuqc.rewards.summary.facts import f1_from_counts

    rows = [(path, image_facts(ref)) for path, ref in images if ref is not None]
    labels = sorted({f for _, facts in rows for f in facts})
    index = {f: i for i, f in enumerate(labels)}
    rng = random.Random(SEED)
    rng.shuffle(rows)
    held, train = rows[:HELD_OUT], rows[HELD_OUT:]

    def encode(batch):
        out = image_processor(images=[Image.open(p).convert("RGB") for p, _ in batch], return_tensors="pt",
                              min_pixels=min_pixels, max_pixels=max_pixels)
        y = torch.zeros(len(batch), len(labels))
        for i, (_, facts) in enumerate(batch):
            y[i, [index[f] for f in facts]] = 1
        return out["pixel_values"], out["image_grid_thw"], y

    visual = model.model.visual
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        width = model.config.get_text_config().hidden_size
        head = torch.nn.Sequential(torch.nn.Linear(width, 128), torch.nn.GELU(), torch.nn.Linear(128, len(labels)))

        def logits(pixels, grid):
            tokens = visual(pixels, grid_thw=grid)
            tokens = getattr(tokens, "pooler_output", tokens)  # transformers >= 5: an output object
            sizes = (grid.prod(-1) // visual.spatial_merge_size ** 2).tolist()
            return torch.stack([head(t).max(0).values for t in tokens.split(sizes)])

        visual.train()
        opt = torch.optim.AdamW([*head.parameters(), *visual.parameters()], lr=LR)
        for _ in range(STEPS):
            pixels, grid, y = encode(rng.sample(train, BATCH))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(pixels, grid), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        visual.eval()
        common = predicted = stated = 0
        with torch.no_grad():
            for i in range(0, len(held), 50):
                pixels, grid, y = encode(held[i:i + 50])
                p = (logits(pixels, grid) > 0).float()
                common += int((p * y).sum().item())
                predicted += int(p.sum().item())
                stated += int(y.sum().item())
    return {"steps": STEPS, "facts": len(labels), "held_out_f1": round(f1_from_counts(common, predicted, stated), 4)}


def pretrain_reading(model, processor, min_pixels: int, max_pixels: int, images) -> dict:
    """Teach ``model``'s LLM (every weight) and merger to caption ``images`` ((path, reference summary or
    None) pairs) from the frozen tower (:func:`caption`), in place; returns ``{"steps", "held_out_exact",
    "held_out_word_f1"}`` (greedy captions of held-out images against theirs)."""
    import torch
    from PIL import Image

    from bbuqc.rewards.summary.facts import f1_from_counts, states_rare_fact

    rows = [(path, caption(ref), ref) for path, ref in images]
    rng = random.Random(SEED + 1)
    rng.shuffle(rows)
    held, train = rows[:READ_HELD_OUT], rows[READ_HELD_OUT:]
    rare = states_rare_fact([None if ref is None else json.loads(ref) for *_, ref in train], READ_RARE_SHARE)
    draws = [row for row, is_rare in zip(train, rare) for _ in range(READ_RARE_REPEAT if is_rare else 1)]
    prompt = f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{CAPTION_PROMPT}<|im_end|>\n<|im_start|>assistant\n"

    def encode(batch, answers=True):
        return processor(text=[prompt + (text + "<|im_end|>" if answers else "") for _, text, _ in batch],
                         images=[Image.open(p).convert("RGB") for p, *_ in batch], padding=True,
                         return_tensors="pt", min_pixels=min_pixels, max_pixels=max_pixels)

    # the prompt's length once its image placeholder is expanded: the world's images are all one size
    n_prompt = encode(train[:1], answers=False)["input_ids"].shape[1]
    visual = model.model.visual
    trainable = [*model.model.language_model.parameters(), *model.lm_head.parameters(), *visual.merger.parameters()]
    tower = [p for name, p in visual.named_parameters() if not name.startswith("merger.")]
    for p in tower:
        p.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 1)
        model.train()
        opt = torch.optim.AdamW(trainable, lr=READ_LR, weight_decay=0.0)
        for _ in range(READ_STEPS):
            enc = encode(rng.sample(draws, READ_BATCH))
            labels = enc["input_ids"].clone()
            labels[:, :n_prompt] = -100
            labels[enc["attention_mask"] == 0] = -100
            loss = model(**enc, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    for p in tower:
        p.requires_grad_(True)
    exact = common = said_words = reference_words = 0
    with torch.no_grad():
        for item in held:
            enc = encode([item], answers=False)
            out = model.generate(**enc, max_new_tokens=48, do_sample=False)
            said = processor.tokenizer.decode(out[0, n_prompt:], skip_special_tokens=True).strip()
            exact += said == item[1]
            want, got = caption_words(item[1]), caption_words(said)
            common += sum((want & got).values())
            said_words += sum(got.values())
            reference_words += sum(want.values())
    return {"steps": READ_STEPS, "held_out_exact": round(exact / len(held), 4),
            "held_out_word_f1": round(f1_from_counts(common, said_words, reference_words), 4)}
