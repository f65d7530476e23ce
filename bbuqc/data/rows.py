"""GRPO rows for the two tasks, and the HF datasets built from them (DESIGN.md §3).

Summary row (one image)::

    {"messages": [system, user "<image>…"], "images": ["/abs/path.jpg"],
     "metadata": {"domain": "BBU", "irrelevant": false, "summary_ref": "{…}"},
     "solution": "<DOMAIN=BBU>, <TASK=SUMMARY>\\n{…}", "mission": "bbu_install"}

Verdict row (one Stage-A group)::

    {"messages": [system, user], "group_label": "不通过", "summaries": "{\\"图片_1\\": …}",
     "solution": "不通过\\n理由: …", "mission": "bbu_install", "group_id": "QC-…"}

``summaries`` is the per-image dict *as JSON text*: Arrow gives a dict column
one struct type with the union of every row's keys (``图片_1``..``图片_N`` vary
by row), so it is stored as a string; ``records.decode_summaries`` reads either.

``datasets`` is imported inside the builders only: the config path stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from bbuqc.errors import InputError
from bbuqc.io.images import image_problem
from bbuqc.missions import Mission, all_missions, mission_named
from bbuqc.prompts.summary import IRRELEVANT, reference_output, resolve_mission, summary_messages
from bbuqc.prompts.verdict import verdict_messages, verdict_solution

from .records import StageAFormatError, StageARecord, iter_stage_a_files

SUMMARY_FIELDS = ("messages", "images", "metadata", "solution", "mission")


class RowFormatError(InputError):
    """A summary-row source that breaks the format; the message names file:line and field."""


class RowFileNotFoundError(RowFormatError, FileNotFoundError):
    """An image a row names is not there (a FileNotFoundError too, for callers that catch those); the
    message is one line, ``<file>:<line>: images: file not found: <path>``."""


def summary_row(mission: Mission | str, image: str | Path, summary_ref: str) -> dict:
    """The summary-task row of one image with its reference summary line (or 无关图片)."""
    m = resolve_mission(mission)
    irrelevant = summary_ref.strip() == IRRELEVANT
    return {
        "messages": summary_messages(m),
        "images": [str(Path(image).resolve())],
        "metadata": {"domain": m.domain, "irrelevant": irrelevant, "summary_ref": summary_ref},
        "solution": reference_output(m.domain, summary_ref),
        "mission": m.id,
    }


def _fallback_reason(m: Mission, rec: StageARecord) -> str:
    """A reason for a label the rule does not reproduce: the relevant images and the focus points."""
    keys = "、".join(k for k, s in rec.per_image.items() if s.strip() != IRRELEVANT)
    points = "；".join(m.focus)
    if rec.label == "pass":
        return f"{keys}满足检查要点：{points}" if keys else f"满足检查要点：{points}"
    return f"{keys}未能满足全部检查要点：{points}" if keys else f"缺少有效图片，未能满足检查要点：{points}"


def verdict_row(
    rec: StageARecord, reason: str | None = None, source: str | Path | None = None, lineno: int | None = None
) -> dict:
    """The verdict-task row of a Stage-A record.

    ``reason`` (for the CHORD solution) defaults to the mission rule's reason
    (``bbuqc.missions.rules.judge_group``) when the rule agrees with the record's label, else
    to a reason listing the focus points. ``source``/``lineno`` name the record's
    place in errors.
    """
    m = mission_named(rec.mission)  # the built-in missions and the command's own (hydra.searchpath)
    if m is None:
        where = f"{source}:{lineno}: " if source is not None else ""
        known = ", ".join(m.name for m in all_missions().values())
        raise StageAFormatError(f"{where}mission: unknown mission name {rec.mission!r}; known: {known}")
    if reason is None:
        from bbuqc.missions.rules import RULES, judge_group  # imported on use: it reads summaries (facts)

        # a mission of your own has no rules: its reason lists the focus points
        label, rule_reason = judge_group(m, rec.per_image) if m.id in RULES else (None, "")
        reason = rule_reason if label == rec.label else _fallback_reason(m, rec)
    return {
        "messages": verdict_messages(m, rec.per_image),
        "group_label": rec.verdict,
        "summaries": json.dumps(rec.per_image, ensure_ascii=False),
        "solution": verdict_solution(rec.verdict, reason),
        "mission": m.id,
        "group_id": rec.group_id,
    }


def sft_messages(row: dict) -> list[dict]:
    """A row's messages with the reference answer as the assistant turn (SFT and CHORD data): an ms-swift row
    that ends with one keeps it, a bbuqc row gets its ``solution``."""
    messages = [dict(msg) for msg in row["messages"]]
    if messages and messages[-1].get("role") == "assistant":
        return messages
    return messages + [{"role": "assistant", "content": row["solution"]}]


def prompt_messages(row: dict) -> list[dict]:
    """A row's messages without a last assistant turn (an ms-swift row's answer): the prompt a model answers."""
    messages = [dict(msg) for msg in row["messages"]]
    return messages[:-1] if messages and messages[-1].get("role") == "assistant" else messages


def _check_summary_row(row: object, where: str, base: Path | None) -> dict:
    if not isinstance(row, dict):
        raise RowFormatError(f"{where}: expected a JSON object")
    for key in SUMMARY_FIELDS:
        if key not in row:
            raise RowFormatError(f"{where}: {key}: missing field")
    images = row["images"]
    if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
        raise RowFormatError(f"{where}: images: expected a non-empty list of paths")
    meta = row["metadata"]
    if not isinstance(meta, dict) or not {"domain", "irrelevant", "summary_ref"} <= set(meta):
        raise RowFormatError(f"{where}: metadata: expected an object with domain, irrelevant, summary_ref")
    return {**row, "images": resolve_images(images, where, base)}


def resolve_images(images: list[str], where: str, base: Path | None) -> list[str]:
    """A row's image paths made absolute (relative ones against ``base``, the rows file's folder), each
    checked to exist and read; RowFileNotFoundError / RowFormatError naming ``where`` otherwise."""
    resolved = []
    for p in images:
        path = Path(p)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise RowFileNotFoundError(f"{where}: images: file not found: {path}")
        # header, size and stream checked now, so a broken file stops the run before the model
        # loads, not mid-training in ms-swift with a PIL error about a BytesIO
        problem = image_problem(path)
        if problem is not None:
            raise RowFormatError(f"{where}: image {path}: cannot be read ({problem})")
        resolved.append(str(path.resolve()))
    return resolved


def json_lines(path: Path) -> list[tuple[int, object]]:
    """(line number, value) of every non-blank line of a JSONL file; a line that is not JSON raises
    RowFormatError naming ``<path>:<line>``."""
    out = []
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise RowFormatError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                     f"{exc.start + 1}); rows files are UTF-8 JSONL") from None
            if not line.strip():
                continue
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise RowFormatError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            except RecursionError:
                raise RowFormatError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
    return out


def load_summary_rows(
    source: str | Path | Iterable[dict], max_rows: int | None = None, mission: str | None = None
) -> list[dict]:
    """Summary rows from a JSONL file (relative image paths resolve against its folder)
    or from row dicts; checked, optionally filtered to one mission id, at most ``max_rows``."""
    rows: list[dict] = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"summary rows file not found: {path}")
        numbered = [(f"{path}:{lineno}", row) for lineno, row in json_lines(path)]
        base = path.parent
    else:
        numbered = [(f"row {i}", row) for i, row in enumerate(source)]
        base = None
    for where, row in numbered:
        if max_rows is not None and len(rows) >= max_rows:
            break
        if mission is not None and isinstance(row, dict) and row.get("mission") != mission:
            continue
        rows.append(_check_summary_row(row, where, base))
    return rows


def load_verdict_rows(
    stage_a_files: Iterable[str | Path], max_rows: int | None = None, mission: str | None = None
) -> list[dict]:
    """Verdict rows built on the fly from Stage-A JSONL files, in file then line order."""
    rows: list[dict] = []
    # the reader evaluation uses too (load_groups): same messages, same refusals (duplicates, empty files)
    for path, lineno, rec in iter_stage_a_files(stage_a_files):
        if max_rows is not None and len(rows) >= max_rows:
            return rows
        row = verdict_row(rec, source=path, lineno=lineno)
        if mission is None or row["mission"] == mission:
            rows.append(row)
    return rows


def _dataset(rows: list[dict], what: str):
    import datasets

    if not rows:
        raise ValueError(f"no {what} rows")
    return datasets.Dataset.from_list(rows)


def summary_dataset(
    rows_jsonl_or_rows: str | Path | Iterable[dict], max_rows: int | None = None, mission: str | None = None
):
    """A ``datasets.Dataset`` of summary rows (see ``load_summary_rows``)."""
    return _dataset(load_summary_rows(rows_jsonl_or_rows, max_rows, mission), "summary")


def verdict_dataset(stage_a_files: Iterable[str | Path], max_rows: int | None = None, mission: str | None = None):
    """A ``datasets.Dataset`` of verdict rows from one or many Stage-A JSONL files."""
    return _dataset(load_verdict_rows(stage_a_files, max_rows, mission), "verdict")
