"""``python -m bbuqc.synth``: build (or reuse) the synthetic world and say what is in it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _default_out(seed: int, groups: int, shift: tuple[str, ...] = ()) -> Path | None:
    """Where ``data.synthetic_seed/groups_per_mission/shift`` put the world (bbuqc.data.sources)."""
    try:
        from bbuqc.data.sources import default_world_dir
    except ImportError:
        return None
    return default_world_dir(seed, groups, shift)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bbuqc.synth", description=__doc__)
    from bbuqc.data.synth.shift import SHIFTS, canonical_shift

    parser.add_argument(
        "--out", type=Path,
        help="output folder (default: <cache>/synth/seed<seed>-g<groups>[-shift-<names>], where data.* puts it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups-per-mission", type=int, default=6)
    parser.add_argument(
        "--shift", nargs="+", action="extend", default=[], metavar="NAME", choices=list(SHIFTS),
        help=f"a shifted test world (data.synthetic_shift; docs/data.md): one or more of {', '.join(SHIFTS)}",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching world exists")
    args = parser.parse_args(argv)
    if args.groups_per_mission < 1:
        parser.error("--groups-per-mission must be >= 1")
    shift = canonical_shift(args.shift)
    out = args.out or _default_out(args.seed, args.groups_per_mission, shift)
    if out is None:
        parser.error("--out is required (no default cache folder is available)")

    from bbuqc.data.synth import SynthManifest, ensure_synthetic, generate

    start = time.perf_counter()
    try:
        if args.force:
            root = generate(out, args.seed, args.groups_per_mission, shift).root
        else:
            root = ensure_synthetic(out, args.seed, args.groups_per_mission, shift)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    manifest = SynthManifest.load(root)
    totals = manifest.totals
    shifted = f", shift {'+'.join(manifest.shift)}" if manifest.shift else ""
    print(f"synthetic world (seed {manifest.seed}, {manifest.groups_per_mission} groups per mission{shifted}) at {root}")
    print(
        f"  {totals['groups']} groups ({totals['pass']} pass, {totals['fail']} fail), "
        f"{totals['images']} images ({totals['irrelevant_images']} irrelevant), ready in {elapsed:.2f}s"
    )
    for mid, info in manifest.missions.items():
        print(
            f"  {mid:<13} {info['name']}: {info['groups']} groups "
            f"({info['pass']} pass / {info['fail']} fail), {info['images']} images"
        )
    print(f"  images:        {manifest.images_dir}")
    print(f"  stage_a:       {manifest.root / 'stage_a'}/<mission id>.jsonl")
    print(f"  summary rows:  {manifest.summary_rows}")
    print(f"  verdict rows:  {manifest.verdict_rows}")
    print(f"  manifest:      {manifest.root / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
