"""bbuqc's import structure, read from the source (every import statement, those inside functions too):
bbuqc/config is a leaf (it imports nothing from training/, models/ or sweep/), and no two of bbuqc's
packages (or top-level modules) import each other, directly or through others."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import bbuqc

PACKAGE = Path(bbuqc.__file__).parent
#: What config/ may not import: config is read by every command, and these read files, models and runs.
NOT_FROM_CONFIG = ("training", "models", "sweep")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """Every bbuqc module ``path`` imports, with its line: ``import a.b``, ``from a import b`` (as ``a.b``,
    which may name a module or a name in ``a``), and relative imports resolved against ``path``'s package."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(n, ast.Import):
            found += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - n.level + 1])
                source = f"{base}.{n.module}" if n.module else base
            else:
                source = n.module or ""
            found += [(f"{source}.{a.name}", n.lineno) for a in n.names]
    return [(name, line) for name, line in found if name == "bbuqc" or name.startswith("bbuqc.")]


def unit(module: str) -> str:
    """The package (``bbuqc.config.schema`` -> ``config``) or top-level module (``bbuqc.cli`` -> ``cli``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bbuqc"


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``{unit: {imported unit: ["file:line", ...]}}`` over every module under ``root``."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        source = unit(_module_name(path, root))
        for name, line in imports(path, root):
            target = unit(name)
            where = f"{path.relative_to(root.parent)}:{line}"
            if target != source and where not in graph[source][target]:
                graph[source][target].append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one unit (Tarjan), as a path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(graph, set(c), c[0]) for c in components]


def _path_through(graph, component: set[str], start: str) -> list[str]:
    """A shortest cycle from ``start`` back to itself inside ``component`` (breadth first)."""
    previous: dict[str, str] = {start: start}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w in component and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _describe(graph, cycle: list[str]) -> str:
    return " -> ".join(cycle) + " (" + "; ".join(
        f"{a} -> {b} at {', '.join(graph[a][b][:2])}" for a, b in zip(cycle, cycle[1:])) + ")"


def test_config_imports_nothing_from_training_models_or_sweep():
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
           for path in sorted((PACKAGE / "config").rglob("*.py"))
           for name, line in imports(path) if unit(name) in NOT_FROM_CONFIG]
    assert not bad, "bbuqc/config must stay a leaf:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "bbuqc" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "bbuqc"


def test_the_checks_see_function_level_and_relative_imports(tmp_path):
    """The reading the two tests above rely on: a lazy import inside a function and a relative import
    count, and a cycle through three packages is found and named with its lines."""
    root = _write(tmp_path, {
        "__init__.py": "",
        "config/__init__.py": "",
        "config/schema.py": "def f():\n    from bbuqc.training.args import OWNED\n",
        "training/__init__.py": "",
        "training/args.py": "from ..models import x\n",
        "models/__init__.py": "",
        "models/x.py": "import bbuqc.config.schema\n",
        "io/__init__.py": "",
        "io/jsonl.py": "from . import atomic\n",
    })
    assert imports(root / "config" / "schema.py", root) == [("bbuqc.training.args.OWNED", 2)]
    assert imports(root / "training" / "args.py", root) == [("bbuqc.models.x", 1)]
    graph = import_graph(root)
    assert "io" not in graph  # a package importing itself is no edge
    [cycle] = cycles(graph)
    assert cycle == ["config", "training", "models", "config"]
    assert "bbuqc/config/schema.py:2" in _describe(graph, cycle)
