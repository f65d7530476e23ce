"""The Stage-A JSONL writer: one complete line per group, durable as soon as it is written, resumable.

Crash model: the writer only ever *appends* whole lines (one ``write`` of the encoded line
plus its newline), then flushes and ``os.fsync``\\ s. A crash (SIGKILL, OOM, power loss) can
therefore leave at most one incomplete line, at the end of the file. On the next run
:meth:`StageAWriter.open`

1. truncates the file to its last newline (the incomplete tail, if any, is dropped: that
   group is simply generated again),
2. reads every complete line back as a validated :class:`~bbuqc.data.records.StageARecord`
   and reports the ``(label, group_id)`` pairs already done, so the runner skips them.

A complete line that is not a valid record is never "repaired" (that would destroy data
the writer did not write): it raises :class:`OutputError` naming ``file:line``.

The output file itself is locked (``fcntl.flock``) while the writer is open, so two runs
cannot append to the same output at once.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bbuqc.data.records import StageAFormatError, StageARecord, record_from_dict, record_to_line

Key = tuple[str, str]  # (label, group_id): unique per mission


class OutputError(RuntimeError):
    """The output file cannot be resumed or written; the message is one line."""


def record_key(rec: StageARecord) -> Key:
    return (rec.label, rec.group_id)


@dataclass
class ScanResult:
    records: list[StageARecord] = field(default_factory=list)  # complete lines, file order
    repaired_bytes: int = 0  # length of the incomplete tail that was cut off (0: none)

    @property
    def keys(self) -> set[Key]:
        return {record_key(r) for r in self.records}


def complete_length(data: bytes) -> int:
    """Length of the prefix of ``data`` made of complete (newline-terminated) lines."""
    return data.rfind(b"\n") + 1


def parse_lines(data: bytes, path: Path | str) -> list[StageARecord]:
    """Every complete line of ``data`` as a validated record (blank lines ignored)."""
    out: list[StageARecord] = []
    seen: dict[Key, int] = {}
    for lineno, raw in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        if not raw.strip():
            continue
        try:
            rec = record_from_dict(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OutputError(f"{path}:{lineno}: not a JSON line ({exc}); it was not written by an interrupted "
                              "run (only the last line can be incomplete): fix or move the file") from None
        except StageAFormatError as exc:
            raise OutputError(f"{path}:{lineno}: not a Stage-A record: {exc}") from None
        key = record_key(rec)
        if key in seen:
            raise OutputError(f"{path}:{lineno}: group {rec.group_id} ({rec.label}) already on line {seen[key]}")
        seen[key] = lineno
        out.append(rec)
    return out


def scan_and_repair(path: Path | str) -> ScanResult:
    """Read an existing output, cutting an incomplete last line off the file (in place)."""
    path = Path(path)
    if not path.exists():
        return ScanResult()
    data = path.read_bytes()
    keep = complete_length(data)
    result = ScanResult(records=parse_lines(data[:keep], path), repaired_bytes=len(data) - keep)
    if keep < len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return result


class StageAWriter:
    """Appends Stage-A records to ``path``; use as a context manager.

    >>> with StageAWriter(path) as w:          # doctest: +SKIP
    ...     done = w.done                      # keys already in the file
    ...     w.write(record)
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._handle = None
        self.scan = ScanResult()
        self.written = 0

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> StageAWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")  # O_APPEND: every write lands at the (possibly repaired) end
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputError(f"{self.path}: another run is writing this file") from None
        try:
            self.scan = scan_and_repair(self.path)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return self

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the lock
            self._handle = None

    def __enter__(self) -> StageAWriter:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- writing
    @property
    def done(self) -> set[Key]:
        return self.scan.keys

    def write(self, rec: StageARecord) -> None:
        """Append one validated record as one complete line; durable when this returns."""
        if self._handle is None:
            raise OutputError(f"{self.path}: writer is not open")
        line = (record_to_line(rec) + "\n").encode("utf-8")
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.scan.records.append(rec)
        self.written += 1


def sort_output(path: Path | str, order: Iterable[Key]) -> bool:
    """Rewrite ``path`` so its records follow ``order`` (records not in it keep their place at the end).

    Only needed when a resumed run completes a group that an earlier run had failed (it is
    appended after the rest). The file is rewritten to a temporary sibling and renamed over
    the original, so a crash leaves either the old or the new file. Returns True if rewritten.
    """
    path = Path(path)
    data = path.read_bytes()
    records = parse_lines(data[: complete_length(data)], path)
    rank = {key: i for i, key in enumerate(order)}
    ordered = sorted(range(len(records)), key=lambda i: (rank.get(record_key(records[i]), len(rank)), i))
    if ordered == list(range(len(records))) and complete_length(data) == len(data):
        return False
    tmp = path.with_name(f".{path.name}.sorting")
    with tmp.open("wb") as handle:
        for i in ordered:
            handle.write((record_to_line(records[i]) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return True
