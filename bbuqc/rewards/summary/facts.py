"""Fact multisets of a summary object, and the overlap scores over them.

REWARDS.md, "Facts". A fact is a tuple key with a positive integer count:
``("备注", note)``, ``("分组统计", group)`` or ``("统计", 类别, attr, value)``.
Facts are kept in four buckets so that a reward needing a subset (the
structured Tversky drops notes, and for BBU the OCR text) never rebuilds or
filters a merged multiset.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_DIGITS = re.compile(r"\d+")
_OCR_TABLE = str.maketrans("（）－—–−‐／：，", "()-----/:,")
_NUMERIC_ATTRS = ("站点距离", "组")


def strip_ws(text: str) -> str:
    """Remove every whitespace character (not only the surrounding ones)."""
    # str.split() splits on exactly the characters re's \s matches, and faster.
    return "".join(text.split())


def ocr_normalise(text: str) -> str:
    return strip_ws(text).translate(_OCR_TABLE).upper()


def text_form(value: object) -> str:
    """String form of a JSON value; ``null`` has none (it is "no value")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except (RecursionError, ValueError):  # a deeply nested list value
        return ""


def digit_string(text: str) -> str:
    """Whitespace-free text reduced to its first run of digits, as an int."""
    text = strip_ws(text)
    match = _DIGITS.search(text)
    if match is None:
        return text
    run = match.group()
    try:
        return str(int(run))
    except ValueError:  # beyond int's string-conversion limit (4300 digits)
        return run.lstrip("0") or "0"


def _integer(value: object) -> int | None:
    # bool is an int subclass, but true is not a count.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # includes strings past the 4300-digit limit
            return None
    return None


def positive_int(value: object) -> int | None:
    number = _integer(value)
    return number if number is not None and number > 0 else None


def non_negative_int(value: object) -> int | None:
    number = _integer(value)
    return number if number is not None and number >= 0 else None


class Facts:
    """The fact multiset of one summary object, split by kind."""

    __slots__ = ("notes", "groups", "stats", "texts", "categories")

    def __init__(self) -> None:
        self.notes: dict = {}
        self.groups: dict = {}
        self.stats: dict = {}  # 统计 facts except 文本
        self.texts: dict = {}  # 统计 facts whose attr is 文本
        # The stripped string 类别 names of the 统计 entries, gathered in the
        # same pass (summary.category_*); an int 类别 makes facts, not a name.
        self.categories: set = set()

    def all(self) -> dict:
        return {**self.notes, **self.groups, **self.stats, **self.texts}


def extract_facts(obj: dict) -> Facts:
    """Facts of a (domain-valid) summary object."""
    facts = Facts()
    notes = obj.get("备注")
    if isinstance(notes, list):
        for note in notes:
            text = strip_ws(text_form(note))
            if text:
                facts.notes[("备注", text)] = 1  # distinct notes count once

    groups = obj.get("分组统计")
    if isinstance(groups, dict):
        for group, count in groups.items():
            group_id = digit_string(group)
            number = positive_int(count)
            if group_id and number is not None:
                key = ("分组统计", group_id)
                facts.groups[key] = facts.groups.get(key, 0) + number

    entries = obj.get("统计")
    if isinstance(entries, list):
        _add_entries(facts, entries)
    return facts


def closed_facts(obj: dict) -> set[tuple[str, ...]]:
    """The facts of a summary object whose values come from a closed set: each category, and each
    ``(category, attribute, value)`` of its 统计 but free text (文本) and numbers (站点距离, 组)."""
    facts = extract_facts(obj)
    return {(c,) for c in facts.categories} | {key[1:] for key in facts.stats if key[2] not in _NUMERIC_ATTRS}


def states_rare_fact(objects: list[dict | None], share: float) -> list[bool]:
    """For each summary object (None: an image without one, e.g. irrelevant), whether it states a rare fact:
    a :func:`closed_facts` fact stated by fewer than ``share`` of ``objects``. The facts that fail a group are
    rare per image (a non-compliant screw: ~1% of images), and a model trained on the plain mix writes the
    common value; the summary SFT (``data.rare_fact_repeat``) and the demo twin's reading pretraining draw
    these images more often."""
    from collections import Counter

    stated = [closed_facts(obj) if obj is not None else set() for obj in objects]
    counts = Counter(f for facts in stated for f in facts)
    rare = {f for f, n in counts.items() if n < share * len(stated)}
    return [bool(facts & rare) for facts in stated]


_NOT_ATTRS = frozenset(("", "类别", "异常"))


def _add_entries(facts: Facts, entries: list) -> None:
    # The hot loop of the content rewards: kept flat, with exact-type fast
    # paths for the usual shapes (str values, int counts).
    stats, texts, categories = facts.stats, facts.texts, facts.categories
    for entry in entries:
        if type(entry) is not dict:
            continue
        raw = entry.get("类别")
        if type(raw) is str:
            category = raw.strip()
            if not category:
                continue
            categories.add(category)
        else:
            category = text_form(raw).strip()
            if not category:
                continue
        for attr, attr_value in entry.items():
            attr = attr.strip()
            if attr in _NOT_ATTRS:
                continue
            if attr == "文本":
                bucket, normalise = texts, strip_ws
            elif attr in _NUMERIC_ATTRS:
                bucket, normalise = stats, digit_string
            else:
                bucket, normalise = stats, str.strip
            if type(attr_value) is dict:
                for value, count in attr_value.items():
                    if type(count) is not int:
                        count = positive_int(count)
                        if count is None:
                            continue
                    elif count <= 0:
                        continue
                    value = normalise(value)
                    if value:
                        key = ("统计", category, attr, value)
                        # Membership, then a store: no method call per fact (most keys are new).
                        if key in bucket:
                            bucket[key] += count
                        else:
                            bucket[key] = count
            else:
                values = attr_value if type(attr_value) is list else (attr_value,)
                for value in values:
                    value = normalise(value if type(value) is str else text_form(value))
                    if value:
                        key = ("统计", category, attr, value)
                        bucket[key] = bucket.get(key, 0) + 1


def overlap(pred: dict, ref: dict) -> int:
    """Count-weighted overlap: sum over shared keys of the smaller count."""
    if pred is ref:  # a verbatim copy of the reference shares its facts: every count is common
        return sum(pred.values())
    # A plain loop: each key is hashed once (set intersection plus lookups
    # hashes the tuple keys three times and measures slower).
    if len(pred) > len(ref):
        pred, ref = ref, pred
    common = 0
    lookup = ref.get
    for key, count in pred.items():
        other = lookup(key)
        if other is not None:
            common += count if count < other else other
    return common


def total(bucket: dict) -> int:
    return sum(bucket.values())


def f1_from_counts(common: int, pred_total: int, ref_total: int) -> float:
    if pred_total == 0 and ref_total == 0:
        return 1.0
    if pred_total == 0 or ref_total == 0 or common == 0:
        return 0.0
    # Harmonic mean of common/pred and common/ref, in exact integer arithmetic
    # so that huge counts cannot overflow a float.
    return 2 * common / (pred_total + ref_total)


def tversky_from_counts(common: int, pred_total: int, ref_total: int, alpha: float, beta: float) -> float:
    if pred_total == 0 and ref_total == 0:
        return 1.0
    if ref_total == 0:
        return 0.0
    fp = pred_total - common
    fn = ref_total - common
    try:
        denominator = common + alpha * fp + beta * fn
        return common / denominator if denominator else 0.0
    except OverflowError:  # counts beyond float range: redo it exactly
        denominator = common + Fraction(alpha) * fp + Fraction(beta) * fn
        return float(Fraction(common) / denominator) if denominator else 0.0


def set_f1(pred: set, ref: set) -> float:
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    return 2 * len(pred & ref) / (len(pred) + len(ref))


def lower_bound_count_score(pred: int, ref: int) -> float:
    """summary.objects_total_lb: over-counting by up to 2 is free."""
    try:
        if pred < ref:
            # (r - p) / max(3, 0.3 r) without a float product that could overflow
            return math.exp(-(10 * (ref - pred)) / max(30, 3 * ref))
        if pred <= ref + 2:
            return 1.0
        return math.exp(-(2 * (pred - ref - 2)) / max(12, ref))
    except OverflowError:  # the ratio itself is beyond float range
        return 0.0
