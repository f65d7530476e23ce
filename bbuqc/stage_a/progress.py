"""Stage-A's progress on stderr: images and groups (tqdm), and the warning lines of failed groups."""

from __future__ import annotations

import sys


class Progress:
    """Two tqdm bars (images, groups), or nothing when ``infer.progress=false``."""

    def __init__(self, enabled: bool, images: int, groups: int):
        self.enabled = enabled
        if enabled:
            from tqdm import tqdm

            self.images = tqdm(total=images, desc="images", unit="img", position=0, dynamic_ncols=True)
            self.groups = tqdm(total=groups, desc="groups", unit="group", position=1, dynamic_ncols=True)

    def add_images(self, n: int) -> None:
        if self.enabled:
            self.images.update(n)

    def add_group(self, n: int = 1) -> None:
        if self.enabled:
            self.groups.update(n)

    def write(self, line: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.enabled:
            self.images.close()
            self.groups.close()
