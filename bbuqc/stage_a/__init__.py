"""Stage-A runner: per-image summaries for a mission, batched, streamed, resumable (docs/stage_a.md).

- ``runner``: ``run(cfg)`` (the ``python -m bbuqc.infer`` entry): inputs, output and resume identity,
  the run summary;
- ``batches``: the batching loop (batches across groups, retries, records in order);
- ``backends``: HF batched generation (left padding) and vLLM (imported lazily), ``backend_for``;
- ``writer``: Stage-A records on the shared resumable JSONL writer (bbuqc/io/jsonl.py);
- ``progress``: the progress bars and warning lines;
- ``workers``: ``infer.workers > 1``, the Ray actor ``StageAWorker`` (the cluster and the ordered map are
  bbuqc/runtime/ray_pool.py's, shared with evaluation).

Nothing heavy is imported here: torch and transformers load only when a model does.
"""
