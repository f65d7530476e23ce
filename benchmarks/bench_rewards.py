"""Cost of the summary_full reward stack against a plain JSON pass.

The trainer calls each of the 12 rewards separately on the same batch. This
times that (caches cleared before each repetition, so the first reward pays
for the parse) against one pass that only ``json.loads`` the last line of
every completion and every ``summary_ref``, in alternating rounds (at least
5), and writes ``outputs/bench/rewards.json``: the ratio of the medians, the
round-by-round ratios (median, min, max), each side's median and min-max,
and the load average. Goal: stack / baseline <= 3.0.

    python benchmarks/bench_rewards.py [--n 1500] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbuqc.config.reward_sets import reward_set  # noqa: E402
from bbuqc.rewards import clear_caches, get_reward, pop_error_metrics  # noqa: E402

GOAL = 3.0
# CPU time of this process: on a shared machine, wall time mostly measures
# the neighbours. Both sides are timed with the same clock.
CLOCK = time.process_time
GROUP = 4  # completions per prompt, as GRPO's num_generations

BBU_CATEGORIES = {
    "BBU设备": {
        "品牌": ["华为", "中兴", "爱立信"],
        "可见性": ["完整", "部分"],
        "挡风板需求": ["免装", "空间充足需安装"],
    },
    "挡风板": {"品牌": ["华为", "中兴"], "安装方向": ["方向正确", "方向错误"]},
    "BBU安装螺丝": {"符合性": ["符合", "不符合"], "可见性": ["完整", "部分"]},
    "机柜处接地螺丝": {"符合性": ["符合", "不符合"]},
    "地排处接地螺丝": {"符合性": ["符合", "不符合"]},
    "光纤": {"保护措施": ["有保护", "无保护"], "弯曲半径": ["半径合理", "半径不合理"]},
    "电线": {"捆扎": ["整齐", "散乱"]},
    "标签": {"文本": ["5G-BBU-(正极)", "NR-01", "ODF-3-12", "BBU-1", "GND 2"]},
}
RRU_CATEGORIES = {
    "RRU设备": {"品牌": ["华为", "中兴", "爱立信"], "可见性": ["完整", "部分"]},
    "紧固件": {"安装状态": ["合格", "不合格"]},
    "RRU接地端": {"安装状态": ["合格", "不合格"]},
    "尾纤": {"套管保护": ["有套管", "无套管"], "标签": ["有标签", "无标签"]},
    "接地线": {"标签": ["有标签", "无标签"]},
    "标签": {"文本": ["RRU-A1", "RRU-B2", "AAU 3"], "组": ["1", "2", "3"]},
    "站点距离": {"站点距离": ["第12米", "26", "第8米"]},
}
NOTES = ["无法判断品牌", "挡风板被遮挡", "部分螺丝不可见", "光纤走线复杂"]


def make_summary(rng: random.Random, domain: str) -> dict:
    table = BBU_CATEGORIES if domain == "BBU" else RRU_CATEGORIES
    entries, total = [], 0
    for category in rng.sample(sorted(table), rng.randint(1, min(6, len(table)))):
        entry = {"类别": category}
        for attr, values in table[category].items():
            picked = rng.sample(values, rng.randint(1, len(values)))
            entry[attr] = {value: rng.randint(1, 3) for value in picked}
        total += max(sum(v.values()) for k, v in entry.items() if k != "类别")
        entries.append(entry)
    summary = {"dataset": domain, "objects_total": total, "统计": entries}
    if domain == "BBU" and rng.random() < 0.5:
        summary["备注"] = rng.sample(NOTES, rng.randint(1, 2))
    if domain == "RRU" and rng.random() < 0.6:
        summary["分组统计"] = {str(g): rng.randint(1, 3) for g in range(1, rng.randint(2, 4))}
    return summary


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def perturb(rng: random.Random, summary: dict) -> dict:
    """A plausible imperfect prediction of ``summary``."""
    pred = json.loads(json.dumps(summary))
    entries = pred["统计"]
    rng.shuffle(entries)
    if len(entries) > 1 and rng.random() < 0.4:
        entries.pop()
    for entry in entries:
        for counts in entry.values():
            if isinstance(counts, dict) and rng.random() < 0.3:
                key = next(iter(counts))
                counts[key] = max(1, counts[key] + rng.choice((-1, 1)))
    pred["objects_total"] = max(0, pred["objects_total"] + rng.randint(-2, 3))
    return pred


def make_batch(n: int, seed: int = 0) -> tuple[list, list]:
    rng = random.Random(seed)
    completions, metadata = [], []
    while len(completions) < n:
        if rng.random() < 0.12:  # an irrelevant image
            meta = {"domain": rng.choice(("BBU", "RRU")), "irrelevant": True, "summary_ref": "无关图片"}
            outputs = [
                rng.choice(["无关图片", "无关图片<|im_end|>", "<DOMAIN=BBU>, <TASK=SUMMARY>\n无关图片", "看不清"])
                for _ in range(GROUP)
            ]
        else:
            domain = rng.choice(("BBU", "RRU"))
            ref = make_summary(rng, domain)
            meta = {"domain": domain, "irrelevant": False, "summary_ref": dumps(ref)}
            header = f"<DOMAIN={domain}>, <TASK=SUMMARY>"
            outputs = []
            for _ in range(GROUP):
                kind = rng.random()
                body = dumps(ref if kind < 0.25 else perturb(rng, ref))
                if kind < 0.6:
                    outputs.append(f"{header}\n{body}")
                elif kind < 0.7:
                    outputs.append(f"<DOMAIN={domain}>,<TASK=SUMMARY>\n{body}")  # header
                elif kind < 0.8:
                    outputs.append(f"{header}\n{body[: rng.randint(5, len(body) - 1)]}")
                elif kind < 0.88:
                    outputs.append(f"{header}\n{body}\n多余的解释")
                elif kind < 0.94:
                    outputs.append(f'{header}\n{body[:-1]},"dataset":"{domain}"}}')
                else:
                    outputs.append(rng.choice(["", "我无法回答", header, "{}", "[1, 2"]))
        for output in outputs:
            completions.append(output)
            metadata.append(dict(meta))
    return completions[:n], metadata[:n]


def run_stack(rewards: list, completions: list, metadata: list) -> float:
    clear_caches()
    start = CLOCK()
    for reward in rewards:
        # The trainer hands each reward its own lists of the same rows.
        reward(list(completions), metadata=list(metadata))
    return CLOCK() - start


def run_baseline(completions: list, metadata: list) -> float:
    start = CLOCK()
    for completion, meta in zip(completions, metadata, strict=True):
        try:
            json.loads(completion.rsplit("\n", 1)[-1])
        except ValueError:
            pass
        try:
            json.loads(meta["summary_ref"])
        except ValueError:
            pass
    return CLOCK() - start


MIN_ROUNDS = 5


def _spread(values: list[float], digits: int) -> dict:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=15, help=f"alternating rounds (at least {MIN_ROUNDS})")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "bench" / "rewards.json")
    args = parser.parse_args(argv)
    if args.repeats < MIN_ROUNDS:
        parser.error(f"--repeats must be at least {MIN_ROUNDS}: one noisy round must not decide")

    completions, metadata = make_batch(args.n)
    rewards = [get_reward(rid) for rid in reward_set("summary_full")]
    run_stack(rewards, completions, metadata)  # warm up imports and regexes
    run_baseline(completions, metadata)
    load_before = os.getloadavg()
    stack, baseline = [], []
    for repeat in range(args.repeats):
        # Each round times both sides back to back, and the order alternates
        # (stack, baseline, baseline, stack, ...) so neither side always runs
        # on a warmer cache or in a quieter moment.
        if repeat % 2:
            baseline.append(run_baseline(completions, metadata))
        stack.append(run_stack(rewards, completions, metadata))
        if not repeat % 2:
            baseline.append(run_baseline(completions, metadata))
    load_after = os.getloadavg()
    clear_caches()
    # Timing a stack whose scorers fail row by row would measure the fallback, not the rewards.
    scorer_errors = sum(pop_error_metrics().values())

    # Round by round: a round whose two sides met different neighbours shows as an outlier here.
    rounds = [s / b for s, b in zip(stack, baseline, strict=True)]
    result = {
        "stack_seconds": statistics.median(stack),
        "baseline_seconds": statistics.median(baseline),
        "ratio": statistics.median(stack) / statistics.median(baseline),
        "round_ratio_median": round(statistics.median(rounds), 3),
        "round_ratio_min": round(min(rounds), 3),
        "round_ratio_max": round(max(rounds), 3),
        "stack_ms": _spread([t * 1e3 for t in stack], 2),
        "baseline_ms": _spread([t * 1e3 for t in baseline], 2),
        "goal": GOAL,
        "n": len(completions),
        "rewards": len(rewards),
        "repeats": args.repeats,
        "clock": "process_time",
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],  # before, after
        "scorer_errors": scorer_errors,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    verdict = "ok" if result["ratio"] <= GOAL and not scorer_errors else "OVER GOAL"
    if scorer_errors:
        verdict = f"{scorer_errors:.0f} SCORER ERRORS"
    print(
        f"summary_full ({len(rewards)} rewards) on {result['n']} completions, {args.repeats} rounds: "
        f"{result['stack_seconds'] * 1e3:.1f} ms ({min(stack) * 1e3:.1f}-{max(stack) * 1e3:.1f}) vs json.loads "
        f"baseline {result['baseline_seconds'] * 1e3:.1f} ms ({min(baseline) * 1e3:.1f}-{max(baseline) * 1e3:.1f}), "
        f"ratio {result['ratio']:.2f} (rounds {result['round_ratio_min']:.2f}-{result['round_ratio_max']:.2f}; "
        f"goal <= {GOAL}; load {load_before[0]:.1f}->{load_after[0]:.1f}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
