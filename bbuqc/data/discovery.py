"""Stage-A input discovery (DESIGN.md §3, "Stage-A input").

Layout: ``<root>/<mission name>/<审核通过|审核不通过>/<group dir>/*.{jpg,jpeg,png}``.

- Extensions match case-insensitively; images sort naturally (``img2`` before ``img10``).
- Group id: the ``QC-<letters>-<8 digits>-<digits>`` prefix of the first image's
  name when it has one, else the group folder's name.
- A resubmission (the same group id under both labels) is two groups.
- Groups come back sorted by (group id in natural order, label) — so a
  resubmission's ``fail`` comes before its ``pass``; the pair is unique.
- Anything unexpected is reported as one warning string each, not raised:
  an unknown label folder, a stray file where folders belong, a non-image
  file or a sub-folder inside a group, an empty group, and a second folder
  yielding an already-seen (label, group id) pair (the later folder, in
  natural order, is skipped: the pair must be unique).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from natsort import natsort_keygen, natsorted

from bbuqc.missions import Mission
from bbuqc.prompts.summary import resolve_mission

from .records import LABEL_DIRS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
GROUP_ID_RE = re.compile(r"^(QC-[A-Za-z]+-\d{8}-\d+)")
_natural = natsort_keygen()


@dataclass
class Group:
    group_id: str
    label: str  # pass | fail
    dir: Path
    images: list[Path] = field(default_factory=list)  # natural order

    @property
    def image_names(self) -> list[str]:
        return [p.name for p in self.images]


def group_sort_key(group_id: str, label: str) -> tuple:
    """The order of groups: group id in natural order, then label (fail before pass)."""
    return (_natural(group_id), label)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def group_id_of(first_image: str, folder: str) -> str:
    match = GROUP_ID_RE.match(first_image)
    return match.group(1) if match else folder


def discover_groups(root: str | Path, mission: Mission | str) -> tuple[list[Group], list[str]]:
    """The groups of one mission under ``root``, and the warnings met on the way."""
    m = resolve_mission(mission)
    mission_dir = Path(root) / m.name
    if not mission_dir.is_dir():
        raise FileNotFoundError(f"mission folder not found: {mission_dir} (expected <root>/<mission name>)")
    warnings: list[str] = []
    groups: list[Group] = []
    seen: set[tuple[str, str]] = set()
    for label_dir in natsorted(mission_dir.iterdir(), key=lambda p: p.name):
        label = LABEL_DIRS.get(label_dir.name)
        if not label_dir.is_dir():
            warnings.append(f"ignored file {label_dir} (expected label folders {'/'.join(LABEL_DIRS)})")
            continue
        if label is None:
            warnings.append(f"ignored unknown label folder {label_dir} (expected {'/'.join(LABEL_DIRS)})")
            continue
        for group_dir in natsorted(label_dir.iterdir(), key=lambda p: p.name):
            if not group_dir.is_dir():
                warnings.append(f"ignored file {group_dir} (expected group folders under {label_dir.name})")
                continue
            images = []
            for entry in natsorted(group_dir.iterdir(), key=lambda p: p.name):
                if entry.is_dir():
                    warnings.append(f"ignored sub-folder {entry} inside a group")
                elif is_image(entry):
                    images.append(entry)
                else:
                    warnings.append(f"ignored non-image file {entry}")
            if not images:
                warnings.append(f"empty group {group_dir}: no .jpg/.jpeg/.png images")
                continue
            group_id = group_id_of(images[0].name, group_dir.name)
            if (label, group_id) in seen:
                warnings.append(f"skipped {group_dir}: group {group_id} already found under {label_dir.name}")
                continue
            seen.add((label, group_id))
            groups.append(Group(group_id, label, group_dir, images))
    groups.sort(key=lambda g: group_sort_key(g.group_id, g.label))
    return groups, warnings
