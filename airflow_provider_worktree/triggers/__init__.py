"""Airflow triggers: ``from airflow_provider_worktree.triggers import ShardStatusTrigger``."""

from __future__ import annotations

from airflow_provider_worktree import check_airflow_version
from airflow_provider_worktree._lazy import lazy_exports

check_airflow_version()

__getattr__, __all__ = lazy_exports(__name__, {
    "ShardStatusTrigger": "airflow_provider_worktree.triggers.shard_status",
    "ClaudeBatchTrigger": "airflow_provider_worktree.triggers.batch",
    "ChangesetTrigger": "airflow_provider_worktree.triggers.changesets",
})
