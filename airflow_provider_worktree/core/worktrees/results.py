"""What the worktree operations return (plain dataclasses, ``to_dict()`` for XCom and JSON); the worktree itself
is git's record, :class:`~airflow_provider_worktree.core.git.records.WorktreeInfo`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from airflow_provider_worktree.core.errors import ConfigurationError


@dataclass
class CommitResult:
    """A commit made by :meth:`WorktreeManager.commit` (``sha`` None: nothing to commit).

    ``files``: the paths committed. ``excluded``: changed paths that were not allowed and so not committed
    (left in the worktree as they are). Paths that are not valid UTF-8 are decoded with ``surrogateescape``
    (``os.fsencode(path)`` gives the bytes back).
    """

    sha: str | None
    diffstat: str = ""
    files: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RemoveResult:
    path: str
    branch: str | None = None
    head: str | None = None
    removed: bool = False
    was_dirty: bool = False
    dirty_files: list[str] = field(default_factory=list)
    salvage_branch: str | None = None
    salvage_sha: str | None = None
    branch_deleted: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PushResult:
    remote: str
    branch: str
    sha: str
    output: str = ""
    expected: str | None = None        # the remote sha a compare-and-swap push expected (None: absent)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PruneReport:
    """What ``prune``/``cleanup_all`` did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    actions: list[str] = field(default_factory=list)       # human-readable, in order
    removed: list[str] = field(default_factory=list)       # worktree paths removed
    salvaged: list[dict] = field(default_factory=list)     # {path, branch, sha}
    git_pruned: list[str] = field(default_factory=list)    # admin entries git pruned (directory gone)
    orphans_removed: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)      # {path, reason}
    errors: list[dict] = field(default_factory=list)       # {path, error}
    branches_deleted: list[str] = field(default_factory=list)  # empty shard branches of removed worktrees

    def to_dict(self) -> dict:
        return asdict(self)


class WorktreeDirtyError(ConfigurationError):
    """Refused to remove a worktree holding uncommitted changes."""
