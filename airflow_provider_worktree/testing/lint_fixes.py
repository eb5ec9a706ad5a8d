"""The rule-based model's lint fixes: the common mechanical findings of pyflakes, pycodestyle and ruff, planned
on a Python file read in full, each a change of whole lines that keeps the file parsing.

- unused imports (F401) in single-line ``import`` / ``from ... import`` statements at module level, outside
  ``__init__.py`` (where an import is often a re-export) and ``try`` blocks, for names that appear nowhere else
  in the module, not even in a string (``__all__``, a string annotation);
- trailing whitespace (W291, W293) outside string literals;
- comparisons to ``None``, ``True`` or ``False`` with ``==``/``!=`` (E711, E712): ``is``/``is not``;
- f-strings without placeholders (F541): the ``f`` prefix dropped (not when the text holds ``{{`` or ``}}``).

A test double, not a linter: it fixes what it can see, and nothing it cannot prove harmless.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Sequence
from pathlib import PurePosixPath

from airflow_provider_worktree.testing.planners import Change, _parses, apply_changes

__all__ = ["plan_lint_fixes"]

_F_PREFIX = re.compile(r"^([rRbBuU]*)[fF]([rR]?)(['\"])")


def _tokens(text: str) -> list[tokenize.TokenInfo] | None:
    try:
        return list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None


def _string_rows(tokens: Sequence[tokenize.TokenInfo]) -> set[int]:
    """0-based rows inside (or ending) a multi-line string: their trailing whitespace is the string's."""
    rows: set[int] = set()
    for tok in tokens:
        if tok.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)) and tok.end[0] > tok.start[0]:
            rows.update(range(tok.start[0] - 1, tok.end[0] - 1))
    return rows


def _line_edits(lines: Sequence[str], tokens: Sequence[tokenize.TokenInfo]) -> dict[int, str]:
    """Rows rewritten for E711/E712 and F541 (token positions; several edits on one row are applied right to
    left)."""
    edits: dict[int, list[tuple[int, int, str]]] = {}
    for i, tok in enumerate(tokens):
        row = tok.start[0] - 1
        if tok.type == tokenize.OP and tok.string in ("==", "!=") and tok.start[0] == tok.end[0]:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt.type == tokenize.NAME and nxt.string in ("None", "True", "False"):
                edits.setdefault(row, []).append((tok.start[1], tok.end[1], "is" if tok.string == "==" else "is not"))
        elif tok.type == tokenize.STRING and tok.start[0] == tok.end[0]:
            m = _F_PREFIX.match(tok.string)
            body = tok.string[m.end():] if m else ""
            if m and "{" not in body and "}" not in body:
                edits.setdefault(row, []).append((tok.start[1], tok.start[1] + m.end(), m.group(1) + m.group(2)
                                                  + m.group(3)))
    out: dict[int, str] = {}
    for row, spans in edits.items():
        line = lines[row]
        for start, end, new in sorted(spans, reverse=True):
            line = line[:start] + new + line[end:]
        out[row] = line
    return out


def _unused_import_rows(tree: ast.Module, text: str, lines: Sequence[str], path: str) -> dict[int, str | None]:
    """Rows of single-line module-level imports with unused names: the row rewritten without them, or None to
    delete it."""
    if PurePosixPath(path).name == "__init__.py":
        return {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name):
                used.add(root.id)
    words = set(re.findall(r"[A-Za-z_]\w*", " ".join(
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))))
    out: dict[int, str | None] = {}
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno != node.end_lineno:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module == "__future__" or any(a.name == "*" for a in node.names)):
            continue
        row = node.lineno - 1
        line = lines[row]
        if ";" in line or line[:node.col_offset].strip():
            continue
        keep, drop = [], []
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            (keep if bound in used or bound in words or alias.asname == alias.name else drop).append(alias)
        if not drop:
            continue
        comment = line[len(line.rstrip()):] if "#" not in line else "  " + line[line.index("#"):]
        if not keep:
            out[row] = None
            continue
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep)
        head = "import " if isinstance(node, ast.Import) else f"from {'.' * node.level}{node.module or ''} import "
        out[row] = line[:node.col_offset] + head + names + comment.rstrip()
    return out


def plan_lint_fixes(path: str, lines: tuple[str, ...]) -> list[Change]:
    """The mechanical lint fixes of a whole Python file (none for other files or one that does not parse).
    A file with CRLF line ends keeps them: the ``\r`` the editor shows at a line's end is its line end, not
    trailing whitespace."""
    if not path.endswith((".py", ".pyi")):
        return []
    crs = {row for row, line in enumerate(lines) if line.endswith("\r")}
    bare = tuple(line[:-1] if row in crs else line for row, line in enumerate(lines))
    return [Change(ch.start, ch.end, tuple(text + "\r" if ch.start in crs else text for text in ch.new))
            for ch in _plan(path, bare)]


def _plan(path: str, lines: tuple[str, ...]) -> list[Change]:
    text = "\n".join(lines) + "\n"
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    tokens = _tokens(text)
    if tokens is None:
        return []
    in_string = _string_rows(tokens)
    rewritten: dict[int, str | None] = dict(_line_edits(lines, tokens))
    for row, new in _unused_import_rows(tree, text, lines, path).items():
        rewritten[row] = new if row not in rewritten or new is None else new
    for row, line in enumerate(lines):
        if row in in_string:
            continue
        current = rewritten.get(row, line)
        if current is not None and current != current.rstrip():
            rewritten[row] = current.rstrip()
    changes = [Change(row, row + 1, () if new is None else (new,))
               for row, new in sorted(rewritten.items()) if new != lines[row]]
    if changes and not _parses(apply_changes(lines, changes)):
        changes = [ch for ch in changes if _parses(apply_changes(lines, [ch]))]
    return changes
