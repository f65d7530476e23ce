"""The quoting hint for overrides with non-ASCII values (Hydra's grammar refuses them unquoted)."""

from __future__ import annotations

import shlex

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from bbuqc.config.overrides import override_parse_hint, quoted_override

PARSER = OverridesParser.create()


def test_hydra_really_refuses_the_unquoted_chinese_path():
    with pytest.raises(HydraException, match="token recognition error at: '审'"):
        PARSER.parse_override("data.root=/data/审核通过")
    assert PARSER.parse_override("data.root='/data/审核通过'").value() == "/data/审核通过"


def test_hint_for_an_unquoted_chinese_path():
    hint = override_parse_hint(["mission=bbu_wind", "data.root=/data/审核通过", "infer.batch_size=4"])
    assert hint == (
        "data.root=/data/审核通过: Hydra's override grammar takes non-ASCII characters only inside "
        "quotes; quote the value, and the override for the shell, like: \"data.root='/data/审核通过'\""
    )
    # what the shell hands Python from the suggested word parses, to the same path
    (word,) = shlex.split(hint.rsplit("like: ", 1)[1])
    assert PARSER.parse_override(word).value() == "/data/审核通过"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.stage_a_jsonl=[/d/审核/a.jsonl,/d/b.jsonl]", ["/d/审核/a.jsonl", "/d/b.jsonl"]),
        ("data.stage_a_jsonl=['/d/审核/a.jsonl',/d/审/b.jsonl]", ["/d/审核/a.jsonl", "/d/审/b.jsonl"]),
        ("+data.root=/d/it's 审核", "/d/it's 审核"),
        ("data.root=/data/café", "/data/café"),
    ],
)
def test_the_suggestion_parses_to_the_intended_value(override, expected):
    hint = override_parse_hint([override])
    assert hint is not None
    (word,) = shlex.split(hint.rsplit("like: ", 1)[1])
    assert word == quoted_override(override)
    assert PARSER.parse_override(word).value() == expected


def test_sweeps_quote_each_choice():
    fixed = quoted_override("data.root=/a/审,/b/审")
    assert fixed == "data.root='/a/审','/b/审'"
    choices = list(PARSER.parse_override(fixed).sweep_string_iterator())  # what each job gets
    assert [PARSER.parse_override(f"data.root={c}").value() for c in choices] == ["/a/审", "/b/审"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["data.root=/data/ok", "--cfg", "job", "-m"],
        ["data.root='/data/审核通过'"],  # already quoted: parses
        ["data.root=/data/'x"],  # broken, but not by non-ASCII characters
        ["--config-name=审核"],  # not an override
    ],
)
def test_no_hint_when_not_needed(argv):
    assert override_parse_hint(argv) is None
