"""What every benchmark shares: where figures go, and timing whole commands."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "outputs" / "bench"


def write_result(name: str, result: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{name}: {json.dumps(result, ensure_ascii=False)}")
    return path


def wall_time(cmd: list[str], env: dict | None = None, cwd: Path = REPO) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, check=True, capture_output=True)
    return time.perf_counter() - start


def median_wall(cmd: list[str], runs: int, **kw) -> float:
    return statistics.median(wall_time(cmd, **kw) for _ in range(runs))
