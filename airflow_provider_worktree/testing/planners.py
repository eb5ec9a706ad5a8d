"""What the rule-based model changes in a file, per task, planned on the file's lines as read (a prefix of the
file while it is read chunk by chunk): ``todo`` resolves the markers in comments, ``docstrings`` adds the
docstrings the metric counts (a Python file that parsed keeps parsing), ``tests`` writes a test module per
module. A change replaces a range of lines; :mod:`.edits` turns changes into tool calls.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from airflow_provider_worktree.core.tasks.metrics import _TODO_LEADER_RE, _TODO_WORD_RE, _dotted

_MARKER_SUB = re.compile(_TODO_WORD_RE.pattern + r"(?:\([^)]*\))?:?[ \t]*")


@dataclass(frozen=True)
class Change:
    """Replace lines ``[start, end)`` (0-based, of the file as read) by ``new``; ``start == end`` inserts."""

    start: int
    end: int
    new: tuple[str, ...]


def in_range(changes: list[Change], lines: Any) -> list[Change]:
    """The changes a range shard may make: those starting in its ``lines`` ``[first, last]`` (1-based, as the
    planner gives them for one big file split into several shards); all of them when the shard has no range."""
    if not (isinstance(lines, (list, tuple)) and len(lines) == 2 and all(isinstance(n, int) for n in lines)):
        return changes
    first, last = lines
    return [ch for ch in changes if first - 1 <= ch.start <= last - 1]


def _char_col(line: str, byte_col: int) -> int:
    """``ast`` columns are UTF-8 byte offsets; string indexes are characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def _resolve_markers(comment: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return "NOTE(resolved):" if m.end() == len(comment) else "NOTE(resolved): "
    return _MARKER_SUB.sub(sub, comment)


# Python comments, and the string literals that may hold a "#": on the real corpora of the tests (mypy, flask,
# click, attrs, requests) this finds exactly the comments tokenize finds, at a fifteenth of its cost.
_PY_SCAN = re.compile(
    r"(?P<c>#[^\r\n]*)"
    r'|"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)'  # unterminated: the read so far ends inside this string
    r"|'''(?:[^'\\]|\\.|'(?!''))*(?:'''|\Z)"
    r'|"(?:[^"\\\r\n]|\\.)*"'
    r"|'(?:[^'\\\r\n]|\\.)*'", re.S)


def _python_comments(lines: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(row, col, text)`` (0-based) of every comment of a Python source; strings are skipped."""
    text = "\n".join(lines)
    out, row, row_start = [], 0, 0
    for m in _PY_SCAN.finditer(text):
        if m.group("c") is None:
            continue
        while m.start() > row_start + len(lines[row]):
            row_start += len(lines[row]) + 1
            row += 1
        out.append((row, m.start() - row_start, m.group("c")))
    return out


def _plan_todo(path: str, lines: tuple[str, ...]) -> list[Change]:
    """One change per line with a marker in a comment: the marker becomes ``NOTE(resolved):``. In Python files
    only comments are touched (never strings or code), so the file stays valid Python."""
    new_lines: dict[int, str] = {}
    if path.endswith((".py", ".pyi")):
        for row, col, comment in _python_comments(lines):
            if _TODO_WORD_RE.search(comment):
                line = lines[row]
                new_lines[row] = line[:col] + _resolve_markers(comment) + line[col + len(comment):]
    else:
        for row, line in enumerate(lines):
            leader = _TODO_LEADER_RE.search(line)
            if leader and _TODO_WORD_RE.search(line[leader.start():]):
                new_lines[row] = line[:leader.start()] + _resolve_markers(line[leader.start():])
    return [Change(row, row + 1, (new,)) for row, new in sorted(new_lines.items()) if new != lines[row]]


def _is_overload(node: ast.AST) -> bool:
    return any(_dotted(d).rsplit(".", 1)[-1] == "overload" for d in getattr(node, "decorator_list", ()))


def _doc_targets(tree: ast.Module) -> list[ast.AST]:
    """The definitions the docstrings metric counts (core.tasks._docstring_report: public, module level or in
    public classes, recursively), minus ``@overload`` stubs: the implementation carries the docstring (the first
    stub does when a scope has no implementation)."""
    targets: list[ast.AST] = []

    def visit(body: list[ast.stmt]) -> None:
        implemented = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and not _is_overload(n)}
        stubbed: set[str] = set()
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                if _is_overload(node):
                    if node.name not in implemented and node.name not in stubbed:
                        targets.append(node)
                    stubbed.add(node.name)
                else:
                    targets.append(node)
            if isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return targets


def _indent_unit(lines: Sequence[str]) -> str:
    for line in lines:
        if line[:1] in (" ", "\t") and line.strip():
            return "\t" if line[0] == "\t" else "    "
    return "    "


def _header_colon(lines: Sequence[str], node: ast.AST) -> tuple[int, int] | None:
    """(row, char col) of the ``:`` that ends a ``def``/``class`` header, found without tokenizing the file: start
    after the header's last part that ``ast`` locates (return annotation, last parameter or default, last base or
    keyword, else the name) and skip what may follow it (spaces, comments, line continuations, ``, ( ) * /``).
    None when something else is met; the caller then tokenizes."""
    if isinstance(node, ast.ClassDef):
        parts: list[ast.AST] = [*node.bases, *node.keywords]
    elif node.returns is not None:
        parts = [node.returns]
    else:
        a = node.args
        parts = [x for x in (*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg, *a.defaults, *a.kw_defaults)
                 if x is not None]
    if parts:
        last = max(parts, key=lambda x: (x.end_lineno, x.end_col_offset))
        row = last.end_lineno
        col = _char_col(lines[row - 1], last.end_col_offset)
    else:
        row = node.lineno
        line = lines[row - 1]
        m = re.compile(r"(?:async\s+)?(?:def|class)\s+" + re.escape(node.name)).match(line, _char_col(line, node.col_offset))
        if m is None:
            return None
        col = m.end()
    while row <= len(lines):
        line = lines[row - 1]
        while col < len(line):
            ch = line[col]
            if ch == ":":
                return row, col
            if ch == "#" or (ch == "\\" and col == len(line) - 1):
                break
            if not (ch.isspace() or ch in ",()*/"):
                return None
            col += 1
        row, col = row + 1, 0
    return None


def _header_colon_tokenized(text: str, row: int, col: int) -> tuple[int, int] | None:
    """The same by tokenizing (slow on big files; only for headers the scan above cannot read)."""
    depth, started = 0, False
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if not started:
                started = tok.start == (row, col) and tok.type == tokenize.NAME
                if not started:
                    continue
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ":" and depth == 0:
                    return tok.start
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    return None


def _plan_docstrings(path: str, lines: tuple[str, ...], partial: bool = False) -> list[Change]:
    """One change per definition missing a docstring (as the metric counts them): a docstring line right after
    the full header (decorators and multi-line signatures included), indented like the body; a one-line body
    (``def f(): ...``) is split so the docstring comes first. The module docstring goes after the leading
    comments (shebang, encoding, licence), before any ``from __future__`` import."""
    if not path.endswith(".py"):
        return []
    text = "\n".join(lines) + "\n"
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    unit = _indent_unit(lines)
    changes: list[Change] = []
    for node in _doc_targets(tree):
        if partial and _is_overload(node):
            continue
        kind = "Class" if isinstance(node, ast.ClassDef) else "Function"
        doc = f'"""{kind} {node.name}."""'
        head = lines[node.lineno - 1]
        col = _char_col(head, node.col_offset)
        node_indent = head[:col]
        if node_indent.strip():
            continue
        colon = _header_colon(lines, node) or _header_colon_tokenized(text, node.lineno, col)
        if colon is None:
            continue
        row, ccol = colon
        body0 = node.body[0]
        if body0.lineno > row:
            body_line = lines[body0.lineno - 1]
            indent = body_line[:_char_col(body_line, body0.col_offset)]
            if indent.strip() or len(indent) <= len(node_indent):
                indent = node_indent + unit
            changes.append(Change(row, row, (indent + doc,)))
        else:  # one-line body on the header's last line: split it
            line = lines[row - 1]
            bcol = _char_col(line, body0.col_offset)
            if line[ccol + 1:bcol].strip():
                continue
            indent = node_indent + unit
            changes.append(Change(row - 1, row, (line[:ccol + 1], indent + doc, indent + line[bcol:])))
    if tree.body and ast.get_docstring(tree) is None:
        top = 0
        while top < len(lines) and lines[top].startswith("#"):
            top += 1
        name = re.sub(r"[^0-9A-Za-z_.-]", "_", PurePosixPath(path).stem)
        changes.append(Change(top, top, (f'"""Module {name}."""',)))
    return changes


def apply_changes(lines: Sequence[str], changes: Iterable[Change]) -> list[str]:
    out = list(lines)
    for ch in sorted(changes, key=lambda c: (-c.start, -c.end)):
        out[ch.start:ch.end] = ch.new
    return out


def _parses(lines: Sequence[str]) -> bool:
    try:
        ast.parse("\n".join(lines) + "\n")
        return True
    except (SyntaxError, ValueError):
        return False


def _keep_python_valid(path: str, lines: tuple[str, ...], changes: list[Change]) -> list[Change]:
    """Drop the changes that would make a parsing Python file stop parsing (checked once for all; one by one only
    when the whole set fails). Docstring plans only: they exist for files that parse, and TODO changes stay inside
    comment tokens."""
    if not changes:
        return changes
    if _parses(apply_changes(lines, changes)):
        return changes
    return [ch for ch in changes if _parses(apply_changes(lines, [ch]))]


_STATEMENT_START = re.compile(r"\s*(?:@|def |async def |class )")


@functools.lru_cache(maxsize=64)
def plan_changes(task: str, path: str, lines: tuple[str, ...], complete: bool) -> tuple[Change, ...]:
    """The changes of one file from what was read of it (cached: the model is stateless, every turn recomputes
    them from the conversation). ``todo`` plans any prefix. ``docstrings`` on a file read in part plans the prefix
    that ends before the last ``def``/``class``/decorator line where it parses (all headers there are whole),
    leaving ``@overload`` choices to the full read."""
    if task == "todo":
        return tuple(_plan_todo(path, lines))
    if complete:
        return tuple(_keep_python_valid(path, lines, _plan_docstrings(path, lines)))
    tries = 0
    for cut in range(len(lines) - 1, 0, -1):
        if not _STATEMENT_START.match(lines[cut]) or (cut and lines[cut - 1].lstrip().startswith("@")):
            continue
        prefix = lines[:cut]
        if _parses(prefix):
            return tuple(_keep_python_valid(path, prefix, _plan_docstrings(path, prefix, partial=True)))
        tries += 1
        if tries >= 6:
            break
    return ()


def plan_tests(files: list[str]) -> list[tuple[str, str]]:
    """``tests/test_<module>.py`` for each Python module of the shard: a test that imports it the way a project's
    own tests do, by its dotted name (``src/pkg/mod.py`` is ``pkg.mod``, so its relative imports work), with the
    project's root and ``src/`` on the path; a module outside any package is loaded from its file."""
    out, used = [], set()
    for path in files:
        p = PurePosixPath(path)
        if p.suffix != ".py" or p.name.startswith("test_"):
            continue
        stem = p.stem if p.stem != "__init__" else (p.parent.name or "package")
        name = stem if stem not in used else "_".join(p.with_suffix("").parts)
        used.add(name)
        ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
        parts = list(p.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        base = "src" if parts[:1] == ["src"] else ""
        dotted = ".".join(parts[1:] if base else parts)
        package = "" if str(p.parent) in (".", base) else str(p.parent)
        by_file = (
            f'spec = importlib.util.spec_from_file_location("{ident}", ROOT / "{path}")\n'
            "module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n")
        if package:
            load = (f'if (ROOT / "{package}" / "__init__.py").is_file():   # as the project\'s own tests import it\n'
                    f'    sys.path[:0] = [str(ROOT / "{base}"), str(ROOT)]\n'
                    f'    module = importlib.import_module("{dotted}")\n'
                    "else:  # a directory of scripts, not a package: load the file itself\n"
                    + "".join("    " + ln + "\n" for ln in by_file.splitlines()))
        else:
            load = by_file
        body = (
            f'"""Smoke test for {path} (written by the offline test double)."""\n'
            "import importlib\n"
            "import importlib.util\n"
            "import pathlib\n"
            "import sys\n\n"
            "ROOT = pathlib.Path(__file__).resolve().parents[1]\n\n\n"
            f"def test_{ident}_imports():\n"
            + "".join("    " + ln + "\n" for ln in load.splitlines())
            + "    assert module is not None\n"
        )
        out.append((f"tests/test_{name}.py", body))
    return out
