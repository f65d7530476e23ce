"""Stage-B evaluation: a verdict model judges held-out Stage-A groups (docs/evaluate.md).

- ``runner``: the runner behind ``python -m bbuqc.evaluate`` (inputs -> answers -> metrics -> report)
- ``generate``: the ``VerdictModel`` protocol and the transformers (+ PEFT adapter) implementation
- ``metrics``: pure functions of prediction records (majority vote, business metrics)
- ``outputs``: ``predictions.jsonl`` (resumable), ``metrics.json``, ``report.md``

Importing this package does not import torch or transformers.
"""
