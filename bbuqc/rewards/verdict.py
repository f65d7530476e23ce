"""Stage-B verdict rewards: verdict.format, verdict.label, verdict.consistency, verdict.cost.

The verdict is two lines: ``通过`` or ``不通过``, then ``理由：<reason>``, parsed by
``bbuqc.protocol.parse_verdict`` (the parse evaluation uses too).
Like the summary rewards, each completion is parsed once per batch into a
cached ``VerdictContext`` keyed by its text; the per-row columns
(``group_label``, ``summaries``) are read on every call, so a changed row
never meets a stale value. verdict.consistency and verdict.cost (the business
cost of a wrong verdict, with parameters) are defined in docs/rewards.md.
"""

from __future__ import annotations

import re
from functools import lru_cache, partial

from bbuqc.protocol import PASS, VERDICTS, parse_verdict, verdict_text

from .base import Param, reward
from .summary import parsing
from .summary.context import CACHE_SIZE, as_list, column, lazy

# 图片_3, 图片3 and 图片＿3; ASCII digits only. Up to 6 digits keeps int() cheap;
# a longer run is still a reference, and never to an existing image.
_IMAGE_REF = re.compile(r"图片[_＿]?([0-9]+)")
_MAX_INDEX_DIGITS = 6

# Cue phrases of the reason (docs/rewards.md, "verdict.consistency"). The text
# is read left to right taking the longest phrase at each position, so
# 不符合 is one failing cue (not 符合), and 无异常 one passing cue (not 无).
PASS_CUES = tuple(
    # Negated problems ("no problem" statements), then positive findings.
    """
    无异常 无误 无问题 无明显问题 无明显异常 无缺陷 无损坏 无遮挡 无需 未见异常 未见问题
    未发现异常 未发现问题 未遮挡 没有问题 没有异常 不存在问题
    符合 合格 合理 正确 规范 满足 整齐 完整 齐全 可读 清晰 牢固 正常 有保护 有套管 有标签
    已安装 免装 检测到
    """.split()
)
FAIL_CUES = tuple(
    """
    不符合 不合格 不合理 不正确 不规范 不满足 不完整 不齐全 不可读 不清晰 不牢固 不正常 不足
    无保护 无套管 无标签 未安装 未检测到 未见 未发现 没有 缺失 缺少 缺 无法 无 未
    错误 散乱 松动 遗漏 损坏 脱落 方向错误 半径不合理
    """.split()
)
# Matched so that their parts are not read as cues, and then ignored: citing
# the verdict itself is not evidence, and 无关(图片) is not a missing item.
NEUTRAL_CUES = ("不通过", "通过", "审核", "无关")

_CUE_KIND = {
    **{cue: 1 for cue in PASS_CUES},
    **{cue: -1 for cue in FAIL_CUES},
    **{cue: 0 for cue in NEUTRAL_CUES},
}
# Longest first: re alternation takes the first alternative that matches.
_CUES = re.compile("|".join(sorted(map(re.escape, _CUE_KIND), key=len, reverse=True)))


class VerdictContext:
    """Everything the verdict rewards read about one completion's text.

    Format, verdict and reason are :func:`bbuqc.protocol.parse_verdict`'s, the
    same parse evaluation uses, so an answer valid there is formatted here.
    """

    def __init__(self, text: str):
        self.text = text  # the raw completion text
        self.verdict, self.reason = parse_verdict(text)
        if self.reason is None:
            self.reason = ""
        self.format_ok = self.verdict is not None

    @lazy
    def first_line(self) -> str:
        """Line 1 (stripped) of the fully stripped text, for verdict.label."""
        lines = verdict_text(self.text).strip().splitlines()
        return lines[0].strip() if lines else ""

    @lazy
    def image_refs(self) -> frozenset:
        """Distinct cited image indices; -1 stands for an absurdly long index."""
        refs = set()
        for match in _IMAGE_REF.finditer(self.reason):
            digits = match.group(1)
            refs.add(int(digits) if len(digits) <= _MAX_INDEX_DIGITS else -1)
        return frozenset(refs)

    @lazy
    def cue_counts(self) -> tuple[int, int]:
        """(passing cues, failing cues) in the reason."""
        passing = failing = 0
        for match in _CUES.finditer(self.reason):
            kind = _CUE_KIND[match.group()]
            if kind > 0:
                passing += 1
            elif kind < 0:
                failing += 1
        return passing, failing


# One context per distinct text, and one image count per distinct JSON text (bounded).
_context = lru_cache(maxsize=CACHE_SIZE)(VerdictContext)


@lru_cache(maxsize=CACHE_SIZE)
def _image_count_of_text(summaries: str) -> int | None:
    return image_count(parsing.loads(summaries))


def batch_contexts(completions: object) -> list[VerdictContext]:
    return [_context(parsing.raw_text(completion)) for completion in as_list(completions)]


def image_count(summaries: object) -> int | None:
    """Number of images of the group: the size of its ``summaries`` dict.

    A JSON string of the dict (or a list) is accepted; anything else is
    unknown (None).
    """
    if isinstance(summaries, str):
        return _image_count_of_text(summaries)
    if isinstance(summaries, (dict, list)):
        return len(summaries)
    return None


def normalise_label(label: object) -> str | None:
    """The row's label when it is exactly 通过 or 不通过, else None."""
    return label if isinstance(label, str) and label in VERDICTS else None


def grounding(refs: frozenset, n_images: int | None) -> float:
    """(valid − invalid distinct references) / all distinct references; 0 if none."""
    if not refs or n_images is None:
        return 0.0
    valid = sum(1 for k in refs if 1 <= k <= n_images)
    return (valid - (len(refs) - valid)) / len(refs)


def self_consistency(verdict: str, passing: int, failing: int) -> float:
    """+1 when the reason's cues back the verdict, −1 when they contradict it."""
    if verdict == "不通过":
        # One failing finding is enough to fail; only passing ones contradict.
        if failing:
            return 1.0
        return -1.0 if passing else 0.0
    # Under 通过 any failing finding contradicts the verdict.
    if failing:
        return -1.0
    return 1.0 if passing else 0.0


def prepare_rows(completions: object, columns: dict) -> list[tuple]:
    """(context, group label, number of images) per completion."""
    contexts = batch_contexts(completions)
    labels = column(columns.get("group_label"), len(contexts))
    summaries = column(columns.get("summaries"), len(contexts))
    return [
        (ctx, normalise_label(label), image_count(summary))
        for ctx, label, summary in zip(contexts, labels, summaries, strict=True)
    ]


# The table of verdict rewards: each scorer takes a prepared row, registered in this order.
verdict_reward = partial(reward, prepare=prepare_rows)


@verdict_reward("verdict.format", 0.0, 1.0)
def format_score(row: tuple) -> float:
    """Two lines: 通过/不通过, then 理由: and a non-empty reason."""
    return 1.0 if row[0].format_ok else 0.0


@verdict_reward("verdict.label", 0.0, 1.0, reads=("group_label",))
def label_score(row: tuple) -> float:
    """Line 1 equals the group's label (通过/不通过)."""
    ctx, label, _ = row
    if label is None:
        return 0.0
    return 1.0 if ctx.first_line == label else 0.0


@verdict_reward("verdict.consistency", -1.0, 1.0, reads=("summaries",))
def consistency_score(row: tuple) -> float:
    """The reason cites existing images and findings that agree with the verdict; -1 when unformatted."""
    ctx, _, n_images = row
    if not ctx.format_ok:
        return -1.0
    return 0.5 * grounding(ctx.image_refs, n_images) + 0.5 * self_consistency(ctx.verdict, *ctx.cue_counts)


# The business cost of a wrong verdict (docs/rewards.md, "verdict.cost"). A false pass lets a faulty
# installation through, so it costs more than a false fail (a needless site revisit): at 4 : 1 the
# answer that maximises the expected reward is 通过 only when the group passes with probability > 5/7.
COST_PARAMS = {
    "false_pass": Param(float, 4.0, lo=0.0, doc="cost of 通过 on a group the human failed (reward -false_pass)"),
    "false_fail": Param(float, 1.0, lo=0.0, doc="cost of 不通过 on a group the human passed (reward -false_fail)"),
}


def worst_cost(p) -> float:
    """The lowest value of verdict.cost: an invalid answer's, -max(false_pass, false_fail)."""
    return -max(p["false_pass"], p["false_fail"])


@verdict_reward("verdict.cost", worst_cost, 1.0, params=COST_PARAMS, reads=("group_label",))
def cost_score(row: tuple, *, false_pass: float, false_fail: float) -> float:
    """1 for the human's verdict, -false_pass for a false pass, -false_fail for a false fail, -max(both) if invalid."""
    ctx, label, _ = row
    if label is None:
        return 0.0
    if not ctx.format_ok:
        return -max(false_pass, false_fail)
    if ctx.verdict == label:
        return 1.0
    return -false_pass if ctx.verdict == PASS else -false_fail


def clear_caches() -> None:
    _context.cache_clear()
    _image_count_of_text.cache_clear()
