"""W&B, written and read back.

- ``runs``: the W&B run of every entry point (offline by default, named after the overrides,
  grouped by sweep, always finished);
- ``wandb_records``: reads an offline run file (``run-*.wandb``) back, with no server;
- ``lineage``: a training run's checkpoints as W&B artifacts, and the evaluation that uses one.

wandb itself is imported only when a run is opened.
"""
