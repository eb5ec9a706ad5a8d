"""The import graph of a Python package, read with ``ast`` (function-local and ``TYPE_CHECKING`` imports included).

Used by ``test_architecture.py``: no import cycle between modules, none between ``core``'s sub-packages, and the
layers (core imports no Airflow and none of the package's faces). An import of ``pkg.name`` where ``pkg`` is a
lazy facade (``lazy_exports(__name__, {...})`` in its ``__init__``) counts as an import of the module that
defines ``name``; importing ``a.b.c`` also imports the packages ``a`` and ``a.b`` (Python runs their
``__init__`` first), except the importer's own enclosing packages, which are already being imported.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path


def module_files(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package rooted at ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _lazy_map(tree: ast.Module) -> dict[str, str]:
    """The ``{name: module}`` dict passed to ``lazy_exports`` in a package ``__init__``, if any."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports" and len(node.args) > 1
                and isinstance(node.args[1], ast.Dict)):
            return {k.value: v.value for k, v in zip(node.args[1].keys, node.args[1].values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules it imports}`` within the package rooted at ``root`` (every import, wherever it is)."""
    files = module_files(root)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in files.items()}
    lazy = {name: _lazy_map(tree) for name, tree in trees.items() if files[name].name == "__init__.py"}
    graph: dict[str, set[str]] = defaultdict(set)

    def add(src: str, target: str) -> None:
        if target not in files or target == src:
            return
        graph[src].add(target)
        parts = target.split(".")
        for i in range(1, len(parts)):        # the enclosing packages run first, unless src is inside them
            parent = ".".join(parts[:i])
            if parent in files and not (src == parent or src.startswith(parent + ".")):
                graph[src].add(parent)

    for name, tree in trees.items():
        is_package = files[name].name == "__init__.py"
        graph.setdefault(name, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in files:
                        add(name, full)
                    elif alias.name in lazy.get(base, {}):
                        add(name, lazy[base][alias.name])
                    else:
                        add(name, base)
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted; sorted by first node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def package_graph(graph: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    """The graph between the direct sub-packages (and modules) of ``prefix``: ``core.git -> core.sandbox``."""
    depth = prefix.count(".") + 2

    def unit(module: str) -> str | None:
        if not module.startswith(prefix + "."):
            return None
        return ".".join(module.split(".")[:depth])

    out: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        a = unit(src)
        if a is None:
            continue
        out.setdefault(a, set())
        for t in targets:
            b = unit(t)
            if b is not None and b != a:
                out[a].add(b)
    return dict(out)


def cycle_edges(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The edges inside one cycle, as ``a -> b`` lines, so a failure says which imports to look at."""
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in members]


def external_imports(root: Path, top: str) -> dict[str, set[str]]:
    """``{module: top-level names of the packages it imports}`` (``airflow``, ``anthropic``, ...)."""
    out: dict[str, set[str]] = {}
    for name, path in module_files(root).items():
        tops: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.split(".")[0])
        tops.discard(top)
        out[name] = tops
    return out


def sizes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """``({file: lines}, {file:Class: lines})`` for every module and top-level class under ``root``."""
    files: dict[str, int] = {}
    classes: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(root.parent))
        files[rel] = text.count("\n") + (not text.endswith("\n") and bool(text))
        for node in ast.parse(text).body:
            if isinstance(node, ast.ClassDef):
                classes[f"{rel}:{node.name}"] = node.end_lineno - node.lineno + 1
    return files, classes
