"""The demo summary twin's stand-in for a pretrained VLM's vision tower.

A real Qwen-VL checkpoint arrives with a vision tower that already sees: its summary SFT teaches the LLM to
write what the tower reports. The demo's twin is built from random weights, and a random tower is what kept
its summaries on the mission's prior (docs/demo.md: greedy answers identical for every image, held-out loss
with the row's own image 0.190 against another image of the same mission 0.197). So the twin's build gives
its tower and merger a short vision pretraining, the way VLMs pretrain theirs before any instruction tuning:

* on a world of its own (seed :data:`WORLD_SEED`, generated in a temporary folder and deleted; no demo world
  uses that seed, and group numbers start at seed x 10^6, so no image is shared with training, validation or
  test worlds);
* objective: which facts an image shows (every category present and every ``category/attribute=value`` of the
  image's reference summary; multi-label, a small head over the merged visual tokens, max-pooled); the head
  is thrown away, only the tower and merger weights stay;
* the LLM is untouched (random): reading the tower's tokens and writing the mission's JSON is the summary
  SFT's job, as with a real checkpoint.

Deterministic like the rest of the build: fixed seeds, one torch thread, so a fresh build gives the same bytes
(``tests/models/test_tiny.py`` pins the hash). The held-out fact F1 of the head is returned and recorded in the
twin's build info (``bbuqc_tiny_complete.json``).
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

#: The pretraining world: seed 3 (the demo's worlds are 0, 1 and 2), 150 groups a mission (~1,900 images).
WORLD_SEED = 3
WORLD_GROUPS = 150
STEPS = 1500
BATCH = 16
LR = 3e-3
HELD_OUT = 300
SEED = 1234


def image_facts(summary_ref: str) -> set[str]:
    """The facts a reference summary states (the rewards' reading, :func:`extract_facts`), as the labels the
    head learns: each category and each ``category/attribute=value``, free text and numbers included."""
    from bbuqc.rewards.summary.facts import extract_facts

    facts = extract_facts(json.loads(summary_ref))
    return set(facts.categories) | {f"{c}/{a}={v}" for _, c, a, v in {**facts.stats, **facts.texts}}


def pretrain_vision(model, image_processor, min_pixels: int, max_pixels: int) -> dict:
    """Train ``model``'s vision tower and merger in place (module ``model.model.visual``); returns
    ``{"steps", "world_seed", "facts", "held_out_f1"}``."""
    import torch
    from PIL import Image

    from bbuqc.data.synth import ensure_synthetic

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same summation order on every machine of a kind: the pinned hash
    try:
        with tempfile.TemporaryDirectory(prefix="bbuqc-vision-world-") as tmp:
            world = ensure_synthetic(Path(tmp) / "world", seed=WORLD_SEED, groups_per_mission=WORLD_GROUPS)
            rows = [json.loads(line) for line in (world / "summary_rows.jsonl").open(encoding="utf-8")]
            rows = [(r["images"][0], image_facts(r["metadata"]["summary_ref"]))
                    for r in rows if not r["metadata"]["irrelevant"]]
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
                tp = fp = fn = 0.0
                with torch.no_grad():
                    for i in range(0, len(held), 50):
                        pixels, grid, y = encode(held[i:i + 50])
                        p = (logits(pixels, grid) > 0).float()
                        tp += (p * y).sum().item()
                        fp += (p * (1 - y)).sum().item()
                        fn += ((1 - p) * y).sum().item()
    finally:
        torch.set_num_threads(threads)
    return {"steps": STEPS, "world_seed": WORLD_SEED, "facts": len(labels),
            "held_out_f1": round(2 * tp / (2 * tp + fp + fn), 4)}
