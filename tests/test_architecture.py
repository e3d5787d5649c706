"""The package's shape: data flows one way, so no import cycle among zephir's parts nor among
its modules, and the models know nothing of trainers, checkpoint files or ranks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "zephir"


def _module_of(path: Path) -> str:
    """zephir/report/tables.py -> zephir.report.tables; zephir/report/__init__.py ->
    zephir.report."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_statements(path: Path):
    """(module, names) of each import in a file, at the top or inside a function: ``import
    a.b`` gives ("a.b", []), ``from .c import d`` the absolute module of ``c`` and ["d"]."""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]  # a module's package; an __init__'s own package
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[:len(package) - node.level + 1]) if node.level else "")
            yield ".".join(p for p in (base, node.module or "") if p), [a.name for a in node.names]


def _imports(path: Path) -> set[str]:
    """Every zephir module or name a file imports, at the top or inside a function."""
    out = set()
    for module, names in _import_statements(path):
        out.add(module)
        out.update(f"{module}.{n}" for n in names)
    return {m for m in out if m.split(".")[0] == "zephir"}


def _modules() -> dict[str, Path]:
    """Every module of zephir by dotted name."""
    return {_module_of(path): path for path in PACKAGE.rglob("*.py")}


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The zephir modules a file imports: for ``from a.b import c`` the module ``a.b.c`` where
    ``c`` is one, else ``a.b`` (whose name ``c`` is)."""
    out = set()
    for module, names in _import_statements(path):
        out.update({f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names}
                   if names else {module})
    return out & modules


def _module_graph() -> dict[str, set[str]]:
    """Module -> the zephir modules it imports (a package's ``__init__`` is the package)."""
    modules = _modules()
    names = set(modules)
    return {name: _module_imports(path, names) - {name} for name, path in modules.items()}


def _part(module: str) -> str | None:
    """zephir.hdclip.model -> hdclip; zephir.io -> io; zephir -> None."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    candidate = PACKAGE / parts[1]
    if candidate.is_dir() or candidate.with_suffix(".py").is_file():
        return parts[1]
    return None


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        src = _part(".".join(path.relative_to(REPO).with_suffix("").parts))
        if src is None:
            continue
        for module in _imports(path):
            dst = _part(module)
            if dst is not None and dst != src:
                edges.setdefault(src, set()).add(dst)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search with a stack of grey nodes)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(edges):
        if colour.get(node) is None and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_zephir_parts():
    edges = _graph()
    assert "hdclip" in edges and "training" in edges  # the graph was read
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_module_graph_reads_imports_inside_functions_and_from_packages():
    edges = _module_graph()
    # captions imports zephir.metrics.estimation inside a function; registry names its
    # modules through ``from zephir.report import captions, render``
    assert "zephir.metrics.estimation" in edges["zephir.report.captions"]
    assert {"zephir.report.captions", "zephir.report.render"} <= edges["zephir.report.registry"]
    assert "zephir.report" not in edges["zephir.report.registry"]


def test_no_import_cycle_among_zephir_modules():
    """No module reaches itself through imports, at the top or inside functions (a lazy import
    hides a circle from Python, not from a reader)."""
    cycle = _cycle(_module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("low,high", [
    ("hdclip", "training"), ("hdclip", "checkpoints"), ("hdclip", "methods"),
    ("baselines", "training"), ("baselines", "checkpoints"), ("estimators", "hdclip"),
    ("degrade", "hdclip"), ("schema", "config"),
])
def test_lower_layers_do_not_import_higher_ones(low, high):
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in _graph().get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert high not in reach(low), f"{low} reaches {high}"
