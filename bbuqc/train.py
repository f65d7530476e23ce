"""`python -m bbuqc.train`: GRPO post-training with ms-swift (see bbuqc/grpo)."""

from bbuqc.cli import entry_point

main = entry_point("bbuqc.grpo.runner:run")

if __name__ == "__main__":
    main()
