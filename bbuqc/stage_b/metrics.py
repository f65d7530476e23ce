"""Stage-B metrics: pure functions of prediction records (docs/evaluate.md has the definitions).

A prediction record is one group (one line of ``predictions.jsonl``); the fields read here::

    {"label": "不通过", "mission": "挡风板安装检查", "mission_id": "bbu_wind",
     "answers": ["不通过\\n理由: …", "…"], "rewards": {"verdict.format": [1.0, 0.0], …}}

Votes and the group verdict are recomputed from the raw ``answers`` (the same
:func:`vote` wrote them), so ``metrics.json`` can always be rebuilt from
``predictions.jsonl`` alone. Nothing here imports torch.

Error attribution reads two more fields, ``mission_id`` (else ``mission``) and ``summaries``
(the group's ``{图片_i: summary}`` as the verdict model saw it): the mission's rules
(``bbuqc.missions.rules``) are applied to the summaries *here*, at metrics time, so a
stored ``rules_verdict`` / ``error_source`` is never trusted and a record without
``summaries`` (written before attribution existed) has ``rules_verdict`` None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bbuqc.missions import all_missions, mission_named
from bbuqc.missions.rules import MISSING, STATED, rules_assessment
from bbuqc.protocol import FAIL, PASS, parse_verdict

INVALID = "invalid"
HUMAN_LABELS = (PASS, FAIL)
MODEL_VERDICTS = (PASS, FAIL, INVALID)
#: The business constraint: among groups a human failed, the model may pass fewer than 5%.
FALSE_PASS_LIMIT = 0.05

# Outcome of one group, worst first (the report's "worst examples" order).
FALSE_PASS = "false_pass"  # human 不通过, model 通过
FALSE_FAIL = "false_fail"  # human 通过, model 不通过 or invalid
INVALID_ON_FAIL = "invalid"  # human 不通过, model invalid: right for the business, still no answer
CORRECT = "correct"
OUTCOMES = (FALSE_PASS, FALSE_FAIL, INVALID_ON_FAIL, CORRECT)

# Where a wrong verdict (verdict != human label, invalid included) comes from (docs/evaluate.md).
STAGE_A = "stage_a"  # the rules on the group's summaries already give the wrong label
VERDICT_MODEL = "verdict_model"  # the rules on the summaries give the human label; the model missed it
UNKNOWN = "unknown"  # the rules cannot judge the group (a summary they cannot read, a mission without rules)
ERROR_SOURCES = (STAGE_A, VERDICT_MODEL, UNKNOWN)
# What the rules found wrong in a group a human failed and the rules fail too (the verdict model's false
# passes on these groups are its own): a required item seen in no image, a failing value a summary
# states, or both.
BOTH = "both"
FAIL_KINDS = (MISSING, STATED, BOTH)


@dataclass(frozen=True)
class Vote:
    """The majority vote over one group's answers."""

    votes: dict[str, int]  # {通过: n, 不通过: n, invalid: n}
    verdict: str  # 通过 | 不通过 | invalid
    reason: str | None  # the reason of the first answer that gave `verdict`; None if none did
    tie: bool  # the top count was shared (the verdict is then 不通过)

    @property
    def valid(self) -> bool:
        return self.verdict != INVALID


def vote(answers: Sequence[str]) -> Vote:
    """Plurality over the answers' outcomes (通过, 不通过, invalid); a tie for the top is 不通过.

    An answer is invalid when :func:`bbuqc.protocol.parse_verdict` rejects it.
    With one answer the verdict is that answer's outcome.
    """
    if not answers:
        raise ValueError("vote: a group needs at least one answer")
    counts = dict.fromkeys(MODEL_VERDICTS, 0)
    parsed = [parse_verdict(a) for a in answers]
    for verdict, _ in parsed:
        counts[verdict or INVALID] += 1
    top = max(counts.values())
    leaders = [k for k in MODEL_VERDICTS if counts[k] == top]
    tie = len(leaders) > 1
    verdict = FAIL if tie else leaders[0]
    reason = next((r for v, r in parsed if v == verdict), None)
    return Vote(counts, verdict, reason, tie)


def business_verdict(verdict: str) -> str:
    """What the business acts on: only 通过 passes; 不通过 and invalid both fail."""
    return PASS if verdict == PASS else FAIL


def outcome(label: str, verdict: str) -> str:
    if label == FAIL and verdict == PASS:
        return FALSE_PASS
    if label == PASS and verdict != PASS:
        return FALSE_FAIL
    if verdict == INVALID:
        return INVALID_ON_FAIL
    return CORRECT


def rules_verdict(record: dict) -> str | None:
    """通过 / 不通过: what the mission's rules say of the record's ``summaries``; None when they
    cannot judge it (no ``summaries``, a summary that is neither 无关图片 nor a JSON object, a
    mission unknown to the catalogue or without rules: ``bbuqc.missions.rules.rules_label``)."""
    return rules_finding(record)[0]


def rules_finding(record: dict) -> tuple[str | None, frozenset[str]]:
    """``(rules_verdict(record), the kinds of the failures the rules found)`` (``missing`` / ``stated``;
    empty for a pass or a group they cannot judge)."""
    from bbuqc.data.records import VERDICT_OF_LABEL

    mission = record.get("mission_id") or record.get("mission")
    label, _, kinds = rules_assessment(mission, record.get("summaries"))
    return (None if label is None else VERDICT_OF_LABEL[label]), kinds


def error_source(label: str, verdict: str, rules: str | None) -> str | None:
    """None for a correct verdict; else ``stage_a`` when the rules' verdict ``rules`` is wrong too,
    ``verdict_model`` when it equals the human ``label``, ``unknown`` when it is None."""
    if verdict == label:
        return None
    if rules is None:
        return UNKNOWN
    return VERDICT_MODEL if rules == label else STAGE_A


def attribution(record: dict) -> tuple[str | None, str | None]:
    """``(rules_verdict, error_source)`` of one prediction record (the fields predictions.jsonl
    stores; metrics recompute them with this function)."""
    rules = rules_verdict(record)
    return rules, error_source(record["label"], vote(record["answers"]).verdict, rules)


def verdict_reward_ids() -> list[str]:
    from bbuqc.rewards import reward_names

    return [rid for rid in reward_names() if rid.startswith("verdict.")]


def score_answers(answers: Sequence[str], group_label: str, summaries: str | dict,
                  params: dict[str, dict] | None = None) -> dict[str, list[float]]:
    """Every ``verdict.*`` reward of each answer, called exactly as GRPO training calls them
    (``params``: the config's reward parameters by id, ``reward_sets.reward_params(cfg)``)."""
    from bbuqc.rewards import get_reward

    n, params = len(answers), params or {}
    return {
        rid: [float(v) for v in get_reward(rid, params.get(rid))(list(answers), group_label=[group_label] * n,
                                                                  summaries=[summaries] * n)]
        for rid in verdict_reward_ids()
    }


def rate(k: int, n: int) -> float | None:
    """k / n, or None when there is nothing to divide by."""
    return k / n if n else None


def wilson(k: int, n: int, z: float = 1.959964) -> list[float] | None:
    """The Wilson score interval of k successes in n (95% by default), or None when n is 0. Unlike k/n +- 2 SE
    it stays inside [0, 1] and is honest at 0 or n successes: 2 of 42 failed groups passed is a false-pass
    rate of 0.048, but anywhere in [0.013, 0.158]."""
    if not n:
        return None
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _check(record: dict, i: int) -> None:
    label = record.get("label")
    if label not in HUMAN_LABELS:
        raise ValueError(f"prediction {i} ({record.get('group_id')}): label must be 通过 or 不通过, got {label!r}")
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"prediction {i} ({record.get('group_id')}): answers must be a non-empty list of strings")


def group_stats(records: Iterable[dict]) -> dict:
    """The metrics of a set of groups (overall, or one mission's)."""
    return _stats([(record, *rules_finding(record)) for record in records])


#: ``(record, rules verdict, failure kinds)``: a record with what the rules found (``rules_finding``).
Judged = tuple[dict, "str | None", frozenset]


def _stats(judged: Sequence[Judged]) -> dict:
    """``group_stats`` of judged records (the rules run once per record)."""
    records = [record for record, *_ in judged]
    confusion = {h: dict.fromkeys(MODEL_VERDICTS, 0) for h in HUMAN_LABELS}
    n = n_answers = invalid_answers = ties = 0
    reward_sums: dict[str, float] = {}
    reward_counts: dict[str, int] = {}
    for record in records:
        v = vote(record["answers"])
        n += 1
        n_answers += len(record["answers"])
        invalid_answers += v.votes[INVALID]
        ties += v.tie
        confusion[record["label"]][v.verdict] += 1
        for rid, values in (record.get("rewards") or {}).items():
            reward_sums[rid] = reward_sums.get(rid, 0.0) + sum(values)
            reward_counts[rid] = reward_counts.get(rid, 0) + len(values)
    human_pass = sum(confusion[PASS].values())
    human_fail = sum(confusion[FAIL].values())
    correct = confusion[PASS][PASS] + confusion[FAIL][FAIL]
    false_pass = confusion[FAIL][PASS]
    false_fail = confusion[PASS][FAIL] + confusion[PASS][INVALID]
    invalid_groups = confusion[PASS][INVALID] + confusion[FAIL][INVALID]
    false_pass_rate = rate(false_pass, human_fail)
    return {
        "n": n,
        "n_answers": n_answers,
        "human_pass": human_pass,
        "human_fail": human_fail,
        "correct": correct,
        "accuracy": rate(correct, n),
        "false_pass": false_pass,
        "false_pass_rate": false_pass_rate,
        "false_pass_ok": None if false_pass_rate is None else false_pass_rate < FALSE_PASS_LIMIT,
        "false_fail": false_fail,
        "false_fail_rate": rate(false_fail, human_pass),
        "invalid_answers": invalid_answers,
        "invalid_rate": rate(invalid_answers, n_answers),
        "invalid_groups": invalid_groups,
        "invalid_group_rate": rate(invalid_groups, n),
        "ties": ties,
        # each rate's Wilson 95% interval (its counts as above)
        "accuracy_ci95": wilson(correct, n),
        "false_pass_rate_ci95": wilson(false_pass, human_fail),
        "false_fail_rate_ci95": wilson(false_fail, human_pass),
        "invalid_rate_ci95": wilson(invalid_answers, n_answers),
        "invalid_group_rate_ci95": wilson(invalid_groups, n),
        "confusion": confusion,
        "rewards": {rid: reward_sums[rid] / reward_counts[rid] for rid in reward_sums if reward_counts[rid]},
        "attribution": _attribution(judged),
    }


def _attribution(judged: Sequence[Judged]) -> dict:
    """Where the wrong verdicts come from, the rules' own figures on the groups they can judge, and the
    verdict model's false passes by what the rules found wrong."""
    sources = dict.fromkeys(ERROR_SOURCES, 0)
    rules = {h: {PASS: 0, FAIL: 0} for h in HUMAN_LABELS}  # human -> rules verdict -> groups
    by_kind = {k: [0, 0] for k in FAIL_KINDS}  # kind -> [groups, false passes]
    model_correct_judged = correct_against_rules = 0
    for record, rv, kinds in judged:
        label, verdict = record["label"], vote(record["answers"]).verdict
        source = error_source(label, verdict, rv)
        if source is not None:
            sources[source] += 1
        if rv is not None:
            rules[label][rv] += 1
            model_correct_judged += verdict == label
            correct_against_rules += verdict == label and rv != label
        if label == FAIL and rv == FAIL:
            counts = by_kind[BOTH if len(kinds) > 1 else next(iter(kinds))]
            counts[0] += 1
            counts[1] += verdict == PASS
    wrong = sum(sources.values())
    judged_n = sum(sum(row.values()) for row in rules.values())
    human_pass, human_fail = sum(rules[PASS].values()), sum(rules[FAIL].values())
    rules_correct = rules[PASS][PASS] + rules[FAIL][FAIL]
    return {
        "wrong": wrong,
        **sources,
        **{f"{k}_share": rate(n, wrong) for k, n in sources.items()},
        "correct_against_rules": correct_against_rules,
        "rules": {
            "judged": judged_n,
            "unjudgeable": len(judged) - judged_n,
            "human_pass": human_pass,
            "human_fail": human_fail,
            "correct": rules_correct,
            "accuracy": rate(rules_correct, judged_n),
            "false_pass": rules[FAIL][PASS],
            "false_pass_rate": rate(rules[FAIL][PASS], human_fail),
            "false_fail": rules[PASS][FAIL],
            "false_fail_rate": rate(rules[PASS][FAIL], human_pass),
            "model_correct": model_correct_judged,
            "model_accuracy": rate(model_correct_judged, judged_n),
        },
        "false_pass_by_kind": {k: {"groups": n, "false_pass": fp, "false_pass_rate": rate(fp, n)}
                               for k, (n, fp) in by_kind.items()},
    }


def mission_key(record: dict) -> str:
    """The mission id of a record (its Chinese name when the catalogue does not know it)."""
    mid = record.get("mission_id")
    if mid:
        return mid
    m = mission_named(record.get("mission", ""))
    return m.id if m else str(record.get("mission"))


def compute_metrics(records: Sequence[dict]) -> dict:
    """``{"overall": stats, "per_mission": {mission id: stats + mission name}, "false_pass_limit"}``."""
    records = list(records)
    for i, record in enumerate(records):
        _check(record, i)
    judged = [(record, *rules_finding(record)) for record in records]
    by_mission: dict[str, list[Judged]] = {}
    for item in judged:
        by_mission.setdefault(mission_key(item[0]), []).append(item)
    order = {mid: i for i, mid in enumerate(all_missions())}
    per_mission = {}
    for mid in sorted(by_mission, key=lambda k: (order.get(k, len(order)), k)):
        group = by_mission[mid]
        per_mission[mid] = {"mission": group[0][0].get("mission"), **_stats(group)}
    return {
        "false_pass_limit": FALSE_PASS_LIMIT,
        "overall": _stats(judged),
        "per_mission": per_mission,
    }


def worst_examples(records: Sequence[dict], limit: int = 20) -> list[tuple[str, dict, Vote]]:
    """``(outcome, record, vote)`` of the wrong or unanswered groups, worst first.

    Order: false passes, false fails, invalid verdicts on human-不通过 groups; inside
    one kind, the more answers that were wrong, the earlier; then file order.
    """
    found = []
    for i, record in enumerate(records):
        v = vote(record["answers"])
        kind = outcome(record["label"], v.verdict)
        if kind == CORRECT:
            continue
        wrong = sum(n for verdict, n in v.votes.items() if verdict != record["label"])
        found.append((OUTCOMES.index(kind), -wrong / len(record["answers"]), i, kind, record, v))
    found.sort(key=lambda t: t[:3])
    return [(kind, record, v) for *_, kind, record, v in found[:limit]]
