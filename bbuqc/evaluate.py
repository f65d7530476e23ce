"""`python -m bbuqc.evaluate`: Stage-B judgement of held-out groups (see bbuqc/stage_b)."""

from bbuqc.cli import entry_point

main = entry_point("bbuqc.stage_b.evaluate:run")

if __name__ == "__main__":
    main()
