"""GRPO inputs on disk: the rows ms-swift trains on, and CHORD's SFT rows, in the run folder.

Rows are built with HF `datasets` by bbuqc.data.rows and written as JSONL beside the run,
so every run keeps the exact data it saw.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bbuqc.data.sources import stage_a_files, summary_rows_source


def source_dataset(cfg: DictConfig):
    """The task's rows as a `datasets.Dataset`."""
    from bbuqc.data.rows import summary_dataset, verdict_dataset

    if cfg.task.name == "summary":
        return summary_dataset(summary_rows_source(cfg), max_rows=cfg.data.max_rows)
    return verdict_dataset(stage_a_files(cfg), max_rows=cfg.data.max_rows)


def prepare_datasets(cfg: DictConfig, out_dir: Path) -> tuple[Path, Path | None]:
    from bbuqc.data.rows import sft_messages

    ds = source_dataset(cfg)  # reads and checks every input before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    train = out_dir / "train.jsonl"
    ds.to_json(str(train), force_ascii=False, lines=True)
    if not cfg.chord.enabled:
        return train, None
    # CHORD's expert data: the same rows, answered with their reference outputs
    sft = ds.map(lambda row: {"messages": sft_messages(row)})
    sft = sft.select_columns([c for c in ("messages", "images") if c in sft.column_names])
    sft_path = out_dir / "chord_sft.jsonl"
    sft.to_json(str(sft_path), force_ascii=False, lines=True)
    return train, sft_path
