"""Text and JSON parsing shared by every summary reward (REWARDS.md, "Parsing").

Everything here is a pure function of its arguments; caching lives in
``context.py``. Nothing here raises on model output: arbitrary text is input.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache

from bbuqc.protocol import strip_special_tokens, summary_header


class _Invalid:
    """Marker for "not valid JSON"; distinct from a JSON ``null`` (None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"

    def __bool__(self) -> bool:
        return False


INVALID = _Invalid()


def raw_text(completion: object) -> str:
    """The completion's text before cleaning; anything unrecognised is ''."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        text = completion.get("text")
        return text if isinstance(text, str) else ""
    if isinstance(completion, (list, tuple)):
        parts = []
        for part in completion:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                # Parts of another type (an image, a tool call) carry no text.
                if isinstance(text, str) and part.get("type", "text") == "text":
                    parts.append(text)
        return "".join(parts)
    return ""


def clean_text(text: str) -> str:
    """Remove the chat special tokens (bbuqc.protocol's rule), then surrounding whitespace."""
    return strip_special_tokens(text).strip()


def completion_text(completion: object) -> str:
    return clean_text(raw_text(completion))


@lru_cache(maxsize=256)  # one per domain in practice; every context asks
def expected_header(domain: str | None) -> str | None:
    return summary_header(domain) if domain else None


# ``json.loads(text)`` on a str is ``JSONDecoder.decode``: skip JSON whitespace,
# ``scan_once``, skip JSON whitespace, and "Extra data" unless at the end (a
# leading BOM is refused first, and scan_once refuses it too). The parsers
# below do exactly that with the C scanner, without the two Python frames
# (``decode``, ``raw_decode``) and the exception translation per parse.
_skip_ws = json.decoder.WHITESPACE.match
_JSON_WS = " \t\n\r"
_plain_scan = json.JSONDecoder().scan_once


def _scan(scan_once, text: str) -> object:
    """``decode(text)`` with ``scan_once``; raises on anything that is not one JSON document."""
    start = _skip_ws(text, 0).end() if text and text[0] in _JSON_WS else 0
    value, end = scan_once(text, start)
    if end != len(text) and _skip_ws(text, end).end() != len(text):
        raise ValueError("extra data")
    return value


def loads(text: str) -> object:
    """``json.loads`` or INVALID; deep nesting and 5000-digit ints included."""
    try:
        if type(text) is str:
            return _scan(_plain_scan, text)
        return json.loads(text)
    except Exception:  # any failure (StopIteration from the scanner too) means "not JSON"
        return INVALID


# One decoder, built once: a per-call ``json.loads(..., object_pairs_hook=)``
# would rebuild the C scanner each time. The hook reports duplicates through
# a flag, so calls are serialised by a lock.
_dup_lock = threading.Lock()
_dup_seen = [False]


def _pairs_to_dict(pairs: list, dict=dict, len=len, seen=_dup_seen) -> dict:
    # Called once per JSON object of every strict line: the builtins and the
    # flag are bound as defaults, so the body does no global lookups.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen[0] = True
    return result


_dup_decoder = json.JSONDecoder(object_pairs_hook=_pairs_to_dict)
_dup_scan = _dup_decoder.scan_once


def loads_with_duplicates(text: str) -> tuple[object, bool]:
    """Parse like ``json.loads`` and tell whether any object repeats a key.

    Returns ``(INVALID, False)`` when the text is not JSON. The value equals
    ``json.loads(text)`` (the last duplicate wins, as there).
    """
    with _dup_lock:
        _dup_seen[0] = False
        try:
            value = _scan(_dup_scan, text) if type(text) is str else _dup_decoder.decode(text)
        except Exception:
            return INVALID, False
        return value, _dup_seen[0]


def domain_valid(obj: object, domain: str | None) -> bool:
    """A summary object that may belong to ``domain`` (REWARDS.md, step 7)."""
    if not isinstance(obj, dict):
        return False
    if domain == "RRU" and "备注" in obj:
        return False
    if domain == "BBU" and "分组统计" in obj:
        return False
    return True


_SORTED_LISTS = ("统计", "备注")


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def canonical(value: object, key: str | None = None) -> object:
    """Order-insensitive form for exact equality (REWARDS.md, step 8).

    Recursive; a structure deep enough to hit the recursion limit raises
    RecursionError, which callers treat as "not equal".
    """
    if isinstance(value, dict):
        return {k: canonical(value[k], k) for k in sorted(value) if k != "异常"}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if key in _SORTED_LISTS:
            return sorted(_compact(item) for item in items)
        return items
    return value
