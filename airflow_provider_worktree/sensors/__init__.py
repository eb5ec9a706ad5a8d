"""Airflow sensors: ``from airflow_provider_worktree.sensors import ShardStatusSensor``."""

from __future__ import annotations

from airflow_provider_worktree import check_airflow_version
from airflow_provider_worktree._lazy import lazy_exports

check_airflow_version()

__getattr__, __all__ = lazy_exports(__name__, {
    "ShardStatusSensor": "airflow_provider_worktree.sensors.shard_status",
    "ChangesetSensor": "airflow_provider_worktree.sensors.changesets",
})
