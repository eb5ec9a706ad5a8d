"""A careful model's edit for TODO/FIXME markers, for tests whose runner is not what is under test."""

from __future__ import annotations

from pathlib import Path


def resolve_markers(worktree_path: str) -> None:
    """Drop the TODO/FIXME comments of every Python file in the worktree."""
    for path in Path(worktree_path).rglob("*.py"):
        lines = [ln.split("#")[0].rstrip() if ("TODO" in ln or "FIXME" in ln) else ln
                 for ln in path.read_text().splitlines()]
        path.write_text("\n".join(ln for ln in lines if ln.strip()) + "\n")
