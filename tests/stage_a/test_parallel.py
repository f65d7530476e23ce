"""Multi-GPU data parallelism without GPUs: sharding, merging in order, device assignment.

The end-to-end run (two worker processes on CPU) is @slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage_a_support import N_GROUPS, RECORDS, rec

from bbuqc.data.discovery import Group
from bbuqc.data.records import record_to_line
from bbuqc.stage_a import parallel
from bbuqc.stage_a.parallel import (
    existing_shards,
    merge_records,
    merge_shards,
    shard_groups,
    shard_items,
    shard_path,
)
from bbuqc.stage_a.runner import StageAError
from bbuqc.stage_a.writer import StageAWriter

ORDER = [(r.label, r.group_id) for r in RECORDS]


def lines_of(records) -> bytes:
    return "".join(record_to_line(r) + "\n" for r in records).encode("utf-8")


@pytest.mark.parametrize("n_items,n", [(0, 2), (1, 3), (5, 1), (7, 2), (8, 3), (9, 4)])
def test_shards_cover_every_item_once_in_order(n_items, n):
    items = list(range(n_items))
    shards = shard_items(items, n)
    assert len(shards) == n
    assert sorted(x for s in shards for x in s) == items
    assert all(s == sorted(s) for s in shards)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    groups = [Group(f"g{i}", "pass", Path(f"/x/g{i}"), [Path(f"/x/g{i}/a.jpg")]) for i in items]
    assert [len(s) for s in shard_groups(groups, n)] == [len(s) for s in shards if s]  # empty shards dropped
    with pytest.raises(ValueError):
        shard_items(items, 0)


def test_merge_is_in_discovery_order_without_duplicates_or_done_records():
    shard_a, shard_b = [RECORDS[3], RECORDS[0]], [RECORDS[2], RECORDS[1], RECORDS[0]]
    assert merge_records([shard_a, shard_b], ORDER, done=set()) == RECORDS
    assert merge_records([shard_a, shard_b], ORDER, done={ORDER[0]}) == RECORDS[1:]
    stray = rec(99)
    assert merge_records([[stray], shard_a], ORDER, done=set()) == [RECORDS[0], RECORDS[3], stray]


def test_merge_shards_into_the_output(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(lines_of(RECORDS[:1]))
    shards = [shard_path(out, 0, 2), shard_path(out, 1, 2)]
    assert shards[0].name == "out.jsonl.shard-0-of-2.jsonl"
    shards[0].write_bytes(lines_of([RECORDS[0], RECORDS[2]]))  # RECORDS[0]: already merged by a crashed parent
    shards[1].write_bytes(lines_of([RECORDS[1], RECORDS[3]])[:-7])  # a worker killed mid-line
    shards[1].with_name(shards[1].name + ".summary.json").write_text("{}")
    assert existing_shards(out) == shards
    with StageAWriter(out) as writer:
        assert merge_shards(writer, shards, ORDER) == 2
    assert out.read_bytes() == lines_of([RECORDS[0], RECORDS[1], RECORDS[2]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_existing_shards_with_glob_characters_in_the_name(tmp_path):
    out = tmp_path / "run[1]*.jsonl"
    shard_path(out, 0, 1).write_text("")
    (tmp_path / "run1x.jsonl.shard-0-of-1.jsonl").write_text("")
    assert existing_shards(out) == [shard_path(out, 0, 1)]


def test_devices(monkeypatch):
    assert parallel._devices(3, "cpu") == [None, None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5,7")
    assert parallel._devices(2, "cuda") == ["3", "5"]
    with pytest.raises(StageAError, match=r"infer.num_gpus=4: only 3 CUDA device\(s\) visible"):
        parallel._devices(4, "cuda")
    env = parallel._worker_env("5", 2, "cuda")
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert str(Path(parallel.__file__).resolve().parents[2]) in env["PYTHONPATH"].split(":")


@pytest.mark.slow
def test_two_cpu_workers_write_what_one_process_writes(tmp_path, make_cfg, chatty_model, backend):
    """infer.num_gpus=2 on CPU: two worker processes, shards merged in discovery order."""
    from bbuqc.stage_a.runner import run_stage_a

    single = tmp_path / "single.jsonl"
    run_stage_a(make_cfg(single, model=chatty_model, batch_size=4), backend=backend)
    out = tmp_path / "parallel.jsonl"
    summary = run_stage_a(make_cfg(out, model=chatty_model, batch_size=4, num_gpus=2))
    assert summary["written"] == N_GROUPS and summary["failed"] == []
    assert out.read_bytes() == single.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if "parallel" in p.name) == [
        "parallel.jsonl", "parallel.jsonl.meta.json", "parallel.jsonl.summary.json"]
    assert json.loads(Path(f"{out}.summary.json").read_text())["num_gpus"] == 2
