"""Named shifts of the synthetic world: a test world whose groups differ from training in a documented way.

A shift changes how groups are planned or drawn; the pass/fail rules (``judge_group``), the reference
summaries' format and the folder layout stay. Each name is described in docs/data.md
("Shifted worlds"). A shifted world is its own world: its own random streams, its own group-id prefix
(``QC-SHIFT<codes>-…``, never ``QC-SYN-``, so it shares no group id with an unshifted world of any seed)
and its own default folder (``seed<seed>-g<groups>-shift-<names>``).

No imports: the config validation reads ``SHIFTS`` cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable

# name -> one-letter code in the group-id prefix (QC-SHIFT<codes>-<date>-<n>), in canonical order
SHIFTS: dict[str, str] = {
    "more_images": "I",  # every group 5-8 images (the unshifted generator: 1-4)
    "more_irrelevant": "R",  # every group 1-2 irrelevant images (unshifted: 0-1, p = 0.35)
    "layout": "L",  # a 3x2 grid of larger cells under a top strip (unshifted: 4x3 grid of 32-px cells)
    "unseen_labels": "U",  # label plates carry texts that no unshifted world uses
}


def canonical_shift(names: Iterable[str] | None) -> tuple[str, ...]:
    """The shift names in canonical order without repeats; ValueError naming an unknown one."""
    names = list(names or ())
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise ValueError(
            f"unknown synthetic shift {', '.join(repr(n) for n in unknown)}; known: {', '.join(SHIFTS)}"
        )
    return tuple(n for n in SHIFTS if n in names)


def shift_tag(shift: Iterable[str]) -> str:
    """The group-id tag of a shifted world (``SHIFTIL`` for more_images + layout); '' for none."""
    shift = canonical_shift(shift)
    return "SHIFT" + "".join(SHIFTS[n] for n in shift) if shift else ""


def shift_suffix(shift: Iterable[str]) -> str:
    """The default folder's suffix (``-shift-more_images+layout``); '' for an unshifted world."""
    shift = canonical_shift(shift)
    return "-shift-" + "+".join(shift) if shift else ""
