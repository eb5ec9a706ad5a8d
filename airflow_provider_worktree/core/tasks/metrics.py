"""What the built-in tasks measure: TODO markers in comments, missing public docstrings, the tests of a test
module and its skip markers, and which paths are test code.

Plain functions over a file's text (or a worktree file read through the sandbox's path guard), used by the task
classes' ``measure`` and discovery, and by the offline model in ``testing`` (which must agree with them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

from airflow_provider_worktree.core.files.ranges import parse_python
from airflow_provider_worktree.core.sandbox.paths import SandboxViolation, read_repo_bytes

__all__ = ["count_todo_markers"]

# A marker counts only inside a comment: after a comment leader on the same line.
_TODO_LINE_RE = re.compile(
    r"(?:#|//|/\*|<!--|--|^[ \t]*\*)(?:.*?)(?<![A-Za-z0-9_])(?:TODO|FIXME|XXX|HACK)(?![A-Za-z0-9_])", re.M
)
_TODO_LEADER_RE = re.compile(r"#|//|/\*|<!--|--|^[ \t]*\*")
_TODO_WORD_RE = re.compile(r"(?<![A-Za-z0-9_])(?:TODO|FIXME|XXX|HACK)(?![A-Za-z0-9_])")
#: The same rule as an ERE for ``git grep -E`` (discovery), kept equivalent to _TODO_LINE_RE.
_TODO_GREP_ERE = r"(#|//|/\*|<!--|--|^[[:space:]]*\*)(.*[^A-Za-z0-9_])?(TODO|FIXME|XXX|HACK)([^A-Za-z0-9_]|$)"


#: Largest file a metric reads (bytes); a larger one counts as missing.
_METRIC_MAX_BYTES = 8_000_000


def count_todo_markers(text: str) -> int:
    """Number of TODO/FIXME/XXX/HACK markers inside comments (after ``#``, ``//``, ``/*``, ``<!--``,
    ``--`` or a leading ``*``) in ``text``."""
    total = 0
    for match in _TODO_LINE_RE.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.start())
        line = text[line_start:len(text) if line_end == -1 else line_end]
        leader = _TODO_LEADER_RE.search(line)
        total += len(_TODO_WORD_RE.findall(line[leader.start():])) if leader else 1
    return total


def _read_text(path: Path, root: Path | None = None) -> str | None:
    """The text of a repository file (invalid UTF-8 replaced; "" for binary); None when it is missing, leaves
    ``root`` (default: its directory), is not a regular file or is over :data:`_METRIC_MAX_BYTES`."""
    try:
        data = read_repo_bytes(root if root is not None else path.parent, path, max_bytes=_METRIC_MAX_BYTES)
    except (OSError, SandboxViolation):
        return None
    if b"\0" in data[:8192]:
        return ""
    return data.decode("utf-8", errors="replace")


def _missing_docstrings(source: str) -> list[tuple[str, int]]:
    """``(name, line)`` of the public module/class/function docstrings missing in ``source`` (the module is
    ``<module>`` at line 1). Raises SyntaxError. Private names (leading ``_``) and functions nested in functions
    are not counted; an empty module is not counted."""
    tree = parse_python(source)
    missing: list[tuple[str, int]] = []
    if tree.body and ast.get_docstring(tree) is None:
        missing.append(("<module>", 1))

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                qual = f"{prefix}{node.name}"
                if ast.get_docstring(node) is None:
                    missing.append((qual, node.lineno))
                if isinstance(node, ast.ClassDef):
                    visit(node.body, qual + ".")

    visit(tree.body, "")
    return missing


def _docstring_report(source: str) -> tuple[int, list[str]]:
    """(missing count, names) of the public docstrings missing in ``source`` (see _missing_docstrings)."""
    missing = _missing_docstrings(source)
    return len(missing), [name for name, _ in missing]


_SKIP_NAMES = {"skip", "skipif", "skipIf", "skipUnless", "xfail", "skipTest"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _is_skip(node: ast.AST) -> bool:
    name = _dotted(node)
    return bool(name) and name.rsplit(".", 1)[-1] in _SKIP_NAMES


def _test_report(source: str, rel: str) -> tuple[list[str], int]:
    """(test ids, skip markers) of a test module: ``test*`` functions at module level or in ``Test*``
    classes; skips are skip/skipif/xfail decorators, ``pytest.skip()``/``self.skipTest()`` calls and a
    skipping ``pytestmark``."""
    tree = ast.parse(source)
    ids: list[str] = []
    skips = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skips += sum(1 for d in node.decorator_list if _is_skip(d))
        elif isinstance(node, ast.Call) and _is_skip(node.func) and _dotted(node.func) in {
                "pytest.skip", "self.skipTest", "pytest.xfail", "unittest.skip"}:
            skips += 1
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                  for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            skips += sum(1 for v in values if _is_skip(v))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            ids.append(f"{rel}::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    ids.append(f"{rel}::{node.name}::{item.name}")
    return ids, skips


def _is_test_path(path: str) -> bool:
    p = PurePosixPath(path)
    return (any(part in ("tests", "test") for part in p.parts[:-1]) or p.name.startswith("test_")
            or p.name.endswith("_test.py") or p.name == "conftest.py")
