"""Rebuild ``summary_reward_cases.jsonl`` here from the full shared golden file.

    python tests/rewards/golden/make_subset.py ../shared/golden/summary_reward_cases.jsonl

The subset covers every (reward id, expected value) pair of the full file and
every kind of row (domain, irrelevant, chat special tokens, non-str
completion), picked greedily in file order, then topped up to ``SIZE`` cases
with a fixed-seed sample. Lines are copied byte for byte, in file order.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SIZE = 100
HERE = Path(__file__).resolve().parent


def features(case: dict) -> set:
    meta = case["metadata"] if isinstance(case["metadata"], dict) else {}
    completion = case["completion"]
    found = {("value", rid, round(value, 6)) for rid, value in case["expected"].items()}
    found.add(("domain", str(meta.get("domain")), bool(meta.get("irrelevant"))))
    found.add(("completion type", type(completion).__name__))
    if isinstance(completion, str):
        found |= {("token", t) for t in ("<|endoftext|>", "<|im_end|>", "<|eot_id|>") if t in completion}
    return found


def select(cases: list[dict]) -> list[int]:
    chosen: list[int] = []
    covered: set = set()
    for i, case in enumerate(cases):
        new = features(case) - covered
        if new:
            chosen.append(i)
            covered |= new
    rest = [i for i in range(len(cases)) if i not in set(chosen)]
    chosen += random.Random(0).sample(rest, max(0, SIZE - len(chosen)))
    return sorted(chosen)


def main(source: str) -> None:
    lines = [line for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip()]
    subset = [lines[i] for i in select([json.loads(line) for line in lines])]
    out = HERE / "summary_reward_cases.jsonl"
    out.write_text("".join(line + "\n" for line in subset), encoding="utf-8")
    print(f"{len(subset)} of {len(lines)} cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
