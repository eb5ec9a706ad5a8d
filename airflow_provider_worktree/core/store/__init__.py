"""The shard status database: dialects (SQLite, PostgreSQL), schema and forward migrations, shard leases and
records (:class:`ShardStore`), Message Batch records, the shared rate limiter's state, changesets, and maintenance (backup, restore, archive, vacuum).

May import: ``core.errors`` and ``core.sandbox`` (text bounding). Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ARCHIVE_SUFFIX": "airflow_provider_worktree.core.store.maintenance",
    "ATTEMPT_COLUMNS": "airflow_provider_worktree.core.store._common",
    "ATTEMPT_STATUSES": "airflow_provider_worktree.core.store._common",
    "BATCH_ATTEMPT": "airflow_provider_worktree.core.store.batches",
    "BatchRecords": "airflow_provider_worktree.core.store.batches",
    "COLUMNS": "airflow_provider_worktree.core.store._common",
    "CURRENT_SCHEMA_VERSION": "airflow_provider_worktree.core.store._common",
    "CHANGESET_COLUMNS": "airflow_provider_worktree.core.store.changesets",
    "ChangesetRecords": "airflow_provider_worktree.core.store.changesets",
    "ClaimRecords": "airflow_provider_worktree.core.store.claims",
    "DEFAULT_STALE_AFTER_S": "airflow_provider_worktree.core.store._common",
    "ENTRY_RESULTS": "airflow_provider_worktree.core.store.batches",
    "ENTRY_STATES": "airflow_provider_worktree.core.store.batches",
    "LEGACY_RUN_ID": "airflow_provider_worktree.core.store._common",
    "Lease": "airflow_provider_worktree.core.store.errors",
    "LeaseLostError": "airflow_provider_worktree.core.store.errors",
    "MAX_ERROR_CHARS": "airflow_provider_worktree.core.store._common",
    "MIGRATIONS": "airflow_provider_worktree.core.store.schema",
    "NoSlotAvailable": "airflow_provider_worktree.core.store.errors",
    "RESULT_FIELDS": "airflow_provider_worktree.core.store._common",
    "RUNBOOK_V1_SCHEMA": "airflow_provider_worktree.core.store._common",
    "RUN_COUNTERS": "airflow_provider_worktree.core.store.ratelimits",
    "RateLimitRecords": "airflow_provider_worktree.core.store.ratelimits",
    "ResultRecords": "airflow_provider_worktree.core.store.results",
    "SHARD_ID_RE": "airflow_provider_worktree.core.store._common",
    "STATUSES": "airflow_provider_worktree.core.store._common",
    "ShardAlreadyCompleted": "airflow_provider_worktree.core.store.errors",
    "ShardBusy": "airflow_provider_worktree.core.store.errors",
    "ShardNotFound": "airflow_provider_worktree.core.store.errors",
    "ShardQueries": "airflow_provider_worktree.core.store.queries",
    "ShardStore": "airflow_provider_worktree.core.store.shards",
    "StoreConnection": "airflow_provider_worktree.core.store.base",
    "StoreError": "airflow_provider_worktree.core.store.errors",
    "archive": "airflow_provider_worktree.core.store.maintenance",
    "backup": "airflow_provider_worktree.core.store.maintenance",
    "bound_error": "airflow_provider_worktree.core.store._common",
    "connection_factory": "airflow_provider_worktree.core.store.dialects",
    "describe_db_error": "airflow_provider_worktree.core.store.dialects",
    "integrity_check": "airflow_provider_worktree.core.store.maintenance",
    "is_ok": "airflow_provider_worktree.core.store.maintenance",
    "is_sqlite": "airflow_provider_worktree.core.store.maintenance",
    "migrate_3_to_4": "airflow_provider_worktree.core.store.schema",
    "newer_schema_message": "airflow_provider_worktree.core.store.dialects",
    "restore": "airflow_provider_worktree.core.store.maintenance",
    "sqlite_path": "airflow_provider_worktree.core.store.maintenance",
    "sqlite_read_only_uri": "airflow_provider_worktree.core.store.dialects",
    "upgrade": "airflow_provider_worktree.core.store.maintenance",
    "vacuum": "airflow_provider_worktree.core.store.maintenance",
})
