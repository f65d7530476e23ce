"""Helpers of the synthetic-world tests."""

import hashlib
from pathlib import Path


def world_hash(root: Path) -> str:
    """One digest of every file of a world, its absolute root path written as <ROOT> (rows, manifest)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes().replace(str(root).encode(), b"<ROOT>")
            h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
    return h.hexdigest()
