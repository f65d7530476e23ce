"""The Stage-A output: :class:`bbuqc.io.jsonl.ResumableJsonl` with Stage-A records, keyed by (label, group_id).

Everything about durability (append + fsync, the lock, the repair of an interrupted last
line, refusing repeated groups, the settings sidecar ``<output>.meta.json``) lives in
bbuqc/io/jsonl.py, shared with evaluation's ``predictions.jsonl``. This module only says what
a record is, and restores discovery order (:meth:`StageAWriter.sort`) when a resumed run
completed a group an earlier run had failed (it is appended after the rest).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bbuqc.data.records import StageAFormatError, StageARecord, record_from_dict, record_to_line
from bbuqc.io.jsonl import JsonlError, RecordError, ResumableJsonl, Settings, complete_length, parse_lines

__all__ = ["Key", "OutputError", "StageAWriter", "complete_length", "read_output", "record_key"]

Key = tuple[str, str]  # (label, group_id): unique per mission
OutputError = JsonlError  # the output cannot be resumed or written; one line


def record_key(rec: StageARecord) -> Key:
    return (rec.label, rec.group_id)


def _parse(obj) -> StageARecord:
    try:
        return record_from_dict(obj)
    except StageAFormatError as exc:
        raise RecordError(f"not a Stage-A record: {exc}") from None


def _describe(rec: StageARecord) -> str:
    return f"group {rec.group_id} ({rec.label})"


def read_output(path: Path | str) -> list[StageARecord]:
    """The complete records of a Stage-A output (file untouched)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    return parse_lines(data[: complete_length(data)], path, _parse, record_key, _describe)


@dataclass
class ScanResult:
    records: list[StageARecord] = field(default_factory=list)  # complete lines at open, then appended
    repaired_bytes: int = 0  # length of the incomplete tail that was cut off (0: none)


class StageAWriter:
    """Appends Stage-A records to ``path``; use as a context manager.

    >>> with StageAWriter(path, settings) as w:   # doctest: +SKIP
    ...     done = w.done                         # keys already in the file
    ...     w.write(record)
    """

    def __init__(self, path: Path | str, settings: Settings | None = None):
        self.file = ResumableJsonl(Path(path), _parse, record_key, _describe, settings=settings)
        self.path = self.file.path

    def open(self) -> StageAWriter:
        self.file.open()
        return self

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> StageAWriter:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def scan(self) -> ScanResult:
        return ScanResult(self.file.records, self.file.repaired_bytes)

    @property
    def warnings(self) -> list[str]:
        return self.file.warnings

    @property
    def done(self) -> set[Key]:
        return self.file.keys  # type: ignore[return-value]

    @property
    def written(self) -> int:
        return self.file.written

    def write(self, rec: StageARecord) -> None:
        """Append one validated record as one complete line; durable when this returns."""
        self.file.append(record_to_line(rec), rec)

    def write_line(self, line: str) -> None:
        """Append a record already serialised by ``record_to_line`` (made by a Ray worker)."""
        import json

        self.file.append(line, _parse(json.loads(line)))

    def sort(self, order: Iterable[Key]) -> bool:
        """Rewrite the file so its records follow ``order`` (records not in it keep their place at
        the end), atomically and under the lock. Returns True if rewritten."""
        records = self.file.records
        rank = {key: i for i, key in enumerate(order)}
        ordered = sorted(range(len(records)), key=lambda i: (rank.get(record_key(records[i]), len(rank)), i))
        if ordered == list(range(len(records))):
            return False
        self.file.records = [records[i] for i in ordered]
        self.file.rewrite(record_to_line(r) for r in self.file.records)
        return True
