"""Airflow operators: ``from airflow_provider_worktree.operators import ShardPlanOperator, ClaudeMaintenanceOperator``."""

from __future__ import annotations

from airflow_provider_worktree import check_airflow_version
from airflow_provider_worktree._lazy import lazy_exports

check_airflow_version()

__getattr__, __all__ = lazy_exports(__name__, {
    "ClaudeMaintenanceOperator": "airflow_provider_worktree.operators.maintenance",
    "ClaudeBatchSubmitOperator": "airflow_provider_worktree.operators.batch",
    "ChangesetPublishOperator": "airflow_provider_worktree.operators.changesets",
    "ShardPlanOperator": "airflow_provider_worktree.operators.plan",
})
