"""Shared vocabulary of the shard database: statuses, columns, timestamps and error bounding."""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

from airflow_provider_worktree.core.sandbox.proc import truncate_middle

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
STATUSES: tuple[str, ...] = (PENDING, RUNNING, COMPLETED, FAILED)
LEGACY_RUN_ID = "legacy"
DEFAULT_STALE_AFTER_S = 600.0
CURRENT_SCHEMA_VERSION = 7
#: Statuses of a row in ``shard_attempts``: the attempt's own outcome. ``lost``: fenced out (taken over,
#: reclaimed as stale) before it recorded an outcome; ``released``: gave the shard back; ``batch``: attempt 0,
#: the spend of the shard's Message Batches entry (``core.batchstore``).
ATTEMPT_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "lost", "released", "batch")
#: Longest ``error_message`` the store keeps (the middle of a longer one is cut; the cause comes first).
MAX_ERROR_CHARS = 2000
SHARD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: The runbook's schema, verbatim: schema version 1.
RUNBOOK_V1_SCHEMA = """CREATE TABLE shard_status (
    shard_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    error_message TEXT,
    worker_id TEXT
);"""

_JSON_COLUMNS = ("files", "files_changed", "result_summary")
_TS_COLUMNS = ("started_at", "completed_at", "updated_at", "heartbeat_at", "lease_expires_at", "created_at",
               "ended_at")
_INT_RESULT_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
RESULT_FIELDS = ("branch", "commit_sha", "files_changed", "diffstat", *_INT_RESULT_FIELDS, "cost_usd", "summary",
                 "isolation")
_USAGE_FIELDS = (*_INT_RESULT_FIELDS, "cost_usd")

COLUMNS: tuple[str, ...] = (
    "shard_id", "status", "started_at", "completed_at", "updated_at", "error_message", "worker_id", "run_id",
    "task", "files", "priority", "attempt", "heartbeat_at", "lease_token", "lease_expires_at",
    "branch", "commit_sha", "files_changed", "diffstat",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
    "result_summary", "created_at", "isolation",
)
_COLS_SQL = ", ".join(COLUMNS)
ATTEMPT_COLUMNS: tuple[str, ...] = (
    "run_id", "shard_id", "attempt", "worker_id", "lease_token", "started_at", "ended_at", "status",
    "error_message", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
    "isolation", "commit_sha", "remote_sha",
)
_ATT_COLS_SQL = ", ".join(ATTEMPT_COLUMNS)


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _ts(value: _dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _norm_ts(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return _ts(value)
    return value


def _loads(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _redact(target: str) -> str:
    if "://" in target and "@" in target:
        scheme, rest = target.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return target


def bound_error(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` cut in the middle to at most about ``limit`` characters (its first line, the cause, kept)."""
    return truncate_middle(str(message), limit)

