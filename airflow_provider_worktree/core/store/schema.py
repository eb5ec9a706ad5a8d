"""The shard database's schema: table definitions and forward migrations (versions 1 to 6)."""

from __future__ import annotations

from typing import Any, Callable

from airflow_provider_worktree.core.store._common import (
    LEGACY_RUN_ID,
    RUNBOOK_V1_SCHEMA,
)
from airflow_provider_worktree.core.store.dialects import _Dialect


def _usage_columns(d: _Dialect) -> str:
    """The spend columns a shard, an attempt and a batch entry all record (tokens by kind, dollars)."""
    return ",\n    ".join([*(f"{kind}_tokens {d.big_type} NOT NULL DEFAULT 0"
                              for kind in ("input", "output", "cache_read", "cache_write")),
                            f"cost_usd {d.real_type} NOT NULL DEFAULT 0"])


def _v2_table_sql(d: _Dialect, table: str) -> str:
    ts, big = d.ts_type, d.big_type
    now_default = "CURRENT_TIMESTAMP" if d.name == "sqlite" else "(now() AT TIME ZONE 'utc')"
    # The runbook's seven columns first, in its order, so `SELECT *` output keeps its positions.
    return f"""CREATE TABLE {table} (
    shard_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at {ts},
    completed_at {ts},
    updated_at {ts} DEFAULT {now_default},
    error_message TEXT,
    worker_id TEXT,
    run_id TEXT NOT NULL,
    task TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    priority INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    heartbeat_at {ts},
    lease_token {big},
    lease_expires_at {ts},
    branch TEXT,
    commit_sha TEXT,
    files_changed TEXT,
    diffstat TEXT,
    {_usage_columns(d)},
    result_summary TEXT,
    created_at {ts} DEFAULT {now_default},
    PRIMARY KEY (run_id, shard_id)
)"""


_V2_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_shard_status_status ON shard_status (status)",
    "CREATE INDEX IF NOT EXISTS ix_shard_status_started_at ON shard_status (started_at)",
    "CREATE INDEX IF NOT EXISTS ix_shard_status_updated_at ON shard_status (updated_at)",
    "CREATE INDEX IF NOT EXISTS ix_shard_status_claim ON shard_status (run_id, status, priority DESC, shard_id)",
    "CREATE INDEX IF NOT EXISTS ix_shard_status_heartbeat ON shard_status (status, heartbeat_at)",
)


def _migrate_0_to_1(d: _Dialect, cur: Any) -> None:
    """Version 1: the runbook's schema, verbatim."""
    cur.execute(RUNBOOK_V1_SCHEMA.rstrip(";"))


def _migrate_1_to_2(d: _Dialect, cur: Any) -> None:
    """Version 2: composite key (run_id, shard_id), lease, result and accounting columns, indexes, token counter.

    The table is rebuilt (SQLite cannot change a primary key in place); rows keep their runbook columns
    under run id ``legacy``; legacy running rows get no heartbeat, so their staleness is judged
    by ``started_at`` exactly like the runbook's stale-lock query.
    """
    cur.execute(_v2_table_sql(d, "shard_status_v2"))
    cur.execute(
        "INSERT INTO shard_status_v2 (run_id, shard_id, status, started_at, completed_at, updated_at, "
        "error_message, worker_id, attempt, heartbeat_at, created_at) "
        f"SELECT '{LEGACY_RUN_ID}', shard_id, status, started_at, completed_at, updated_at, error_message, "
        "worker_id, CASE WHEN started_at IS NULL THEN 0 ELSE 1 END, "
        "NULL, "  # no heartbeat in v1: staleness falls back to started_at, as in the runbook's query
        "COALESCE(started_at, updated_at) FROM shard_status")
    cur.execute("DROP TABLE shard_status")
    cur.execute("ALTER TABLE shard_status_v2 RENAME TO shard_status")
    for stmt in _V2_INDEXES:
        cur.execute(stmt)
    d.create_token_counter(cur)


def _migrate_2_to_3(d: _Dialect, cur: Any) -> None:
    """Version 3: one row per attempt (``shard_attempts``), the isolation in force on the shard row.

    The shard row's token and cost columns become cumulative over all attempts (the sum of its
    ``shard_attempts`` rows). Each v2 row that was ever claimed keeps its last attempt's numbers as that
    attempt's row (earlier attempts' spend was overwritten by v2 and is not known).
    """
    ts, big = d.ts_type, d.big_type
    cur.execute(f"""CREATE TABLE shard_attempts (
    run_id TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    lease_token {big},
    started_at {ts},
    ended_at {ts},
    status TEXT NOT NULL,
    error_message TEXT,
    {_usage_columns(d)},
    isolation TEXT,
    commit_sha TEXT,
    remote_sha TEXT,
    PRIMARY KEY (run_id, shard_id, attempt)
)""")
    cur.execute("ALTER TABLE shard_status ADD COLUMN isolation TEXT")
    cur.execute(
        "INSERT INTO shard_attempts (run_id, shard_id, attempt, worker_id, lease_token, started_at, ended_at, "
        "status, error_message, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, "
        "commit_sha) SELECT run_id, shard_id, attempt, worker_id, lease_token, started_at, "
        "CASE WHEN status IN ('completed', 'failed') THEN completed_at END, "
        "CASE WHEN status = 'pending' THEN 'lost' ELSE status END, error_message, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, cost_usd, commit_sha FROM shard_status WHERE attempt > 0")


def migrate_3_to_4(d: Any, cur: Any) -> None:
    """Version 4: batch mode's ``shard_batches`` and ``batch_entries``."""
    ts = d.ts_type
    cur.execute(f"""CREATE TABLE shard_batches (
    run_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    batch_id TEXT,
    status TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    created_at {ts},
    ended_at {ts},
    collected_at {ts},
    request_counts TEXT,
    PRIMARY KEY (run_id, part)
)""")
    cur.execute(f"""CREATE TABLE batch_entries (
    run_id TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    part INTEGER,
    custom_id TEXT,
    base_sha TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    model TEXT,
    max_tokens INTEGER,
    response TEXT,
    stop_reason TEXT,
    {_usage_columns(d)},
    updated_at {ts},
    PRIMARY KEY (run_id, shard_id)
)""")
    cur.execute("CREATE INDEX IF NOT EXISTS ix_batch_entries_custom_id ON batch_entries (run_id, custom_id)")


def _migrate_4_to_5(d: _Dialect, cur: Any) -> None:
    """Version 5: the shared rate limiter's ``rate_limits`` (one JSON state per scope) and ``rate_limit_runs``."""
    ts, big, real = d.ts_type, d.big_type, d.real_type
    cur.execute(f"""CREATE TABLE rate_limits (
    scope TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at {ts}
)""")
    cur.execute(f"""CREATE TABLE rate_limit_runs (
    scope TEXT NOT NULL,
    run_id TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    waits INTEGER NOT NULL DEFAULT 0,
    wait_s {real} NOT NULL DEFAULT 0,
    input_tokens {big} NOT NULL DEFAULT 0,
    output_tokens {big} NOT NULL DEFAULT 0,
    first_at {real},
    last_at {real},
    PRIMARY KEY (scope, run_id)
)""")


def _migrate_5_to_6(d: _Dialect, cur: Any) -> None:
    """Version 6: ``changesets``, the pull requests runs were published as, in orthogonal states."""
    ts = d.ts_type
    cur.execute(f"""CREATE TABLE changesets (
    forge TEXT NOT NULL,
    repository TEXT NOT NULL,
    head TEXT NOT NULL,
    base TEXT,
    number INTEGER,
    url TEXT,
    title TEXT,
    publication TEXT NOT NULL DEFAULT 'unpublished',
    external_state TEXT NOT NULL DEFAULT 'open',
    review TEXT NOT NULL DEFAULT 'pending',
    checks TEXT NOT NULL DEFAULT 'unknown',
    head_sha TEXT,
    run_id TEXT,
    last_action TEXT,
    created_at {ts},
    updated_at {ts},
    synced_at {ts},
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (forge, repository, head)
)""")


def _migrate_6_to_7(d: _Dialect, cur: Any) -> None:
    """Version 7: ``campaigns`` (name, spec as JSON), ``campaign_repositories`` (the last outcome per repository) and
    ``changeset_rounds`` (each fix round of a pull request: what set it off, its outcome, commit and cost)."""
    ts = d.ts_type
    cur.execute(f"""CREATE TABLE campaigns (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at {ts},
    updated_at {ts}
)""")
    cur.execute(f"""CREATE TABLE campaign_repositories (
    campaign TEXT NOT NULL,
    repository TEXT NOT NULL,
    location TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    run_id TEXT,
    url TEXT,
    updated_at {ts},
    PRIMARY KEY (campaign, repository)
)""")
    cur.execute(f"""CREATE TABLE changeset_rounds (
    forge TEXT NOT NULL,
    repository TEXT NOT NULL,
    head TEXT NOT NULL,
    round_no INTEGER NOT NULL,
    kind TEXT NOT NULL,
    cause TEXT,
    run_id TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    commit_sha TEXT,
    cost_usd {d.real_type} NOT NULL DEFAULT 0,
    created_at {ts},
    PRIMARY KEY (forge, repository, head, round_no)
)""")


MIGRATIONS: dict[int, Callable[[_Dialect, Any], None]] = {1: _migrate_0_to_1, 2: _migrate_1_to_2,
                                                          3: _migrate_2_to_3, 4: migrate_3_to_4,
                                                          5: _migrate_4_to_5, 6: _migrate_5_to_6,
                                                          7: _migrate_6_to_7}
