"""What git knows about a worktree (:class:`WorktreeInfo`, a row of ``git worktree list``) and the owner
record this package writes as a worktree's lock reason (:func:`parse_owner`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

#: The ``tool`` value in lock reasons written by this package.
LOCK_TOOL = "airflow-worktree"


@dataclass
class WorktreeInfo:
    """One worktree: as created by :meth:`WorktreeManager.create_worktree` or listed by ``list_worktrees``."""

    path: str
    branch: str | None = None          # short name (no refs/heads/), None when detached or bare
    head: str | None = None
    base_sha: str | None = None
    base_ref: str | None = None
    run_id: str | None = None
    shard_id: str | None = None
    attempt: int | None = None
    locked: bool = False
    lock_reason: str | None = None
    prunable: bool = False
    prunable_reason: str | None = None
    owner: dict | None = None          # parsed lock reason when this tool wrote it
    sparse_paths: list[str] | None = None
    created_at: str | None = None
    is_main: bool = False
    detached: bool = False
    bare: bool = False
    managed: bool = False              # under this manager's worktree_root
    previous_branch_backup: str | None = None  # set when a retry replaced a branch holding commits

    def to_dict(self) -> dict:
        return asdict(self)


def parse_owner(reason: str | None) -> dict | None:
    """The owner dict from a lock reason written by this tool, else None."""
    if not reason or not reason.startswith("{"):
        return None
    try:
        data = json.loads(reason)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("tool") == LOCK_TOOL else None
