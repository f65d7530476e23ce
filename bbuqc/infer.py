"""`python -m bbuqc.infer` / `bbuqc-infer`: Stage-A, per-image summaries for a mission (see bbuqc/stage_a)."""

from bbuqc.cli import entry_point


def _runner():
    from bbuqc.stage_a.runner import run

    return run


main = entry_point("infer", _runner)

if __name__ == "__main__":
    main()
