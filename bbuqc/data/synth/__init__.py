"""The synthetic world: small drawn scenes, their reference summaries, labelled groups.

No real photographs ship with the project, so this package draws one (DESIGN.md
§5, "Synthetic data"; layout and rules in docs/data.md)::

    <out>/images/<mission name>/<审核通过|审核不通过>/<group>/<image>.jpg
    <out>/stage_a/<mission id>.jsonl     perfect Stage-A (per_image = reference summaries)
    <out>/summary_rows.jsonl             summary-task GRPO rows (one per image)
    <out>/verdict_rows.jsonl             verdict-task GRPO rows (one per group)
    <out>/manifest.json                  seed, sizes, counts; written last

Everything is a function of the seed: one ``random.Random`` stream per
mission, PIL drawing, JPEGs at a fixed quality, no timestamps. A world is
built in a temporary sibling folder and renamed into place, so an interrupted
``generate`` never leaves a half world behind.

Group labels are never chosen directly: a scene is planned to pass or to fail
one focus point, its reference summaries are written, and ``judge_group``
(the mission's focus points applied to those summaries, ``bbuqc.missions.rules``)
decides the label.

- ``plan``: objects per image of a group, and each image's reference summary;
- ``draw``: the image of a planned scene;
- ``world``: the world on disk (``generate``, ``ensure_synthetic``, ``SynthManifest``);
- ``shift``: the named shifts of a test world (``SHIFTS``; docs/data.md, "Shifted worlds").
"""

from __future__ import annotations

from .plan import plan_group, summary_of
from .shift import SHIFTS, canonical_shift, shift_suffix
from .world import SynthManifest, ensure_synthetic, generate

__all__ = [
    "SHIFTS",
    "SynthManifest",
    "canonical_shift",
    "ensure_synthetic",
    "generate",
    "plan_group",
    "shift_suffix",
    "summary_of",
]
