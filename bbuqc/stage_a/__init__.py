"""Stage-A runner: per-image summaries for a mission, batched, streamed, resumable (docs/stage_a.md).

- ``runner``: ``run(cfg)`` (the ``python -m bbuqc.infer`` entry) and the batching loop;
- ``backends``: HF batched generation (left padding) and vLLM (imported lazily);
- ``writer``: Stage-A records on the shared resumable JSONL writer (bbuqc/io/jsonl.py);
- ``infer.workers > 1``: the Ray Data path (``StageAWorker`` in ``runner``, the cluster and the ordered
  map in bbuqc/models/ray_data.py).

Nothing heavy is imported here: torch and transformers load only when a model does.
"""
