"""GRPO inputs on disk: the rows ms-swift trains on, and CHORD's SFT rows, in the run folder.

Rows are built with HF `datasets` by bbuqc.data.rows and written as JSONL beside the run,
so every run keeps the exact data it saw.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bbuqc.paths import cache_dir


def synthetic_root(cfg: DictConfig) -> Path:
    """The synthetic world this config means, generated on first use."""
    from bbuqc.data.synth import ensure_synthetic

    d = cfg.data
    out = Path(d.synthetic_dir) if d.synthetic_dir else cache_dir() / "synth" / f"seed{d.synthetic_seed}-g{d.synthetic_groups_per_mission}"
    return ensure_synthetic(out, seed=d.synthetic_seed, groups_per_mission=d.synthetic_groups_per_mission)


def source_dataset(cfg: DictConfig):
    """The task's rows as a `datasets.Dataset`."""
    from bbuqc.data.rows import summary_dataset, verdict_dataset

    d = cfg.data
    if cfg.task.name == "summary":
        rows = d.summary_jsonl or synthetic_root(cfg) / "summary_rows.jsonl"
        return summary_dataset(rows, max_rows=d.max_rows)
    files = list(d.stage_a_jsonl) or sorted((synthetic_root(cfg) / "stage_a").glob("*.jsonl"))
    return verdict_dataset(files, max_rows=d.max_rows)


def prepare_datasets(cfg: DictConfig, out_dir: Path) -> tuple[Path, Path | None]:
    from bbuqc.data.rows import sft_messages

    out_dir.mkdir(parents=True, exist_ok=True)
    ds = source_dataset(cfg)
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
