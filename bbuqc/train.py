"""`python -m bbuqc.train` / `bbuqc-train`: GRPO or SFT with ms-swift (see bbuqc/training)."""

from bbuqc.cli import entry_point


def _runner():
    from bbuqc.training.runner import run

    return run


main = entry_point("train", _runner)

if __name__ == "__main__":
    main()
