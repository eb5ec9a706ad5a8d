"""Airflow hooks: thin faces over the core modules.

``from airflow_provider_worktree.hooks import GitWorktreeHook, ShardStatusHook`` works; the modules are
imported on first use so that importing one hook does not pay for the other.
"""

from __future__ import annotations

from airflow_provider_worktree import check_airflow_version
from airflow_provider_worktree._lazy import lazy_exports

check_airflow_version()

__getattr__, __all__ = lazy_exports(__name__, {
    "GitLabHook": "airflow_provider_worktree.hooks.gitlab",
    "GitWorktreeHook": "airflow_provider_worktree.hooks.git_worktree",
    "ShardStatusHook": "airflow_provider_worktree.hooks.shard_status",
})
