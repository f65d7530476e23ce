"""Held-out validation on several ranks: each rank answers its own share of the rows, and every rank gets all
the answers back in row order (it used to answer every row on every rank: N times the work, same figures)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from bbuqc.training.validation import answers_across_ranks


def _rank(rank: int, world: int, port: int, n_rows: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = [{"i": i} for i in range(n_rows)]
        calls = []

        def answer(share):  # what a generate() pass would see: this rank's rows
            calls.append([r["i"] for r in share])
            return [f"answer {r['i']}" for r in share]

        got = answers_across_ranks(rows, answer)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"answers": got, "calls": calls}, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world, n_rows", [(3, 7)])  # 7 rows: shares of 3, 2 and 2, padded to 3
def test_each_rank_answers_its_share_and_every_rank_gets_all_answers_in_order(tmp_path, world, n_rows):
    mp.spawn(_rank, args=(world, _free_port(), n_rows, str(tmp_path)), nprocs=world, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    expected = [f"answer {i}" for i in range(n_rows)]
    assert all(r["answers"] == expected for r in results)
    shares = [r["calls"][0] for r in results]
    assert all(len(r["calls"]) == 1 for r in results)
    # the same number of rows on every rank (ZeRO-3 generates in lockstep) ...
    assert len({len(share) for share in shares}) == 1 and len(shares[0]) == -(-n_rows // world)
    # ... and every row answered by exactly one rank (the padding aside)
    real = [i for r, share in enumerate(shares) for i in share[: len(range(r, n_rows, world))]]
    assert sorted(real) == list(range(n_rows))


def test_one_process_answers_every_row_itself():
    assert answers_across_ranks([{"i": 1}, {"i": 2}], lambda rows: [r["i"] * 10 for r in rows]) == [10, 20]
