"""The shard status database: leases with fencing tokens over SQLite or PostgreSQL.

Plain Python, no Airflow import. One table, ``shard_status``, keeps the runbook's columns
(``shard_id, status, started_at, completed_at, updated_at, error_message, worker_id``) so the runbook's
``sqlite3`` queries keep working, and adds what a real system needs.

Key decisions (see also docs/architecture.md):

* **Key.** The runbook schema (schema version 1) had ``shard_id TEXT PRIMARY KEY``. Several DAG runs share
  one database, so the current schema uses the composite primary key ``(run_id, shard_id)``. Rows of a
  version-1 database are migrated under the run id ``"legacy"`` (:data:`LEGACY_RUN_ID`).
* **Timestamps** are UTC, written from the clock of the process doing the write. On SQLite they are stored
  as text ``'YYYY-MM-DD HH:MM:SS.ffffff'``, which SQLite's ``datetime()`` and ``JULIANDAY()`` read, so the
  runbook's queries work verbatim; on PostgreSQL they are ``TIMESTAMP`` (without time zone, UTC). Row dicts
  always carry the text form. Workers on several hosts need synchronised clocks (NTP); stale thresholds
  are minutes, so sub-second skew is harmless.
* **Leases.** A claim sets ``status='running'``, increments ``attempt`` and takes a new fencing token
  (``lease_token``) from a monotonic counter (a one-row table on SQLite, a sequence on PostgreSQL). Every
  later write by the lease holder (heartbeat, complete, fail, release) is conditional on
  ``lease_token = <its token> AND status = 'running'``; otherwise :class:`LeaseLostError`.
* **Stale leases** are running shards whose ``heartbeat_at`` is older than a threshold. They are reset to
  pending by :meth:`ShardStore.reset_stale`, or taken over by a claim of that very shard.
  ``attempt`` counts claims, so an attempt that died stays counted.
* **Concurrency.** SQLite: WAL, ``busy_timeout``, ``BEGIN IMMEDIATE`` for every write transaction and a
  retry loop with jittered backoff on "database is locked"/"busy", so that error does not reach callers.
  PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` for next-pending claims, ``FOR UPDATE`` row locks for
  given-shard claims, retries on serialization failures and deadlocks. One connection per process and
  thread; a forked child opens its own (the inherited one is never used nor closed).
* **Schema versions.** ``schema_version`` records applied migrations. Migrations run on open inside one
  write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a session advisory lock), so several
  processes opening a new or old database at once apply each step exactly once.
* **Read-only opening.** ``ShardStore.open(target, read_only=True)`` (the CLI's reading commands, the hook's
  ``test_connection``) creates, migrates and writes nothing: SQLite files are opened ``mode=ro`` (``immutable``
  when a WAL file is checkpointed, so no ``-wal``/``-shm`` is left behind), PostgreSQL sessions are READ ONLY.
  An older SQLite schema is read through an upgraded in-memory copy; an empty database or a newer schema is a
  :class:`StoreError` naming the fix.
* **Errors.** Driver errors leave the store as one-line :class:`StoreError` messages that name the problem and
  the fix (:func:`describe_db_error`: damaged page, not a database, read-only file, unwritable directory, ...).

All dialect differences live in :class:`~.dialects._Dialect` and its two subclasses.
"""


from __future__ import annotations

from airflow_provider_worktree.core.store.base import StoreConnection
from airflow_provider_worktree.core.store.batches import BatchRecords
from airflow_provider_worktree.core.store.campaigns import CampaignRecords
from airflow_provider_worktree.core.store.changesets import ChangesetRecords
from airflow_provider_worktree.core.store.claims import ClaimRecords
from airflow_provider_worktree.core.store.queries import ShardQueries
from airflow_provider_worktree.core.store.ratelimits import RateLimitRecords
from airflow_provider_worktree.core.store.results import ResultRecords


class ShardStore(ClaimRecords, ResultRecords, ShardQueries, BatchRecords, RateLimitRecords, ChangesetRecords,
                 CampaignRecords, StoreConnection):
    """The shard status database (seed component *ShardCoordinator*, with ``core.planning``).

    Build it with :meth:`open` from a target string, or directly from a DB-API connection factory::

        ShardStore(hook.get_conn, dialect="postgresql")

    Thread- and process-safe: each process (and thread) uses its own connection.

    The methods live with their concern: connections, transactions and migrations in
    :class:`~.base.StoreConnection`, registration and claims in :class:`~.claims.ClaimRecords`, the lease holder's
    fenced writes in :class:`~.results.ResultRecords`, reads in :class:`~.queries.ShardQueries`, batch mode's
    records in :class:`~.batches.BatchRecords`, the shared rate limiter's state in
    :class:`~.ratelimits.RateLimitRecords`, published changesets in :class:`~.changesets.ChangesetRecords`, campaigns
    and their repositories' outcomes in :class:`~.campaigns.CampaignRecords`.
    """
