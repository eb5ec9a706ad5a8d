"""Worktrees of one repository: names and owners, creation, removal (never losing uncommitted work),
fenced commit and push, pruning of leftovers, behind one facade (:class:`WorktreeManager`).

May import: ``core.errors``, ``core.git`` and ``core.sandbox``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module. The repository and its records (``GitRepo``, ``WorktreeInfo``, ``LOCK_TOOL``,
``parse_owner``, ``LOCK_FILE_NAME``), URLs and credentials are :mod:`core.git`'s; ``PushRejected`` is
:mod:`core.errors`'s.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Allowed": "airflow_provider_worktree.core.worktrees.commit",
    "BRANCH_PREFIX": "airflow_provider_worktree.core.worktrees.names",
    "CommitResult": "airflow_provider_worktree.core.worktrees.results",
    "ORPHAN_GRACE_SECONDS": "airflow_provider_worktree.core.worktrees.prune",
    "PruneReport": "airflow_provider_worktree.core.worktrees.results",
    "PushResult": "airflow_provider_worktree.core.worktrees.results",
    "RemoveResult": "airflow_provider_worktree.core.worktrees.results",
    "SALVAGE_PREFIX": "airflow_provider_worktree.core.worktrees.names",
    "UNSET": "airflow_provider_worktree.core.worktrees.push",
    "WorktreeCommitter": "airflow_provider_worktree.core.worktrees.commit",
    "WorktreeCreator": "airflow_provider_worktree.core.worktrees.create",
    "WorktreeDirtyError": "airflow_provider_worktree.core.worktrees.results",
    "WorktreeManager": "airflow_provider_worktree.core.worktrees.manager",
    "WorktreePruner": "airflow_provider_worktree.core.worktrees.prune",
    "WorktreePusher": "airflow_provider_worktree.core.worktrees.push",
    "WorktreeRemover": "airflow_provider_worktree.core.worktrees.remove",
    "allowed_predicate": "airflow_provider_worktree.core.worktrees.commit",
    "check_attempt": "airflow_provider_worktree.core.worktrees.names",
    "check_repo_relpath": "airflow_provider_worktree.core.worktrees.names",
    "describe_owner": "airflow_provider_worktree.core.worktrees.names",
    "format_message": "airflow_provider_worktree.core.worktrees.commit",
    "now_iso": "airflow_provider_worktree.core.worktrees.names",
    "owner_state": "airflow_provider_worktree.core.worktrees.names",
    "pid_alive": "airflow_provider_worktree.core.worktrees.names",
    "proc_start_time": "airflow_provider_worktree.core.worktrees.names",
    "salvage": "airflow_provider_worktree.core.worktrees.remove",
    "slugify_run_id": "airflow_provider_worktree.core.worktrees.names",
    "sparse_patterns": "airflow_provider_worktree.core.worktrees.names",
    "validate_name": "airflow_provider_worktree.core.worktrees.names",
})
