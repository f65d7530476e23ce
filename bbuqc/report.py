"""`python -m bbuqc.report <sweep folder>`: compare the jobs of a sweep (see bbuqc/sweep/comparison.py and the modules it names).

Writes report.md, report.csv and PNG plots into the folder. Offline; no W&B server needed.
Ranks the jobs by a held-out metric (`--metric`, default the jobs' `train.select_by`) at their
best checkpoints, under the jobs' `train.select_constraint` (`--constraint`) by the rule that chose
those checkpoints. Exit status 2, with one `error:` line and nothing written, when the folder is
missing, holds no Hydra job folders or no finished job, `--metric` names a metric no job logged, or
`--constraint` does not parse or names one; also (one line, exit 2) when report.md cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bbuqc.report",
        description="Compare the jobs of a Hydra sweep: report.md, report.csv and PNG plots in the folder.",
    )
    parser.add_argument("folder", type=Path, help="a sweep folder, e.g. multirun/2026-01-31/12-00-00")
    parser.add_argument("--metric", default=None,
                        help="the held-out metric to rank by, at each job's best checkpoint (e.g. val/false_pass_rate); "
                             "default: the sweep's objective, train.select_by of the jobs")
    parser.add_argument("--constraint", default=None,
                        help="rank the jobs that meet it first, then the others closest first, e.g. "
                             "'val/false_pass_rate<=0.05'; default: the jobs' train.select_constraint; none: no constraint")
    args = parser.parse_args(argv)

    from bbuqc.sweep.comparison import ReportError, write_report

    try:
        written = write_report(args.folder, args.metric, args.constraint)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a report file that cannot be written (read-only folder, a folder in its place)
        print(f"error: {err.filename}: cannot write the report: {err.strerror or err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
