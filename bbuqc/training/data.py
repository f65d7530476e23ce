"""Training inputs on disk: the rows ms-swift trains on, CHORD's SFT rows and the held-out validation
rows, in the run folder (`data/`), so every run keeps the exact data it saw.

Rows are built with HF `datasets` by bbuqc.data.rows. The validation set is never trained on: explicit
files (`data.val_stage_a_jsonl` / `data.val_summary_jsonl`, which must share no group with the training
data), or `data.val_fraction` of the groups, chosen by a hash of the group id, so the split is the same
on every machine and for every run over the same groups, whatever their order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.data.sources import stage_a_files, summary_rows_source
from bbuqc.errors import InputError

log = logging.getLogger(__name__)


class TrainingDataError(InputError):
    pass


@dataclass(frozen=True)
class TrainingData:
    train: Path  # rows for ms-swift (GRPO: prompts + reward columns; SFT: + the assistant answer)
    validation: Path | None  # held-out rows (bbuqc's validation callback reads them)
    chord_sft: Path | None = None


def group_of(row: dict) -> str:
    """The group a row belongs to: verdict rows carry it; a summary row's image sits in its group folder. An
    ms-swift row (data.swift_jsonl: no bbuqc ``mission``) without a ``group_id`` column is a group of its own:
    its images may all share one folder."""
    if row.get("group_id"):
        return f"{row.get('mission') or ''}/{row['group_id']}"
    if not row.get("mission"):
        own = row["images"][0] if row.get("images") else json.dumps(row["messages"], ensure_ascii=False)
        return f"row/{hashlib.sha1(own.encode()).hexdigest()}"
    return f"{row.get('mission', '')}/{Path(row['images'][0]).parent.name}"


def split_by_group(rows, fraction: float) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): round(fraction x groups) groups (at least one) go to
    validation, the ones whose sha1(group id) is smallest."""
    groups = sorted({group_of(r) for r in rows})
    n_val = max(1, round(fraction * len(groups)))
    held_out = set(sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest())[:n_val])
    train, val = [], []
    for i, row in enumerate(rows):
        (val if group_of(row) in held_out else train).append(i)
    return train, val


def _rows(cfg: DictConfig, *, validation: bool):
    from bbuqc.data.rows import summary_dataset, verdict_dataset

    d = cfg.data
    if d.swift_jsonl and not validation:  # your ms-swift rows, either task (validation: val_fraction or bbuqc rows)
        from bbuqc.config.validate import reward_weights
        from bbuqc.data.swift_rows import needs_answer, run_readers, swift_dataset

        return swift_dataset(d.swift_jsonl, d.max_rows, run_readers(cfg, reward_weights(cfg)),
                             multimodal=cfg.model.multimodal, answer_for=needs_answer(cfg))
    if cfg.task.name == "summary":
        source = d.val_summary_jsonl if validation else summary_rows_source(cfg)
        return summary_dataset(source, max_rows=None if validation else d.max_rows)
    files = d.val_stage_a_jsonl if validation else stage_a_files(cfg)
    return verdict_dataset(files, max_rows=None if validation else d.max_rows)


def explicit_validation(cfg: DictConfig) -> bool:
    return bool(cfg.data.val_stage_a_jsonl if cfg.task.name == "verdict" else cfg.data.val_summary_jsonl)


def source_datasets(cfg: DictConfig):
    """(training rows, validation rows or None) as `datasets.Dataset`s; every input read and checked."""
    train = _rows(cfg, validation=False)
    if explicit_validation(cfg):
        val = _rows(cfg, validation=True)
        shared = sorted({group_of(r) for r in train} & {group_of(r) for r in val})
        if shared:
            field = "data.val_stage_a_jsonl" if cfg.task.name == "verdict" else "data.val_summary_jsonl"
            raise TrainingDataError(
                f"{field}: {len(shared)} validation groups are also in the training data "
                f"(e.g. {', '.join(shared[:3])}); validation must be held out"
            )
        return train, val
    if cfg.data.val_fraction > 0:
        train_idx, val_idx = split_by_group(train, cfg.data.val_fraction)
        n_groups = len({group_of(r) for r in train})
        if not train_idx:
            raise TrainingDataError(
                f"data.val_fraction={cfg.data.val_fraction}: all {n_groups} groups went to validation; "
                "nothing is left to train on"
            )
        return train.select(train_idx), train.select(val_idx)
    return train, None


def repeat_rare_facts(train, repeat: int, share: float):
    """``train`` with each summary row whose reference states a rare fact (one stated by fewer than ``share`` of
    the rows: :func:`bbuqc.rewards.summary.facts.states_rare_fact`) ``repeat`` times; the number of such rows.
    Rows without a readable reference (irrelevant images, a reference that is not JSON) state no fact."""
    from bbuqc.data.swift_rows import answer
    from bbuqc.protocol import summary_object
    from bbuqc.rewards.summary.facts import states_rare_fact

    has_rare = states_rare_fact([summary_object(answer(row) or "") for row in train], share)
    n_rare = sum(has_rare)
    if repeat == 1 or not n_rare:
        return train, n_rare
    return train.select([i for i, r in enumerate(has_rare) for _ in range(repeat if r else 1)]), n_rare


def check_references(ds, cfg: DictConfig) -> None:
    """SFT learns the rows' reference outputs: every row needs one."""
    from bbuqc.data.swift_rows import answer

    for i, row in enumerate(ds):
        if answer(row) is None:
            raise TrainingDataError(
                f"algo=sft: training row {i} (task={cfg.task.name}) has no reference output ('solution'); "
                "SFT needs one per row"
            )


def prepare_datasets(cfg: DictConfig, out_dir: Path) -> TrainingData:
    from bbuqc.data.rows import prompt_messages, sft_messages
    from bbuqc.io.images import DEFAULT_MAX_PIXELS, rows_with_training_images
    from bbuqc.models.generation import pixel_bounds

    train, val = source_datasets(cfg)  # reads and checks every input before anything is written
    sft = cfg.algo.name == "sft"
    if sft:
        check_references(train, cfg)
    repeat = cfg.data.rare_fact_repeat
    if cfg.task.name == "summary" and repeat > 1:
        train, n_rare = repeat_rare_facts(train, repeat, cfg.data.rare_fact_share)
        log.info("data.rare_fact_repeat=%d: %d training images state a rare fact and are trained on %d times "
                 "(%d rows)", repeat, n_rare, repeat, len(train))
    out_dir.mkdir(parents=True, exist_ok=True)
    # ms-swift opens the images itself: any it would read differently from bbuqc's loader (16-bit,
    # transparency, EXIF rotation, oversize) is handed over as a PNG of what Stage-A sees
    max_pixels = pixel_bounds().get("max_pixels", DEFAULT_MAX_PIXELS)
    train = rows_with_training_images(train, out_dir / "images", max_pixels=max_pixels)
    val_path = None
    if val is not None:
        val_path = out_dir / "validation.jsonl"
        val = val.map(lambda row: {"messages": prompt_messages(row)})  # validation answers the prompt alone
        val.to_json(str(val_path), force_ascii=False, lines=True)
    if sft or cfg.chord.enabled:
        # the same rows answered with their reference outputs (SFT's targets, CHORD's expert data)
        answered = train.map(lambda row: {"messages": sft_messages(row)})
        answered = answered.select_columns([c for c in ("messages", "images") if c in answered.column_names])
    train_path = out_dir / "train.jsonl"
    (answered if sft else train).to_json(str(train_path), force_ascii=False, lines=True)
    if sft or not cfg.chord.enabled:
        return TrainingData(train_path, val_path)
    sft_path = out_dir / "chord_sft.jsonl"
    answered.to_json(str(sft_path), force_ascii=False, lines=True)
    return TrainingData(train_path, val_path, sft_path)
