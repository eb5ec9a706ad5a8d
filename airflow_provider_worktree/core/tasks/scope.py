"""A shard's scope: the paths it may change (:class:`PathScope`: its own files plus the task's extra glob
patterns) and the error when it changed others (:class:`ScopeViolation`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.files.globs import match_glob

__all__ = ["ScopeViolation", "PathScope"]


class ScopeViolation(WorktreeProviderError):
    """The shard changed files outside its scope; the shard's result is rejected."""

    def __init__(self, paths: Iterable[str], shard_id: str | None = None) -> None:
        self.paths = sorted(paths)
        where = f"Shard {shard_id}" if shard_id else "The shard"
        listed = ", ".join(self.paths[:20]) + (f" (+{len(self.paths) - 20} more)" if len(self.paths) > 20 else "")
        super().__init__(
            f"{where} changed {len(self.paths)} file(s) outside its scope: {listed}. The result is rejected; "
            "the model may edit only the shard's files (and what the task allows). Re-run the shard, or "
            "widen the task's allowed_paths if these edits are intended."
        )


@dataclass(frozen=True)
class PathScope:
    """What a shard may change: its own files plus the task's extra glob patterns. Call it with a path."""

    files: frozenset[str]
    patterns: tuple[str, ...] = ()

    def __call__(self, path: str) -> bool:
        path = _clean_path(path)
        if path is None:
            return False
        return path in self.files or any(match_glob(path, p) for p in self.patterns)


def _clean_path(path: str) -> str | None:
    """Repository-relative POSIX form of ``path``; None for absolute paths or paths leaving the repo."""
    p = path.replace("\\", "/")
    if p.startswith("/"):
        return None
    parts: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/".join(parts) or None
