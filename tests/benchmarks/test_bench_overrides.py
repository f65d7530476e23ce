"""The benchmarks drive the real commands with fixed overrides; those must still compose when the
config tree changes (an experiment group that moved from `+experiment=` to `experiment=` once broke
`make bench` while every test passed)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _bench(name: str):
    sys.path.insert(0, str(BENCH))  # the benchmarks import their `common` module as scripts do
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(("module", "attribute"), [("bench_learning", "OVERRIDES"), ("bench_sweep", "SWEEP")])
def test_benchmark_overrides_compose_and_validate(module, attribute, tmp_path):
    overrides = list(getattr(_bench(module), attribute))
    cfg = compose("train", overrides + [f"hydra.run.dir={tmp_path}"])
    assert problems(cfg, "train") == []
