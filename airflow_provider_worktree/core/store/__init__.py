"""The shard status database: dialects (SQLite, PostgreSQL), schema and forward migrations, shard leases and
records (:class:`ShardStore`), Message Batch records, and maintenance (backup, restore, archive, vacuum).

May import: ``core.errors`` and ``core.sandbox`` (text bounding). Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BATCH_ATTEMPT": "airflow_provider_worktree.core.store.batches",
    "BatchRecords": "airflow_provider_worktree.core.store.batches",
    "CURRENT_SCHEMA_VERSION": "airflow_provider_worktree.core.store.shards",
    "DEFAULT_STALE_AFTER_S": "airflow_provider_worktree.core.store.shards",
    "ENTRY_RESULTS": "airflow_provider_worktree.core.store.batches",
    "ENTRY_STATES": "airflow_provider_worktree.core.store.batches",
    "LEGACY_RUN_ID": "airflow_provider_worktree.core.store.shards",
    "Lease": "airflow_provider_worktree.core.store.shards",
    "LeaseLostError": "airflow_provider_worktree.core.store.shards",
    "NoSlotAvailable": "airflow_provider_worktree.core.store.shards",
    "RUNBOOK_V1_SCHEMA": "airflow_provider_worktree.core.store.shards",
    "STATUSES": "airflow_provider_worktree.core.store.shards",
    "ShardAlreadyCompleted": "airflow_provider_worktree.core.store.shards",
    "ShardBusy": "airflow_provider_worktree.core.store.shards",
    "ShardNotFound": "airflow_provider_worktree.core.store.shards",
    "ShardStore": "airflow_provider_worktree.core.store.shards",
    "StoreError": "airflow_provider_worktree.core.store.shards",
    "archive": "airflow_provider_worktree.core.store.maintenance",
    "backup": "airflow_provider_worktree.core.store.maintenance",
    "connection_factory": "airflow_provider_worktree.core.store.shards",
    "integrity_check": "airflow_provider_worktree.core.store.maintenance",
    "is_sqlite": "airflow_provider_worktree.core.store.maintenance",
    "migrate_3_to_4": "airflow_provider_worktree.core.store.batches",
    "restore": "airflow_provider_worktree.core.store.maintenance",
    "sqlite_path": "airflow_provider_worktree.core.store.maintenance",
    "upgrade": "airflow_provider_worktree.core.store.maintenance",
    "vacuum": "airflow_provider_worktree.core.store.maintenance",
})
