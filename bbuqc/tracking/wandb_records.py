"""Read an offline W&B run (`run-*.wandb`) back, with no server.

wandb >= 0.2x writes offline runs from its Go core and no longer ships a Python reader.
The file is a LevelDB-style log (32 KiB blocks of checksummed chunks) after a 7-byte
`:W&B` header, each record a `wandb_internal_pb2.Record`; this reads that format.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = 7  # b":W&B" + magic (2 bytes) + version (1 byte)
BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32 (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (missing :W&B header)")
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += CHUNK_HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:  # zero padding at the end of a file still being written
            break


def records(path: str | Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in _payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


@dataclass
class WandbRun:
    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    exit_code: int | None = None  # None: the run was never finished
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one {metric: value} per logged step
    summary: dict[str, Any] = field(default_factory=dict)


def read_run(path: str | Path) -> WandbRun:
    """Identity, config, history, summary and exit code of one run file.

    A record cut off by a killed process ends the read; what came before it is kept.
    """
    run = WandbRun(path=Path(path))
    stream = records(path)
    while True:
        try:
            record = next(stream)
        except StopIteration:
            break
        except Exception:  # noqa: BLE001 - a truncated or corrupt tail
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group = r.run_id, r.display_name, r.run_group
            run.job_type, run.project = r.job_type, r.project
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def _items(items: Any) -> dict[str, Any]:
    return {(i.key or "/".join(i.nested_key)): _json_value(i.value_json) for i in items}


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def find_run_files(folder: str | Path) -> list[Path]:
    """W&B run files (offline or synced) below `folder`, oldest first."""
    return sorted(Path(folder).glob("**/*run-*/run-*.wandb"), key=lambda p: p.parent.name)
