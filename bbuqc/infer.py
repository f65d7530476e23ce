"""`python -m bbuqc.infer`: Stage-A, per-image summaries for a mission (see bbuqc/stage_a)."""

from bbuqc.cli import entry_point

main = entry_point("bbuqc.stage_a.runner:run")

if __name__ == "__main__":
    main()
