"""`python -m bbuqc.export` / `bbuqc-export`: merge a LoRA checkpoint into a standalone model (see bbuqc/training/merge_lora.py)."""

from bbuqc.cli import entry_point


def _runner():
    from bbuqc.training.merge_lora import run

    return run


main = entry_point("export", _runner)

if __name__ == "__main__":
    main()
