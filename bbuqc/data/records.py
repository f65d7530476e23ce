"""Stage-A records: one JSONL line per group (DESIGN.md §3, "Stage-A output").

```
{"group_id": "QC-TEMP-20241206-0015502", "mission": "挡风板安装检查", "label": "fail",
 "images": ["QC-TEMP-20241206-0015502_4348975.jpeg", ...],
 "per_image": {"图片_1": "{\\"统计\\": [...]}", "图片_2": "无关图片"}}
```

Every reader validates fully and names the problem in one line: the field for
a bad object, ``file:line`` for a bad line of a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bbuqc.errors import InputError

LABEL_DIRS = {"审核通过": "pass", "审核不通过": "fail"}
VERDICT_OF_LABEL = {"pass": "通过", "fail": "不通过"}
LABELS = tuple(VERDICT_OF_LABEL)
FIELDS = ("group_id", "mission", "label", "images", "per_image")


class StageAFormatError(InputError):
    """A Stage-A record or file that breaks the format; the message is one line."""


@dataclass
class StageARecord:
    group_id: str
    mission: str  # the Chinese mission name
    label: str  # pass | fail
    images: list[str]  # basenames, natural order
    per_image: dict[str, str]  # 图片_1 .. 图片_N -> summary line or 无关图片

    @property
    def verdict(self) -> str:
        """The label as a verdict word (通过 / 不通过)."""
        return VERDICT_OF_LABEL[self.label]

    def to_dict(self) -> dict:
        return {
            "group_id": self.group_id,
            "mission": self.mission,
            "label": self.label,
            "images": list(self.images),
            "per_image": dict(self.per_image),
        }


def image_keys(n: int) -> list[str]:
    return [f"图片_{i}" for i in range(1, n + 1)]


def _non_empty_str(obj: dict, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise StageAFormatError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def record_from_dict(obj: object) -> StageARecord:
    """Validate one decoded JSONL object; raise StageAFormatError naming the field."""
    if not isinstance(obj, dict):
        raise StageAFormatError(f"record: expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in FIELDS if key not in obj]
    if missing:
        raise StageAFormatError(f"{missing[0]}: missing field")
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        raise StageAFormatError(f"{extra[0]}: unknown field")
    group_id = _non_empty_str(obj, "group_id")
    mission = _non_empty_str(obj, "mission")
    label = obj["label"]
    if label not in LABELS:
        raise StageAFormatError(f"label: expected 'pass' or 'fail', got {label!r}")
    images = obj["images"]
    if not isinstance(images, list) or not images:
        raise StageAFormatError(f"images: expected a non-empty list of basenames, got {images!r}")
    for i, name in enumerate(images):
        if not isinstance(name, str) or not name.strip():
            raise StageAFormatError(f"images[{i}]: expected a non-empty string, got {name!r}")
        if "/" in name or "\\" in name:
            raise StageAFormatError(f"images[{i}]: expected a basename, got {name!r}")
    per_image = obj["per_image"]
    if not isinstance(per_image, dict):
        raise StageAFormatError(f"per_image: expected an object, got {type(per_image).__name__}")
    expected = image_keys(len(images))
    if list(per_image) != expected:
        if set(per_image) == set(expected):
            problem = "keys out of order"
        else:
            problem = f"keys {sorted(per_image)} do not match"
        raise StageAFormatError(
            f"per_image: expected keys {expected[0]}..{expected[-1]} for {len(images)} images, {problem}"
        )
    for key, summary in per_image.items():
        if not isinstance(summary, str) or not summary.strip():
            raise StageAFormatError(f"per_image.{key}: expected a non-empty summary string, got {summary!r}")
    return StageARecord(group_id, mission, label, list(images), dict(per_image))


def record_to_line(rec: StageARecord) -> str:
    """One compact JSONL line (no newline), after validating the record."""
    data = rec.to_dict()
    record_from_dict(data)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StageAFormatError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "Stage-A files are UTF-8 JSONL"
        ) from None
    return text.removeprefix("\ufeff") if lineno == 1 else text  # a BOM some editors write


def iter_stage_a_jsonl(
    path: str | Path, allow_truncated_tail: bool = False, allow_empty: bool = False
) -> Iterator[tuple[int, StageARecord]]:
    """``(line number, record)`` for each non-blank line of a Stage-A JSONL file.

    The one reader of Stage-A files (verdict training, evaluation): every problem raises
    ``StageAFormatError("<path>:<lineno>: <problem>")`` (``"<path>: ..."`` for the whole file):
    a line that is not UTF-8, not JSON, nested too deeply to decode, or not a valid record; a
    group (``group_id``, ``label``) already given by an earlier line of the file; a file with
    no records (unless ``allow_empty``).
    ``allow_truncated_tail``: a last line without its newline that is not valid
    JSON (a writer interrupted mid-line) is skipped instead of raising.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stage-A file not found: {path}")
    # bytes, split like text mode's universal newlines, decoded per line: an encoding error names its line
    lines = path.read_bytes().splitlines(keepends=True)
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(lines, 1):
        line = _decode_line(raw, path, lineno)
        if not line.strip():
            continue
        last_unterminated = lineno == len(lines) and not line.endswith(("\n", "\r"))
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if allow_truncated_tail and last_unterminated:
                break
            truncated = " (truncated last line?)" if last_unterminated else ""
            raise StageAFormatError(f"{path}:{lineno}: invalid JSON{truncated}: {exc.msg}") from None
        except RecursionError:  # json's C decoder recurses per nesting level
            raise StageAFormatError(f"{path}:{lineno}: JSON nested too deeply to be a Stage-A record") from None
        try:
            rec = record_from_dict(obj)
        except StageAFormatError as exc:
            raise StageAFormatError(f"{path}:{lineno}: {exc}") from None
        key = (rec.group_id, rec.label)
        if key in seen:
            raise StageAFormatError(
                f"{path}:{lineno}: group {rec.group_id} (label {rec.label}) already at line {seen[key]}"
            )
        seen[key] = lineno
        yield lineno, rec
    if not seen and not allow_empty:
        raise StageAFormatError(f"{path}: empty file: no Stage-A records")


def read_stage_a_jsonl(
    path: str | Path, allow_truncated_tail: bool = False, allow_empty: bool = False
) -> list[StageARecord]:
    return [rec for _, rec in iter_stage_a_jsonl(path, allow_truncated_tail, allow_empty)]


def iter_stage_a_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, int, StageARecord]]:
    """``(file, line number, record)`` over many Stage-A files in order, each read by
    ``iter_stage_a_jsonl``; a file given twice (same resolved path) is refused, since its groups
    would count twice."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        resolved = path.resolve()
        if resolved in seen:
            raise StageAFormatError(f"{path}: the same Stage-A file is given twice")
        seen.add(resolved)
        for lineno, rec in iter_stage_a_jsonl(path):
            yield path, lineno, rec


def write_stage_a_jsonl(path: str | Path, records: list[StageARecord]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for rec in records:
            handle.write(record_to_line(rec) + "\n")


def align_summaries(images: list[str], summaries: list[str]) -> dict[str, str]:
    """``{图片_i: summary}`` for images in order; raise when they cannot be aligned."""
    if not images:
        raise StageAFormatError("images: a group needs at least one image")
    if len(summaries) != len(images):
        raise StageAFormatError(f"per_image: {len(summaries)} summaries for {len(images)} images")
    for i, summary in enumerate(summaries, 1):
        if not isinstance(summary, str) or not summary.strip():
            raise StageAFormatError(f"per_image.图片_{i}: empty summary for image {images[i - 1]!r}")
    return dict(zip(image_keys(len(images)), (s.strip() for s in summaries)))


def decode_summaries(value: object) -> dict[str, str] | None:
    """A verdict row's ``summaries`` column as a dict: it is stored as JSON text
    (Arrow dislikes dicts whose keys vary by row) but may also arrive as a dict.
    None when it is neither a dict nor JSON text of an object. Non-string values
    are returned as their JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    if not isinstance(value, dict):
        return None
    # A dict column built by Arrow has every row's keys, None where a row had none.
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in value.items()
        if v is not None
    }
