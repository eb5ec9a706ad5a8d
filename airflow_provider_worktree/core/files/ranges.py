"""Line ranges of a file too large for one editor view: consecutive ranges that start where a definition starts.

Python files are cut only at the start of a definition (or other top-level statement, decorators included);
other files after blank lines. The planner makes one shard per range that has work.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Sequence

__all__ = ["line_ranges", "parse_python"]


@functools.lru_cache(maxsize=4)
def parse_python(text: str) -> ast.Module:
    """``ast.parse(text)``, remembered for the last few texts: planning a big file parses it once for its
    weight, its ranges and their weights. Callers must not modify the tree. Raises SyntaxError/ValueError."""
    return ast.parse(text)


def _python_cuts(text: str, limit: int, line_bytes: Sequence[int]) -> set[int] | None:
    """Lines where a Python definition (or other top-level statement) starts, decorators included; classes
    larger than ``limit`` are cut at their members too. None when the file does not parse."""
    try:
        tree = parse_python(text)
    except (SyntaxError, ValueError):
        return None
    cuts: set[int] = set()

    def size(node: ast.AST) -> int:
        return sum(line_bytes[node.lineno - 1:getattr(node, "end_lineno", node.lineno)])

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
            cuts.add(start)
            if isinstance(node, ast.ClassDef) and size(node) > limit:
                visit(node.body)

    visit(tree.body)
    return cuts


def line_ranges(text: str, path: str, limit: int) -> list[tuple[int, int]]:
    """Cover ``text`` with consecutive 1-based inclusive line ranges of at most ``limit`` bytes where possible.

    Python files are cut only where a definition starts (its decorators included), so a range holds whole
    definitions; a single definition larger than ``limit`` is a range of its own. Other files are cut after
    blank lines, or at any line when a paragraph is larger than ``limit``.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n = len(lines)
    if n == 0:
        return []
    line_bytes = [len(ln.encode("utf-8", "surrogateescape")) + 1 for ln in lines]
    cuts = _python_cuts(text, limit, line_bytes) if path.endswith((".py", ".pyi")) else None
    if cuts is None:
        cuts = {1} | {i + 2 for i, ln in enumerate(lines[:-1]) if not ln.strip()}
        # Paragraphs larger than the limit are cut at line boundaries.
        ordered = sorted(cuts | {n + 1})
        for a, b in zip(ordered, ordered[1:]):
            acc = 0
            for i in range(a, b):
                acc += line_bytes[i - 1]
                if acc > limit and i > a:
                    cuts.add(i)
                    acc = line_bytes[i - 1]
    cuts.add(1)
    ordered = sorted(c for c in cuts if 1 <= c <= n)
    prefix = [0]
    for b in line_bytes:
        prefix.append(prefix[-1] + b)
    ranges: list[tuple[int, int]] = []
    start = ordered[0]
    previous = start
    for cut in ordered[1:] + [n + 1]:
        if prefix[cut - 1] - prefix[start - 1] > limit and previous > start:
            ranges.append((start, previous - 1))
            start = previous
        previous = cut
    ranges.append((start, n))
    return ranges
