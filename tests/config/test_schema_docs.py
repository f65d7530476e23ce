"""The schema explains itself: every field has a comment, and README's config table names real fields."""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

from bbuqc.config import schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(schema.__file__)


def _commented_lines(source: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}


def test_every_schema_field_has_a_comment():
    """A comment on the field's line, or a comment line right above it (which may describe a group)."""
    source = SCHEMA.read_text(encoding="utf-8")
    comments = _commented_lines(source)
    lines = source.splitlines()
    missing = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef) or node.name == "BBUQCConfig":
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign):
                above = lines[stmt.lineno - 2].strip()
                if stmt.lineno not in comments and not above.startswith("#"):
                    missing.append(f"{node.name}.{stmt.target.id}")
    assert not missing, f"fields without a comment in {SCHEMA.name}: {missing}"


def _schema_fields() -> dict[str, set[str]]:
    root = schema.BBUQCConfig()
    return {
        f.name: {g.name for g in dataclasses.fields(getattr(root, f.name))}
        for f in dataclasses.fields(root)
        if dataclasses.is_dataclass(getattr(root, f.name))
    }


def test_readme_config_table_names_real_nodes_and_fields():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Config groups"):]
    table = table[: table.index("\n\n", table.index("| --- |"))]
    fields = _schema_fields()
    named = set()
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        nodes = re.findall(r"`(\w+)`", cells[0])
        named.update(nodes)
        if cells[1] == "node":  # the row lists the node's fields
            for node in nodes:
                for name in re.findall(r"`(\w+)`", cells[2]):
                    assert name in fields[node], f"README's config table lists {node}.{name}; the schema has no such field"
    assert set(fields) <= named, f"config nodes missing from README's table: {sorted(set(fields) - named)}"
