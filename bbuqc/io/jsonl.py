"""The one JSONL module: the resumable writer (Stage-A outputs, evaluation predictions) and the readers
(``read_rows``: a file written whole, strict; ``read_objects``: a log another process appends to, lenient).

A resumable file holds one JSON object per line, each written whole by one run at a time:

- **append only**: a line is one ``write`` of the encoded text plus its newline, then
  ``flush`` + ``os.fsync``; when :meth:`ResumableJsonl.append` returns, the line is durable;
- **lock**: the data file itself is ``flock``-ed while it is open, so a second run on the
  same file (two evaluations on one folder, two Stage-A runs on one output) is refused
  with one line instead of interleaving lines;
- **repair the tail**: a crash can leave at most one incomplete line, at the end. Opening
  truncates the file to its last newline (that record is simply made again). A complete
  line that is not a valid record is never "repaired" (that would destroy data this writer
  did not write): it is an error naming ``file:line``;
- **one record per key**: a repeated key (a group written twice) is an error naming both
  lines, never silently counted twice;
- **settings sidecar**: the settings that produced the records (model, decoding, input)
  are recorded beside the data (``settings_path``). Resuming with other settings is
  refused; resuming a non-empty file whose settings are *unknown* (sidecar missing or
  unreadable, e.g. the data file was copied alone) is refused too, unless the caller's
  force override is set — then this run's settings are recorded and a warning is returned.

Every refusal is a :class:`JsonlError` (an ``InputError``): the entry point prints it as
one ``error:`` line and exits 2.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from bbuqc.errors import InputError
from bbuqc.io.atomic import write_json_atomic
from bbuqc.runtime.kill_point import kill_point

T = TypeVar("T")


class JsonlError(InputError):
    """A JSONL output that cannot be opened, resumed or written; the message is one line."""


class RecordError(ValueError):
    """Raised by a ``parse`` callback: the line is JSON but not a valid record (message without location)."""


def complete_length(data: bytes) -> int:
    """Length of the prefix of ``data`` made of complete (newline-terminated) lines."""
    return data.rfind(b"\n") + 1


def parse_lines(data: bytes, path: Path | str, parse: Callable[[Any], T], key: Callable[[T], Hashable] | None,
                describe: Callable[[T], str] = repr) -> list[T]:
    """Every complete line of ``data`` through ``parse`` (blank lines ignored); a line that is not
    JSON, not a record, or repeats an earlier line's key (``key`` None: any line may repeat) raises
    JsonlError("<path>:<line>: ...")."""
    out: list[T] = []
    seen: dict[Hashable, int] = {}
    for lineno, raw in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise JsonlError(f"{path}:{lineno}: invalid JSON: not UTF-8 (only the last line can be incomplete "
                             "after a crash): fix or move the file") from None
        except json.JSONDecodeError as exc:
            raise JsonlError(f"{path}:{lineno}: invalid JSON: {exc.msg} (only the last line can be incomplete "
                             "after a crash): fix or move the file") from None
        except RecursionError:
            raise JsonlError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
        try:
            rec = parse(obj)
        except RecordError as exc:
            raise JsonlError(f"{path}:{lineno}: {exc}") from None
        k = None if key is None else key(rec)
        if key is not None and k in seen:
            raise JsonlError(f"{path}:{lineno}: {describe(rec)} already on line {seen[k]} (two runs wrote into one "
                             "file?): remove the repeated line, or start a new file")
        seen[k] = lineno
        out.append(rec)
    return out


def read_jsonl(path: Path | str, parse: Callable[[Any], T], key: Callable[[T], Hashable],
               describe: Callable[[T], str] = repr) -> list[T]:
    """The complete records of ``path`` (none when it does not exist); an incomplete tail is ignored,
    the file is not touched."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    return parse_lines(data[: complete_length(data)], path, parse, key, describe)


def read_rows(path: Path | str) -> list[Any]:
    """Every JSON value of a JSONL file written whole (a run's data snapshot: training or validation rows),
    blank lines ignored; a line that is not JSON raises JsonlError naming ``<path>:<line>``."""
    path = Path(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"  # written whole: the last line is complete without its newline too
    return parse_lines(data, path, lambda obj: obj, None)


def read_objects(path: Path | str) -> list[dict[str, Any]]:
    """Every JSON object of a log another process appends to while it runs (a training run's
    `logging.jsonl`, `validation.jsonl`, ...), in file order; none when the file does not exist.

    Lenient where :func:`read_rows` is strict: such a log is never repaired by its writer, and a killed
    job leaves a torn line (its tail, or before the lines of a job resumed from another folder), so a
    line that is not a JSON object is skipped instead of sinking a report over a finished run."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


_ABSENT = object()  # a key an older sidecar does not have


@dataclass
class Settings:
    """What a resumed run must share with the run that started the file."""

    values: dict[str, Any]  # this run's settings, written to ``path``
    path: Path  # the sidecar
    force: bool = False  # resume a file whose settings are unknown
    force_hint: str = ""  # the override that sets ``force``, named in the refusal
    other_output_hint: str = "use another output"  # how to start over, named in a mismatch

    def check(self, data_path: Path, n_records: int) -> str | None:
        """Refuse to mix settings; write the sidecar. Returns a warning when ``force`` was needed."""
        warning = None
        if n_records:
            before = None
            if self.path.is_file():
                try:
                    before = json.loads(self.path.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError, RecursionError):
                    before = None
            if not isinstance(before, dict):
                state = "unreadable" if self.path.exists() else "missing"
                if not self.force:
                    raise JsonlError(
                        f"{data_path} holds {n_records} records but its settings file {self.path} is {state}, so "
                        f"they may come from another model or decoding; {self.force_hint} resumes it anyway "
                        f"(recording this run's settings), or {self.other_output_hint}")
                warning = (f"{data_path}: settings of the {n_records} records already there were unknown "
                           f"({self.path} {state}); resumed because of {self.force_hint}")
            else:
                # a key the older sidecar lacks counts as changed: nothing shows it was the same
                changed = [k for k in self.values if before.get(k, _ABSENT) != self.values[k]]
                if changed:
                    shown = "; ".join(f"{k}={before.get(k, '<not recorded>')!r} (now {self.values[k]!r})"
                                      for k in changed)
                    raise JsonlError(f"{data_path} was made with other settings ({shown}); "
                                     f"{self.other_output_hint}, or use the same settings to resume")
        write_json_atomic(self.path, self.values)
        return warning


@dataclass
class ResumableJsonl(Generic[T]):
    """An append-only, locked, tail-repaired JSONL file; use as a context manager.

    ``parse`` turns a decoded line into a record (raising :class:`RecordError`), ``key`` gives
    its identity (repeats are refused), ``describe`` names it in messages.
    """

    path: Path
    parse: Callable[[Any], T]
    key: Callable[[T], Hashable]
    describe: Callable[[T], str] = repr
    settings: Settings | None = None
    records: list[T] = field(default_factory=list)  # file order: complete lines at open, then appended
    repaired_bytes: int = 0  # the incomplete tail cut off at open (0: none)
    warnings: list[str] = field(default_factory=list)
    written: int = 0
    _handle: Any = None

    def __post_init__(self):
        self.path = Path(self.path)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> ResumableJsonl[T]:
        if self._handle is not None:
            raise JsonlError(f"{self.path}: already open")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("ab")  # O_APPEND: every write lands at the (possibly repaired) end
        except OSError as exc:
            cause = exc.strerror or str(exc)
            if isinstance(exc, FileExistsError):  # mkdir met a file where a folder of the path belongs
                blocker = next(p for p in self.path.parents if p.exists())
                cause = f"Not a directory: {blocker} is a file"
            raise JsonlError(f"{self.path}: cannot open for writing: {cause}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise JsonlError(f"{self.path}: another run is writing this file (wait for it, or use another "
                             "output)") from None
        try:
            data = self.path.read_bytes()
            keep = complete_length(data)
            self.records = parse_lines(data[:keep], self.path, self.parse, self.key, self.describe)
            if self.settings is not None:
                warning = self.settings.check(self.path, len(self.records))
                if warning:
                    self.warnings.append(warning)
            if keep < len(data):  # only now touch the data: every check passed
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
                self.repaired_bytes = len(data) - keep
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return self

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the lock
            self._handle = None

    def __enter__(self) -> ResumableJsonl[T]:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    @property
    def keys(self) -> set[Hashable]:
        return {self.key(r) for r in self.records}

    def append(self, line: str, record: T) -> None:
        """Append ``line`` (one JSON object, no newline) for ``record``; durable when this returns."""
        if self._handle is None:
            raise JsonlError(f"{self.path}: writer is not open")
        data = (line + "\n").encode("utf-8")
        try:
            self._handle.write(data)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise JsonlError(f"{self.path}: cannot write: {exc.strerror or exc} ({len(self.records)} records "
                             "written before are kept; re-run to resume)") from None
        self.records.append(record)
        self.written += 1
        kill_point("jsonl-append")  # test-only (BBUQC_TEST_KILL_AT); nothing when unset

    def rewrite(self, lines: Iterable[str]) -> None:
        """Replace the whole file by ``lines`` (temp sibling + fsync + rename: the old or the new file,
        never a mix). Only while open, so no other run appends meanwhile."""
        if self._handle is None:
            raise JsonlError(f"{self.path}: writer is not open")
        tmp = self.path.with_name(f".{self.path.name}.rewrite")
        tmp.unlink(missing_ok=True)
        handle = tmp.open("ab")
        try:
            # locked before it takes the file's name, so the lock never lapses
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            for line in lines:
                handle.write((line + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        self._handle.close()
        self._handle = handle
