"""Stage-A runner: per-image summaries for a mission, batched, streamed, resumable (docs/stage_a.md).

- ``runner``: ``run(cfg)`` (the ``python -m bbuqc.infer`` entry) and the batching loop;
- ``backends``: HF batched generation (left padding) and vLLM (imported lazily);
- ``writer``: the streaming JSONL writer (one complete line per group, fsync, resume, repair);
- ``parallel``: one worker process per GPU (``infer.num_gpus``), shards merged in order.

Nothing heavy is imported here: torch and transformers load only when a model does.
"""
