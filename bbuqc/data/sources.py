"""Where a config's data comes from: the user's files, or the synthetic world built on first use."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bbuqc.runtime.paths import cache_dir


def default_world_dir(seed: int, groups_per_mission: int, shift: tuple[str, ...] = ()) -> Path:
    """Where a synthetic world lives without data.synthetic_dir: <cache>/synth/seed<seed>-g<groups>, a shifted
    one with -shift-<names> (its own folder); `bbuqc-synth` writes to the same place."""
    from bbuqc.data.synth import shift_suffix

    return cache_dir() / "synth" / f"seed{seed}-g{groups_per_mission}{shift_suffix(shift)}"


def synthetic_root(cfg: DictConfig) -> Path:
    """The synthetic world this config means, generated on first use."""
    from bbuqc.data.synth import canonical_shift, ensure_synthetic

    d = cfg.data
    shift = canonical_shift(d.get("synthetic_shift") or ())  # data.synthetic_shift: a shifted test world
    out = Path(d.synthetic_dir) if d.synthetic_dir else default_world_dir(d.synthetic_seed,
                                                                           d.synthetic_groups_per_mission, shift)
    return ensure_synthetic(out, seed=d.synthetic_seed, groups_per_mission=d.synthetic_groups_per_mission, shift=shift)


def images_root(cfg: DictConfig) -> Path:
    """The Stage-A input tree `<root>/<mission name>/<审核通过|审核不通过>/<group>/`."""
    if cfg.data.root:
        return Path(cfg.data.root)
    return synthetic_root(cfg) / "images"


def stage_a_files(cfg: DictConfig) -> list[Path]:
    """Stage-A JSONL inputs of Stage-B (training and evaluation)."""
    if cfg.data.stage_a_jsonl:
        return [Path(p) for p in cfg.data.stage_a_jsonl]
    return sorted((synthetic_root(cfg) / "stage_a").glob("*.jsonl"))


def summary_rows_source(cfg: DictConfig) -> Path:
    return Path(cfg.data.summary_jsonl) if cfg.data.summary_jsonl else synthetic_root(cfg) / "summary_rows.jsonl"
