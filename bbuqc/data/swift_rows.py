"""Your ms-swift dataset as training data (`data.swift_jsonl`): ms-swift's standard rows, as they are.

A row is ms-swift's "messages" format (its docs, "Custom Dataset")::

    {"messages": [{"role": "system", "content": "…"},
                  {"role": "user", "content": "<image>这张BBU安装照片合格吗？"},
                  {"role": "assistant", "content": "通过\\n理由: …"}],
     "images": ["imgs/a.jpg"], "group_label": "通过", "label": "pass"}

- ``messages``: system (optional), user and assistant turns, each ``content`` a string. A last assistant turn
  is the row's reference answer: SFT's target; GRPO drops it before sampling, as ms-swift does
  (``remove_response``).
- ``images``: paths, absolute or relative to the file's folder, one per ``<image>`` tag, in order. Text rows
  (the verdict task) have none.
- Every other column reaches the rewards as a keyword argument (ms-swift's and TRL's convention), so every
  row must carry the columns the run's rewards read (each reward declares them: ``RewardSpec.reads``), and
  those held-out validation reads when it runs on these rows. A row that lacks one is refused before any
  model loads, with one line naming the file and line, the column and who reads it.

The rows are checked twice with the same code: their shape and columns while the config is validated (pure
Python, so a bad file is refused before the run folder exists), then again with every image opened while
the run's data is prepared (:func:`swift_dataset`, HF ``datasets``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from .rows import RowFormatError, json_lines, resolve_images

ROLES = ("system", "user", "assistant")
IMAGE_TAG = "<image>"


@dataclass(frozen=True)
class Reader:
    """Something in the run that reads row columns: ``who`` in words (``reward verdict.label``), and the
    columns (``metadata.domain``: the key ``domain`` of the object column ``metadata``)."""

    who: str
    columns: tuple[str, ...]


def validation_reads(task: str) -> tuple[str, ...]:
    """What bbuqc's held-out validation (bbuqc/training/validation.py) reads of a row: the verdict figures
    need the human's label and the group's summaries; the summary figures are every summary.* reward,
    on the Stage-A prompt of the row's mission."""
    if task == "verdict":
        return ("group_label", "summaries")
    from bbuqc.rewards.summary.scorers import SUMMARY_READS

    return ("mission", *SUMMARY_READS)


def run_readers(cfg: DictConfig, reward_ids: Iterable[str]) -> list[Reader]:
    """Who reads the training rows of this run: GRPO's rewards (the ids of ``reward.weights``, plug-ins included),
    and held-out validation when it splits these rows (``train.eval_steps`` with ``data.val_fraction``)."""
    from bbuqc.rewards import REGISTRY

    readers = []
    if cfg.algo.name == "grpo":
        for rid in reward_ids:
            if rid in REGISTRY and REGISTRY[rid].spec.reads:  # an unknown id is check_reward's line
                readers.append(Reader(f"reward {rid}", REGISTRY[rid].spec.reads))
    d = cfg.data
    explicit = d.val_stage_a_jsonl if cfg.task.name == "verdict" else d.val_summary_jsonl  # bbuqc's own rows
    if cfg.train.eval_steps and d.val_fraction > 0 and not explicit:
        readers.append(Reader("validation (train.eval_steps)", validation_reads(cfg.task.name)))
    return readers


def needs_answer(cfg: DictConfig) -> str | None:
    """Who needs each row's reference answer (a last assistant turn, or a ``solution`` column), if anyone."""
    if cfg.algo.name == "sft":
        return "algo=sft"
    return "chord=on" if cfg.chord.enabled else None


def lookup(row: dict, column: str) -> object:
    """The row's value of ``column`` (``a.b``: key ``b`` of the object in column ``a``); None when absent.
    (Also how the sweep report reads a job's saved config: any nested dict by a dotted path.)"""
    value: object = row
    for key in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def answer(row: dict) -> str | None:
    """The row's reference answer: its last assistant turn, else its ``solution`` column; None without one."""
    messages = row.get("messages") or []
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        text = last.get("content")
    else:
        text = row.get("solution")
    return text if isinstance(text, str) and text.strip() else None


def shape_problem(row: object, multimodal: bool) -> str | None:
    """Why ``row`` is not an ms-swift standard row this model can train on (``<field>: <problem>``), or None."""
    if not isinstance(row, dict):
        return "expected a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: missing; expected a list of {role, content} turns (ms-swift's standard format)"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            return f"messages[{i}]: expected an object with role {', '.join(ROLES)}"
        if not isinstance(msg.get("content"), str):
            return f"messages[{i}].content: expected a string (images go in the images column, as <image> tags here)"
    if not any(msg["role"] == "user" for msg in messages):
        return "messages: no user turn"
    images = row.get("images")
    if images is None:
        images = []
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        return "images: expected a list of image paths"
    tags = sum(msg["content"].count(IMAGE_TAG) for msg in messages)
    if tags != len(images):
        # ms-swift puts the images at the tags in order: one without a tag is never shown to the model
        return f"messages: {tags} {IMAGE_TAG} tags for {len(images)} images; ms-swift needs one tag per image"
    if images and not multimodal:
        return "images: the model is text-only (model.multimodal=false); rows with images need a VL model"
    return None


def row_problems(files: Iterable[str | Path], readers: list[Reader], *, multimodal: bool,
                 answer_for: str | None = None) -> list[str]:
    """Every problem of the rows files, one line each (empty: they train): a malformed row stops its file
    (``<file>:<line>: <field>: <problem>``); a column a reader needs is named at the first row that lacks it,
    with how many more do (``<file>:<line>: label: missing column, which reward verdict.exact reads``)."""
    problems = []
    for file in files:
        path = Path(file)
        try:
            numbered = json_lines(path)
        except RowFormatError as exc:
            problems.append(str(exc))
            continue
        problems += _file_problems(path, numbered, readers, multimodal, answer_for)
    return problems


def _file_problems(path: Path, numbered: list[tuple[int, dict]], readers: list[Reader], multimodal: bool,
                   answer_for: str | None) -> list[str]:
    """:func:`row_problems` of one file's parsed ``(line, row)`` pairs."""
    if not numbered:
        return [f"{path}: empty file: no rows"]
    problems = []
    first: dict[tuple[str, str], int] = {}  # (who, column) -> first line that lacks it
    lacking: dict[tuple[str, str], int] = {}
    for lineno, row in numbered:
        problem = shape_problem(row, multimodal)
        if problem is not None:
            problems.append(f"{path}:{lineno}: {problem}")
            break
        if answer_for is not None and answer(row) is None:
            problems.append(f"{path}:{lineno}: messages: no reference answer (a last assistant turn, or a "
                            f"solution column), which {answer_for} trains on")
            break
        for reader in readers:
            for column in reader.columns:
                if lookup(row, column) is None:
                    key = (reader.who, column)
                    first.setdefault(key, lineno)
                    lacking[key] = lacking.get(key, 0) + 1
    for (who, column), lineno in first.items():
        more = lacking[(who, column)] - 1
        tail = f" ({more} more rows lack it)" if more else ""
        problems.append(f"{path}:{lineno}: {column}: missing column, which {who} reads{tail}")
    return problems


def config_problems(cfg: DictConfig, reward_ids: Iterable[str]) -> list[str]:
    """data.swift_jsonl in a training config: the user's files (not the synthetic world's), alone, each row in
    ms-swift's format with every column the run's rewards (``reward_ids``) and validation read. Pure Python,
    run while the config is validated (bbuqc/training/checks.py), so a bad row is refused before the run
    folder exists."""
    d = cfg.data
    files = [str(f) for f in d.swift_jsonl]
    field = f"data.swift_jsonl=[{','.join(files)}]"
    if d.source != "files":
        return [f"{field}: your own rows need data.source=files (data.source={d.source} is bbuqc's synthetic world)"]
    other = "data.summary_jsonl" if d.summary_jsonl else "data.stage_a_jsonl" if d.stage_a_jsonl else None
    if other:
        return [f"{field}: {other} is given too; the training rows come from one of them"]
    if not all(Path(f).is_file() for f in files):
        return []  # check_data names the missing file
    return row_problems(files, run_readers(cfg, reward_ids), multimodal=cfg.model.multimodal,
                        answer_for=needs_answer(cfg))


def load_swift_rows(files: Iterable[str | Path], max_rows: int | None = None, readers: list[Reader] = (),
                    *, multimodal: bool = True, answer_for: str | None = None) -> list[dict]:
    """The rows of ms-swift JSONL files, in file then line order, at most ``max_rows``: checked as
    :func:`row_problems` checks them (RowFormatError with its first line), every image made absolute and
    opened (``<file>:<line>: images: file not found: …``)."""
    files, readers = [Path(f) for f in files], list(readers)
    parsed = []
    for path in files:  # each file read once, and checked in file order (the first problem raised)
        numbered = json_lines(path)
        problems = _file_problems(path, numbered, readers, multimodal, answer_for)
        if problems:
            raise RowFormatError(problems[0])
        parsed.append((path, numbered))
    rows: list[dict] = []
    for path, numbered in parsed:
        for lineno, row in numbered:
            if max_rows is not None and len(rows) >= max_rows:
                return rows
            if row.get("images"):
                row = {**row, "images": resolve_images(row["images"], f"{path}:{lineno}", path.parent)}
            rows.append(row)
    return rows


def swift_dataset(files: Iterable[str | Path], max_rows: int | None = None, readers: list[Reader] = (),
                  *, multimodal: bool = True, answer_for: str | None = None):
    """A ``datasets.Dataset`` of ms-swift rows (see :func:`load_swift_rows`)."""
    import datasets

    files = [Path(f) for f in files]
    rows = load_swift_rows(files, max_rows, readers, multimodal=multimodal, answer_for=answer_for)
    if not rows:
        raise RowFormatError(f"{', '.join(map(str, files))}: no rows")
    try:
        return datasets.Dataset.from_list(rows)
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError are these
        raise RowFormatError(f"{', '.join(map(str, files))}: a column holds values of different types in "
                             f"different rows (Arrow: {str(exc).splitlines()[0]}); give each column one type") from None
