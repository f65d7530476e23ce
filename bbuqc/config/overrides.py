"""How to quote a command-line override whose value has non-ASCII characters (Chinese paths).

Hydra's override grammar (``hydra/grammar/OverrideLexer.g4``) accepts unquoted values made of
``CHAR: [a-zA-Z]``, digits, ``_``, ``-``, ``/\\+.$%*@?|`` and spaces only: any other character,
such as ``审`` in ``data.root=/data/审核通过``, is a lexer "token recognition error" and the run
exits before the config is composed. A quoted value (``'...'`` or ``"..."``, the whole value,
or each element of a list or sweep) takes any character. The quotes must reach Hydra, so in a
shell the override is quoted once more::

    python -m bbuqc.infer "data.root='/data/审核通过'"
    python -m bbuqc.train "data.stage_a_jsonl=['/data/审核/a.jsonl','/data/审核/b.jsonl']"

(``data.root='/data/审核通过'`` typed into bash loses its quotes before Python sees it.)
``override_parse_hint`` gives the entry point the line to print next to Hydra's error.
"""

from __future__ import annotations

import shlex

_SHELL_SAFE_IN_DOUBLE_QUOTES = frozenset('"$`\\!')


def _quote_element(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text  # already quoted
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_top_level(value: str) -> list[str]:
    """Comma-separated parts outside quotes (a list's elements, a sweep's choices)."""
    parts, current, quote = [], [], None
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def quoted_override(override: str) -> str:
    """The override with its value (or each element of a ``[...]`` list or ``a,b`` sweep) quoted."""
    key, _, value = override.partition("=")
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        return f"{key}=[{','.join(_quote_element(p) for p in _split_top_level(inner))}]"
    return f"{key}={','.join(_quote_element(p) for p in _split_top_level(value))}"


def _shell_word(text: str) -> str:
    """``text`` as one shell word, keeping Hydra's inner single quotes readable."""
    if not _SHELL_SAFE_IN_DOUBLE_QUOTES & set(text):
        return f'"{text}"'
    return shlex.quote(text)


def _parses(parser, override: str) -> bool:
    from hydra.errors import HydraException

    try:
        parser.parse_override(override)
    except HydraException:
        return False
    return True


def override_parse_hint(argv: list[str]) -> str | None:
    """The line (without ``error:``; the entry point adds it) for the first command-line override that Hydra cannot parse because its
    value has unquoted non-ASCII characters (``data.root=/data/审核通过``), naming how to type it
    in a shell; None when every override parses or the failure has another cause."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = None
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue  # Hydra's own flags (--cfg job, -m, --config-name=...) are not overrides
        value = arg.partition("=")[2]
        if value.isascii():
            continue
        parser = parser or OverridesParser.create()
        if _parses(parser, arg):
            continue
        fixed = quoted_override(arg)
        if fixed == arg or not _parses(parser, fixed):
            continue
        return (
            f"{arg}: Hydra's override grammar takes non-ASCII characters only inside quotes; "
            f"quote the value, and the override for the shell, like: {_shell_word(fixed)}"
        )
    return None
