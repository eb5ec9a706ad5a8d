"""Worktrees of one repository: names and owners, creation, removal (never losing uncommitted work),
fenced commit and push, pruning of leftovers, behind one facade (:class:`WorktreeManager`).

May import: ``core.errors``, ``core.git`` and ``core.sandbox``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Allowed": "airflow_provider_worktree.core.worktrees.commit",
    "BRANCH_PREFIX": "airflow_provider_worktree.core.worktrees.names",
    "CONTROL_RE": "airflow_provider_worktree.core.worktrees.names",
    "CommitResult": "airflow_provider_worktree.core.worktrees.manager",
    "LOCK_FILE_NAME": "airflow_provider_worktree.core.worktrees.manager",
    "LOCK_TOOL": "airflow_provider_worktree.core.worktrees.manager",
    "ORPHAN_GRACE_SECONDS": "airflow_provider_worktree.core.worktrees.manager",
    "PruneReport": "airflow_provider_worktree.core.worktrees.manager",
    "PushRejected": "airflow_provider_worktree.core.worktrees.manager",
    "PushResult": "airflow_provider_worktree.core.worktrees.manager",
    "RemoveResult": "airflow_provider_worktree.core.worktrees.manager",
    "SALVAGE_PREFIX": "airflow_provider_worktree.core.worktrees.manager",
    "UNSET": "airflow_provider_worktree.core.worktrees.manager",
    "WorktreeCommitter": "airflow_provider_worktree.core.worktrees.commit",
    "WorktreeCreator": "airflow_provider_worktree.core.worktrees.create",
    "WorktreeDirtyError": "airflow_provider_worktree.core.worktrees.manager",
    "WorktreeInfo": "airflow_provider_worktree.core.worktrees.manager",
    "WorktreeManager": "airflow_provider_worktree.core.worktrees.manager",
    "WorktreePruner": "airflow_provider_worktree.core.worktrees.prune",
    "WorktreePusher": "airflow_provider_worktree.core.worktrees.push",
    "WorktreeRemover": "airflow_provider_worktree.core.worktrees.remove",
    "allowed_predicate": "airflow_provider_worktree.core.worktrees.commit",
    "check_attempt": "airflow_provider_worktree.core.worktrees.names",
    "check_ref_arg": "airflow_provider_worktree.core.worktrees.names",
    "check_repo_relpath": "airflow_provider_worktree.core.worktrees.names",
    "credential_env": "airflow_provider_worktree.core.worktrees.manager",
    "default_root": "airflow_provider_worktree.core.worktrees.names",
    "format_message": "airflow_provider_worktree.core.worktrees.commit",
    "is_remote_url": "airflow_provider_worktree.core.worktrees.manager",
    "is_within": "airflow_provider_worktree.core.worktrees.names",
    "now_iso": "airflow_provider_worktree.core.worktrees.names",
    "parse_owner": "airflow_provider_worktree.core.worktrees.manager",
    "pid_alive": "airflow_provider_worktree.core.worktrees.manager",
    "probe_repository": "airflow_provider_worktree.core.worktrees.manager",
    "proc_start_time": "airflow_provider_worktree.core.worktrees.names",
    "redact_url": "airflow_provider_worktree.core.worktrees.manager",
    "salvage": "airflow_provider_worktree.core.worktrees.remove",
    "slugify_run_id": "airflow_provider_worktree.core.worktrees.manager",
    "sparse_patterns": "airflow_provider_worktree.core.worktrees.names",
    "strip_url_credentials": "airflow_provider_worktree.core.worktrees.manager",
    "validate_name": "airflow_provider_worktree.core.worktrees.manager",
})
