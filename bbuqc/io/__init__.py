"""Files bbuqc reads and writes, one implementation each.

- ``atomic``: whole-or-nothing writes (metrics, reports, run summaries, job records);
- ``jsonl``: the one resumable JSONL writer (append, fsync, lock, tail repair, settings sidecar),
  for Stage-A outputs and evaluation predictions, and the JSONL readers;
- ``run_folder``: the name and the one reader of every file a training run writes;
- ``images``: the one image loader (every Pillow mode, EXIF orientation, downscale while decoding).

Import-light: Pillow is imported only when an image is read.
"""
