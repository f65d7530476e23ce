"""The model-output protocol: what a Stage-A summary and a Stage-B verdict look like.

One definition, imported by the prompts that ask for these formats, the rewards
that score them, Stage-A post-processing and the evaluation metrics, so a text
that one of them accepts is never rejected by another for a different reason.
Pure Python and stdlib only (the config path imports it).

Summary (REWARDS.md, "Summary output format")::

    <DOMAIN=BBU>, <TASK=SUMMARY>
    {"dataset":"BBU","objects_total":4,"统计":[...]}

or, for an irrelevant image, the single line ``无关图片``.

Verdict (REWARDS.md, "Stage-B verdict rewards")::

    不通过
    理由: 图片_2中BBU安装螺丝不符合要求
"""

from __future__ import annotations

import json
import re

# --- special tokens ---------------------------------------------------------

# Chat special tokens (Qwen <|im_end|>, <|im_start|>, <|endoftext|>, Llama <|eot_id|>, ...):
# every token of this shape is removed before a text is read, whichever component reads it.
SPECIAL_TOKEN_RE = re.compile(r"<\|[A-Za-z0-9_]+\|>")


def strip_special_tokens(text: str) -> str:
    """``text`` without any ``<|name|>`` chat token (one pass)."""
    # The membership test is much cheaper than a regex pass, and most texts have no token.
    return SPECIAL_TOKEN_RE.sub("", text) if "<|" in text else text


# --- summary ----------------------------------------------------------------

IRRELEVANT = "无关图片"  # the whole output for an irrelevant image
HEADER_TEMPLATE = "<DOMAIN={}>, <TASK=SUMMARY>"
# The shape summary.format accepts as line 1 (any upper-case domain and task, exact spacing).
HEADER_SHAPE_RE = re.compile(r"<DOMAIN=[A-Z]+>, <TASK=[A-Z]+>")
# A header-like line 1 as models actually write it (any value, loose spacing): what Stage-A
# post-processing drops before keeping the JSON line.
HEADER_LIKE_RE = re.compile(r"^<DOMAIN=[^>]*>\s*,\s*<TASK=[^>]*>")


def summary_header(domain: str) -> str:
    """Line 1 of a relevant image's summary of ``domain``."""
    return HEADER_TEMPLATE.format(domain)


def postprocess_summary(raw: str) -> str:
    """A Stage-A model output reduced to what a record stores for one image.

    Special tokens removed; anything starting with ``无关图片`` (also after the
    header) becomes exactly ``无关图片``; the header line and code fences are
    dropped; the first line starting with ``{`` is kept (else the first
    remaining line). The result is stripped; it may be empty (nothing usable).
    """
    text = strip_special_tokens(raw).strip()
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("```")]
    if lines and HEADER_LIKE_RE.match(lines[0]):
        lines = lines[1:]
    if not lines:
        return ""
    if lines[0].startswith(IRRELEVANT):
        return IRRELEVANT
    for line in lines:
        if line.startswith("{"):
            return line
    return lines[0]


def summary_object(summary: str) -> dict | None:
    """The JSON object one image's summary states (read as :func:`postprocess_summary` keeps it), or None: an
    irrelevant image, an empty answer, anything that is not one JSON object."""
    line = postprocess_summary(summary)
    if not line or line == IRRELEVANT:
        return None
    obj = _json_value(line)
    return obj if isinstance(obj, dict) else None


#: What :func:`_json_value` returns for a line that is not JSON (``None`` is JSON's ``null``).
_NOT_JSON = object()


def _json_value(line: str) -> object:
    """The JSON value of one summary line, or :data:`_NOT_JSON`: the one place that decides what parses, for
    :func:`summary_object` and :func:`summary_problem` alike."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _NOT_JSON


def summary_problem(summary: object) -> str | None:
    """Why one image's summary says nothing a verdict can use, or None when it does: exactly ``无关图片``,
    or one JSON object, with or without its header line (read as :func:`postprocess_summary` keeps it;
    the mission's rules read it so too, bbuqc/missions/rules.py)."""
    if not isinstance(summary, str):
        return f"not text ({type(summary).__name__})"
    line = postprocess_summary(summary)
    if line == IRRELEVANT:
        return None
    if not line:
        return "empty"
    obj = _json_value(line)
    if obj is _NOT_JSON:
        return "not JSON"
    return None if isinstance(obj, dict) else "not a JSON object"


def summary_usable(summary: str) -> bool:
    """Whether a Stage-A output says something a verdict can use (:func:`summary_problem` finds nothing)."""
    return summary_problem(summary) is None


# --- verdict ----------------------------------------------------------------

PASS = "通过"
FAIL = "不通过"
VERDICTS = (PASS, FAIL)
# Words of a third state a hedging model may write instead of a verdict. They can never
# equal a valid line 1, so parse_verdict already rejects them; listed for docs and tests.
THIRD_STATE_WORDS = ("需复核", "证据不足", "待定", "无法判断")
REASON_PREFIX = "理由: "  # what a reference answer writes; either colon is accepted
_REASON_LINE_RE = re.compile(r"理由[:：]\s*(.+)")


def verdict_text(text: str) -> str:
    """The answer as the verdict protocol reads it: special tokens and trailing whitespace removed.

    Leading whitespace is kept, so a leading blank line is a line.
    """
    return strip_special_tokens(text).rstrip()


def verdict_answer(verdict: str, reason: str) -> str:
    """The two-line answer for ``verdict`` and ``reason`` (whitespace runs collapsed)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be {PASS!r} or {FAIL!r}, got {verdict!r}")
    reason = " ".join(reason.split())
    if not reason:
        raise ValueError("reason must be non-empty")
    return f"{verdict}\n{REASON_PREFIX}{reason}"


def parse_verdict(text: object) -> tuple[str | None, str | None]:
    """``(verdict, reason)`` of a two-line answer, ``(None, None)`` when it breaks the protocol.

    The rule of ``verdict.format``: :func:`verdict_text`, then exactly two lines;
    line 1 stripped is 通过 or 不通过 (a third-state word never is); line 2 stripped
    matches ``理由[:：]\\s*.+``. The reason is the text after the colon, stripped.
    Anything but a str is no answer.
    """
    if not isinstance(text, str):
        return None, None
    lines = verdict_text(text).splitlines()
    if len(lines) != 2:
        return None, None
    verdict = lines[0].strip()
    if verdict not in VERDICTS:
        return None, None
    match = _REASON_LINE_RE.fullmatch(lines[1].strip())
    if match is None:
        return None, None
    return verdict, match.group(1)
