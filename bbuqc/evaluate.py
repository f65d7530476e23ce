"""`python -m bbuqc.evaluate` / `bbuqc-evaluate`: Stage-B judgement of held-out groups (see bbuqc/stage_b)."""

from bbuqc.cli import entry_point


def _runner():
    from bbuqc.stage_b.runner import run

    return run


main = entry_point("evaluate", _runner)

if __name__ == "__main__":
    main()
