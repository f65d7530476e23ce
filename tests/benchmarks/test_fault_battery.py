"""docs/errors.md and the fault battery list the same bad inputs: each table row's id is a case the
battery runs (`python -m benchmarks.fault_battery`), and each case is a row."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.fault_battery import CASES, COMMANDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(rf"^\| `((?:{'|'.join(COMMANDS)})\.[a-z0-9-]+)` \|")


def doc_rows() -> dict[str, str]:
    """id -> the command whose section (`## bbuqc-<command>`) holds the row."""
    rows, section = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            found = re.search(r"bbuqc-(\w+)", line)
            section = found.group(1) if found else None
        m = ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"docs/errors.md lists {m.group(1)} twice"
            rows[m.group(1)] = section
    return rows


def test_every_row_of_the_doc_is_tried_and_every_case_is_documented():
    rows = doc_rows()
    assert sorted(set(rows) - set(CASES)) == [], "rows of docs/errors.md the battery does not try"
    assert sorted(set(CASES) - set(rows)) == [], "battery cases docs/errors.md does not list"


def test_each_row_sits_in_its_command_section():
    assert {i: s for i, s in doc_rows().items() if s != CASES[i].command} == {}

