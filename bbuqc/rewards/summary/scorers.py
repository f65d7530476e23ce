"""Scoring rules of the summary rewards (REWARDS.md, "The summary rewards").

Each scorer maps a ``SummaryContext`` to a float and only decides the
score: parsing and caching are the context's job. The decorator registers it
with its id and range; its docstring's first paragraph is the description.
"""

from __future__ import annotations

from functools import partial

from bbuqc.protocol import HEADER_SHAPE_RE, IRRELEVANT

from ..base import reward
from . import facts as F
from .context import Summary, SummaryContext, batch_contexts
from .parsing import INVALID


def _rows(completions: object, columns: dict) -> list[SummaryContext]:
    """A summary reward's rows: one cached context per completion, with its ``metadata`` row."""
    return batch_contexts(completions, columns.get("metadata"))


# What every summary reward reads: its context is built from these three keys of the row's ``metadata``.
SUMMARY_READS = ("metadata.domain", "metadata.irrelevant", "metadata.summary_ref")

# The images a reward speaks about (its ``scope``; validation averages it over them). Format and header judge every
# image (无关图片, no header); the others judge a summary of the mission: an irrelevant image has no content, and the
# BBU-only (RRU-only) rewards score the other domain 0. Averaged over every image, a content F1 would carry the
# share of irrelevant images in the validation set (0.75 where the summaries themselves score 0.96).
def relevant_images(ctx: SummaryContext) -> bool:
    """An image that shows the mission."""
    return not ctx.irrelevant


def bbu_images(ctx: SummaryContext) -> bool:
    """An image of a BBU mission that shows it."""
    return not ctx.irrelevant and ctx.domain == "BBU"


def rru_images(ctx: SummaryContext) -> bool:
    """An image of an RRU mission that shows it."""
    return not ctx.irrelevant and ctx.domain == "RRU"


# The table of summary rewards: each scorer below, registered in this order.
summary_reward = partial(reward, prepare=_rows, reads=SUMMARY_READS, scope=relevant_images)


@summary_reward("summary.format", 0.0, 1.0, scope=None)
def format_(ctx: SummaryContext) -> float:
    """Two lines: a <DOMAIN=..>, <TASK=..> header and a line ending in '}'; 无关图片 for irrelevant images."""
    if ctx.irrelevant:
        return 1.0 if ctx.text == IRRELEVANT else 0.0
    lines = ctx.lines
    if len(lines) != 2:
        return 0.0
    ok = HEADER_SHAPE_RE.fullmatch(lines[0]) and lines[1].strip().endswith("}")
    return 1.0 if ok else 0.0


@summary_reward("summary.header", -1.0, 1.0, scope=None)
def header(ctx: SummaryContext) -> float:
    """Line 1 is exactly the expected header; -1 when an irrelevant image gets a header."""
    lines = ctx.lines
    if ctx.irrelevant:
        leaked = (lines and lines[0].startswith("<DOMAIN=")) or "<TASK=" in ctx.text
        return -1.0 if leaked else 0.0
    return 1.0 if ctx.header_ok else 0.0


@summary_reward("summary.strict", -1.0, 0.0)
def strict(ctx: SummaryContext) -> float:
    """Penalty: not exactly two lines, or line 1 is not the expected header."""
    if ctx.irrelevant:
        return 0.0
    if len(ctx.lines) != 2:
        return -1.0
    if ctx.domain is None:
        return 0.0
    return 0.0 if ctx.header_ok else -1.0


@summary_reward("summary.parse", -1.0, 0.0)
def parse(ctx: SummaryContext) -> float:
    """Penalty: line 2 missing or not valid JSON."""
    if ctx.irrelevant:
        return 0.0
    return 0.0 if ctx.line2_is_json else -1.0


@summary_reward("summary.no_dup_keys", -1.0, 0.0)
def no_dup_keys(ctx: SummaryContext) -> float:
    """Penalty: the strict JSON line repeats a key in some object."""
    if ctx.strict_line is None:
        return 0.0
    return -1.0 if ctx.has_duplicate_keys else 0.0


@summary_reward("summary.dataset", 0.0, 1.0)
def dataset(ctx: SummaryContext) -> float:
    """The predicted object's dataset names the sample's domain."""
    pred = ctx.pred
    if ctx.domain is None or pred is None or pred.obj is None:
        return 0.0
    name = pred.obj.get("dataset")
    if not isinstance(name, str) or not name.strip():
        return 0.0
    return 1.0 if name.strip().lower() == ctx.domain.strip().lower() else 0.0


def _counts(ctx: SummaryContext) -> tuple[int, int] | None:
    pred, ref = ctx.pred, ctx.ref
    if pred is None or ref is None:
        return None
    p, r = pred.objects_total, ref.objects_total
    if p is None or r is None:
        return None
    return p, r


@summary_reward("summary.objects_total", 0.0, 1.0)
def objects_total(ctx: SummaryContext) -> float:
    """1 / (1 + |objects_total - reference|)."""
    counts = _counts(ctx)
    if counts is None:
        return 0.0
    p, r = counts
    return 1 / (1 + abs(p - r))


@summary_reward("summary.objects_total_lb", 0.0, 1.0)
def objects_total_lb(ctx: SummaryContext) -> float:
    """Lower-bound count: full score from the reference count up to two more, decaying outside."""
    counts = _counts(ctx)
    return 0.0 if counts is None else F.lower_bound_count_score(*counts)


def _valid_pair(ctx: SummaryContext) -> tuple[Summary, Summary] | None:
    """Both summaries when both are domain-valid objects (else None)."""
    pred, ref = ctx.pred, ctx.ref
    if pred is None or ref is None or not pred.valid or not ref.valid:
        return None
    return pred, ref


@summary_reward("summary.category_recall", 0.0, 1.0)
def category_recall(ctx: SummaryContext) -> float:
    """Share of the reference 类别 names that the prediction lists."""
    pair = _valid_pair(ctx)
    if pair is None:
        return 0.0
    pred, ref = pair[0].categories, pair[1].categories
    if not ref:
        return 0.0 if pred else 1.0
    return len(pred & ref) / len(ref)


@summary_reward("summary.category_f1", 0.0, 1.0)
def category_f1(ctx: SummaryContext) -> float:
    """Set F1 of predicted and reference 类别 names."""
    pair = _valid_pair(ctx)
    return 0.0 if pair is None else F.set_f1(pair[0].categories, pair[1].categories)


@summary_reward("summary.content_eq", 0.0, 1.0)
def content_eq(ctx: SummaryContext) -> float:
    """1 when the prediction equals the reference up to key and entry order (异常 ignored)."""
    pair = _valid_pair(ctx)
    if pair is None:
        return 0.0
    pred, ref = pair[0].canonical, pair[1].canonical
    if pred is INVALID or ref is INVALID:
        return 0.0
    try:
        # Python equality, as for the counts elsewhere: 4 and 4.0 are equal.
        return 1.0 if pred == ref else 0.0
    except RecursionError:
        return 0.0


def _common(pred: tuple[dict, int], ref: tuple[dict, int]) -> tuple[int, int, int]:
    """(overlap, pred total, ref total) of two (facts, total) pairs."""
    return F.overlap(pred[0], ref[0]), pred[1], ref[1]


@summary_reward("summary.content_f1", 0.0, 1.0)
def content_f1(ctx: SummaryContext) -> float:
    """Count-weighted F1 over all facts."""
    pair = _valid_pair(ctx)
    if pair is None:
        return 0.0
    return F.f1_from_counts(*_common(pair[0].all_facts, pair[1].all_facts))


@summary_reward("summary.content_structured_tversky", 0.0, 1.0)
def content_structured_tversky(ctx: SummaryContext) -> float:
    """Tversky over structured facts (no notes; no OCR text for BBU); missing facts cost more."""
    pair = _valid_pair(ctx)
    if pair is None:
        return 0.0
    counts = _common(pair[0].structured_facts, pair[1].structured_facts)
    alpha = 0.3 if ctx.domain == "BBU" else 0.6
    return F.tversky_from_counts(*counts, alpha=alpha, beta=1.0)


@summary_reward("summary.text_bbu", -1.0, 1.0, scope=bbu_images)
def text_bbu(ctx: SummaryContext) -> float:
    """BBU label-text recall (OCR-normalised), minus 0.1 per surplus distinct text."""
    if ctx.domain != "BBU":
        return 0.0
    pair = _valid_pair(ctx)
    if pair is None:
        return 0.0
    pred, ref = pair[0].text_counts, pair[1].text_counts
    ref_total = F.total(ref)
    score = F.overlap(pred, ref) / ref_total if ref_total else 0.0
    # Spraying many guesses must not pay: each text beyond a small allowance costs.
    score -= 0.1 * max(0, len(pred) - (len(ref) + 2))
    return min(1.0, max(-1.0, score))


@summary_reward("summary.notes_bbu", -1.0, 1.0, scope=bbu_images)
def notes_bbu(ctx: SummaryContext) -> float:
    """BBU note recall; -1 for notes when the reference has none."""
    if ctx.domain != "BBU":
        return 0.0
    # Only "both objects": a stray 分组统计 must not hide the notes.
    if ctx.pred is None or ctx.ref is None or ctx.pred.obj is None or ctx.ref.obj is None:
        return 0.0
    pred, ref = ctx.pred.notes, ctx.ref.notes
    if not ref:
        return -1.0 if pred else 0.0
    return len(pred & ref) / len(ref)


@summary_reward("summary.notes_presence", 0.0, 1.0, scope=bbu_images)
def notes_presence(ctx: SummaryContext) -> float:
    """BBU: the prediction has a note when the reference has one."""
    if ctx.domain != "BBU":
        return 0.0
    pred, ref = ctx.pred, ctx.ref
    if ref is None or not ref.has_note or pred is None:
        return 0.0
    return 1.0 if pred.has_note else 0.0


@summary_reward("summary.group_stats_presence", 0.0, 1.0, scope=rru_images)
def group_stats_presence(ctx: SummaryContext) -> float:
    """RRU: the prediction has 分组统计 when the reference has it."""
    if ctx.domain != "RRU":
        return 0.0
    pred, ref = ctx.pred, ctx.ref
    if ref is None or not ref.has_group_stats or pred is None:
        return 0.0
    return 1.0 if pred.has_group_stats else 0.0
