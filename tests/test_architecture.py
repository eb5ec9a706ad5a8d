"""The house stays as drawn in docs/architecture.md: no import cycle, core's packages in floors, no Airflow in
core, no god files. Read from the code with ``ast`` (tests/archcheck.py), so it holds for every import,
function-local ones included."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import archcheck

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_provider_worktree"
TOP = "airflow_provider_worktree"
CORE = f"{TOP}.core"

#: The most lines a module may have, and a class (``about 600`` and ``about 300`` in the design).
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
#: Bigger ones, each with the reason it stays whole.
LARGE_ALLOWED: dict[str, str] = {}

#: The faces of the package: core may import none of them.
FACES = ("hooks", "operators", "sensors", "triggers", "plugins", "ui", "cli", "example_dags", "testing")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return archcheck.import_graph(PACKAGE)


def _describe(graph, comps) -> str:
    return "\n".join("cycle: " + ", ".join(c) + "\n  " + "\n  ".join(archcheck.cycle_edges(graph, c))
                     for c in comps)


def test_no_import_cycle_between_modules(graph):
    comps = archcheck.cycles(graph)
    assert not comps, "import cycles (move the shared names one floor down):\n" + _describe(graph, comps)


def test_no_cycle_between_core_packages(graph):
    packages = archcheck.package_graph(graph, CORE)
    assert f"{CORE}.store" in packages and f"{CORE}.git" in packages    # the walk sees the packages at all
    comps = archcheck.cycles(packages)
    assert not comps, "core's packages import each other in a circle:\n" + _describe(packages, comps)


def test_core_imports_no_airflow_and_no_face(graph):
    external = archcheck.external_imports(PACKAGE, TOP)
    offenders = {m: sorted(t & {"airflow"}) for m, t in external.items() if m.startswith(CORE) and "airflow" in t}
    assert not offenders, f"core modules import Airflow: {offenders}"
    faces = {f"{TOP}.{f}" for f in FACES}
    climbing = {m: sorted(t for t in ts if any(t == f or t.startswith(f + ".") for f in faces))
                for m, ts in graph.items() if m.startswith(CORE)}
    climbing = {m: ts for m, ts in climbing.items() if ts}
    assert not climbing, f"core modules import the package's faces: {climbing}"


def _may_import(init: Path) -> set[str]:
    """The ``core.X`` names after "May import:" in a package's docstring (up to the paragraph's end)."""
    doc = (init.read_text().split('"""') + ["", ""])[1]
    assert "May import" in doc, f"{init.relative_to(ROOT)}: the docstring says what the package may import"
    paragraph = doc.split("May import", 1)[1].split("\n\n", 1)[0]
    return {f"{TOP}.{name}" for name in re.findall(r"``(core\.\w+)``", paragraph)}


def test_every_core_package_imports_only_what_its_docstring_allows(graph):
    packages = archcheck.package_graph(graph, CORE)
    inits = sorted((PACKAGE / "core").glob("*/__init__.py"))
    assert len(inits) >= 9
    wrong = {}
    for init in inits:
        name = f"{CORE}.{init.parent.name}"
        allowed = _may_import(init)
        assert allowed, f"{init.relative_to(ROOT)}: no ``core.X`` names read in its May import"
        extra = sorted(t for t in packages.get(name, ()) if t not in allowed and t != name)
        if extra:
            wrong[name] = extra
    assert not wrong, f"core packages import more than their docstring's 'May import' says: {wrong}"


@pytest.mark.parametrize("where", ["airflow_provider_worktree", "scripts"])
def test_no_god_files(where):
    files, classes = archcheck.sizes(ROOT / where)
    big = {f: n for f, n in files.items() if n > MAX_MODULE_LINES and f not in LARGE_ALLOWED}
    huge = {c: n for c, n in classes.items() if n > MAX_CLASS_LINES and c not in LARGE_ALLOWED}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"
    assert not huge, f"classes over {MAX_CLASS_LINES} lines: {huge}"


# ----------------------------------------------------------------------------- the checker itself can fail

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_deliberate_cycle_is_found_even_inside_a_function(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import helper\n",
        "b.py": "def helper():\n    from pkg import a  # hidden in a function\n    return a\n",
        "c.py": "import pkg.a\n",
    })
    graph = archcheck.import_graph(root)
    assert archcheck.cycles(graph) == [["pkg.a", "pkg.b"]]
    assert archcheck.cycle_edges(graph, ["pkg.a", "pkg.b"]) == ["pkg.a -> pkg.b", "pkg.b -> pkg.a"]


def test_a_cycle_through_a_lazy_facade_and_a_parent_package_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "from pkg._lazy import lazy_exports\n"
                           "__getattr__, __all__ = lazy_exports(__name__, {'Thing': 'pkg.low.things'})\n",
        "low/things.py": "from ..high.user import use\nclass Thing: ...\n",
        "high/__init__.py": "from pkg.high import user\n",
        "high/user.py": "from pkg.low import Thing\ndef use(): return Thing\n",
    })
    graph = archcheck.import_graph(root)
    comps = archcheck.cycles(graph)
    assert comps and "pkg.low.things" in comps[0] and "pkg.high.user" in comps[0]
    assert archcheck.cycles(archcheck.package_graph(graph, "pkg")) == [["pkg.high", "pkg.low"]]


def test_an_acyclic_package_passes(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "import os\n",
        "sub/__init__.py": "from .x import X\n",
        "sub/x.py": "from pkg.sub import y\nX = 1\n",
        "sub/y.py": "",
    })
    assert archcheck.cycles(archcheck.import_graph(root)) == []
