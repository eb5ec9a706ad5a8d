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

All dialect differences live in :class:`_Dialect` and its two subclasses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import re
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, unquote, urlsplit

from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError
from airflow_provider_worktree.core.store.batches import BatchRecords, migrate_3_to_4

__all__ = [
    "CURRENT_SCHEMA_VERSION",
    "DEFAULT_STALE_AFTER_S",
    "LEGACY_RUN_ID",
    "STATUSES",
    "Lease",
    "LeaseLostError",
    "NoSlotAvailable",
    "ShardAlreadyCompleted",
    "ShardBusy",
    "ShardNotFound",
    "ShardStore",
    "StoreError",
    "connection_factory",
    "RUNBOOK_V1_SCHEMA",
]

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
STATUSES: tuple[str, ...] = (PENDING, RUNNING, COMPLETED, FAILED)
LEGACY_RUN_ID = "legacy"
DEFAULT_STALE_AFTER_S = 600.0
CURRENT_SCHEMA_VERSION = 4
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


# --------------------------------------------------------------------------------------------- errors
class StoreError(WorktreeProviderError):
    """The shard status database could not do what was asked (locked for too long, unreachable, ...)."""


class ShardNotFound(StoreError, LookupError):
    """No such (run_id, shard_id) in the database."""


class ShardAlreadyCompleted(StoreError):
    """A claim of a given shard found it completed; its result stands."""


class ShardBusy(StoreError):
    """A claim of a given shard found it running under a lease whose heartbeat is still fresh."""


class NoSlotAvailable(StoreError):
    """A claim found the run's ``max_active`` shards already running under live leases; try again later."""


class LeaseLostError(StoreError):
    """A lease holder wrote with a fencing token that is no longer current (or the shard is not running).

    Attributes ``current_status``, ``current_worker_id`` and ``current_token`` describe the row now.
    """

    def __init__(self, message: str, *, current_status: str | None = None, current_worker_id: str | None = None,
                 current_token: int | None = None) -> None:
        super().__init__(message)
        self.current_status = current_status
        self.current_worker_id = current_worker_id
        self.current_token = current_token


# ---------------------------------------------------------------------------------------------- lease
@dataclass(frozen=True)
class Lease:
    """A claim on one shard: whoever holds the current ``token`` may write the shard's result."""

    run_id: str
    shard_id: str
    worker_id: str
    token: int
    attempt: int
    task: str | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for XCom); :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Lease":
        """Rebuild a lease from :meth:`to_dict` output; unknown keys are ignored."""
        try:
            return cls(run_id=str(data["run_id"]), shard_id=str(data["shard_id"]), worker_id=str(data["worker_id"]),
                       token=int(data["token"]), attempt=int(data["attempt"]), task=data.get("task"),
                       files=list(data.get("files") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"not a lease dict ({exc!r}): expected keys run_id, shard_id, worker_id, token, attempt "
                "as produced by Lease.to_dict()") from exc


# ------------------------------------------------------------------------------------------- helpers
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
    from airflow_provider_worktree.core.sandbox.proc import truncate_middle

    return truncate_middle(str(message), limit)


# ------------------------------------------------------------------------------------------ dialects
class _Dialect:
    """Everything that differs between SQLite and PostgreSQL."""

    name = ""
    ts_type = "TIMESTAMP"
    big_type = "BIGINT"
    real_type = "DOUBLE PRECISION"
    skip_locked = ""
    row_lock = ""

    def prepare(self, conn: Any) -> None:
        """Configure a fresh connection."""

    def sql(self, text: str) -> str:
        """Translate the store's ``?`` placeholders."""
        return text

    def begin_write(self, cur: Any) -> None:
        """Start a write transaction."""

    def begin_read(self, cur: Any) -> None:
        """Start a read transaction (a consistent snapshot)."""

    def commit(self, conn: Any) -> None:
        conn.commit()

    def rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - rollback of a broken transaction; the retry reports the error
            pass

    def is_retryable(self, exc: BaseException) -> bool:
        return False

    def next_token(self, cur: Any) -> int:
        raise NotImplementedError

    def duration_s(self, start: str, end: str) -> str:
        raise NotImplementedError

    def lock_migrations(self, conn: Any) -> None:
        """Serialise concurrent migrations across processes (before the migration transaction starts)."""

    def unlock_migrations(self, conn: Any) -> None:
        """Undo :meth:`lock_migrations`."""

    def table_exists(self, cur: Any, name: str) -> bool:
        raise NotImplementedError

    def columns(self, cur: Any, table: str) -> list[str]:
        raise NotImplementedError

    def create_token_counter(self, cur: Any) -> None:
        raise NotImplementedError

    def lock_run_slots(self, cur: Any, run_id: str) -> None:
        """Serialise slot-limited claims of one run inside the current write transaction (SQLite's
        ``BEGIN IMMEDIATE`` already does)."""

    def size_bytes(self, cur: Any) -> int:
        raise NotImplementedError


class _SqliteDialect(_Dialect):
    name = "sqlite"
    ts_type = "TIMESTAMP"  # values are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
    big_type = "INTEGER"
    real_type = "REAL"

    def __init__(self, busy_timeout_ms: int = 5000, synchronous: str = "NORMAL", read_only: bool = False) -> None:
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self.read_only = read_only

    def prepare(self, conn: sqlite3.Connection) -> None:
        conn.isolation_level = None  # explicit BEGIN/COMMIT only
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if self.read_only:  # never switch the journal mode of a database we only read
            return
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() not in ("wal", "memory"):
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    def begin_write(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def begin_read(self, cur: Any) -> None:
        cur.execute("BEGIN")

    def commit(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def is_retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        msg = str(exc).lower()
        return "locked" in msg or "busy" in msg

    def next_token(self, cur: Any) -> int:
        cur.execute("UPDATE shard_lease_counter SET value = value + 1 WHERE id = 1 RETURNING value")
        return int(cur.fetchone()[0])

    def duration_s(self, start: str, end: str) -> str:
        return f"((JULIANDAY({end}) - JULIANDAY({start})) * 86400.0)"

    def table_exists(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return cur.fetchone() is not None

    def columns(self, cur: Any, table: str) -> list[str]:
        cur.execute(f"PRAGMA table_info({table})")
        return [r[1] for r in cur.fetchall()]

    def create_token_counter(self, cur: Any) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS shard_lease_counter ("
                    "id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)")
        cur.execute("INSERT OR IGNORE INTO shard_lease_counter (id, value) VALUES (1, 0)")

    def size_bytes(self, cur: Any) -> int:
        cur.execute("PRAGMA database_list")
        path = next((r[2] for r in cur.fetchall() if r[1] == "main"), "")
        if path and os.path.exists(path):
            return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        cur.execute("PRAGMA page_count")
        pages = cur.fetchone()[0]
        cur.execute("PRAGMA page_size")
        return int(pages) * int(cur.fetchone()[0])


class _PostgresDialect(_Dialect):
    name = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    row_lock = " FOR UPDATE"
    _RETRY_CODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
    _ADVISORY_KEY = 0x5348415244  # "SHARD"

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only

    def prepare(self, conn: Any) -> None:
        conn.autocommit = False
        if self.read_only:  # every transaction of this session is READ ONLY: the server refuses writes
            conn.set_session(readonly=True)

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def is_retryable(self, exc: BaseException) -> bool:
        return getattr(exc, "pgcode", None) in self._RETRY_CODES

    def next_token(self, cur: Any) -> int:
        cur.execute("SELECT nextval('shard_lease_token_seq')")
        return int(cur.fetchone()[0])

    def duration_s(self, start: str, end: str) -> str:
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"

    # A session-level advisory lock taken *before* the migration transaction begins: a transaction that began
    # earlier could keep stale catalog cache entries (to_regclass would miss tables created meanwhile).
    def lock_migrations(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (self._ADVISORY_KEY,))
        conn.commit()

    def unlock_migrations(self, conn: Any) -> None:
        try:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self._ADVISORY_KEY,))
            conn.commit()
        except Exception:  # noqa: BLE001 - the session lock dies with the connection anyway
            pass

    def table_exists(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT to_regclass(%s)", (name,))
        return cur.fetchone()[0] is not None

    def columns(self, cur: Any, table: str) -> list[str]:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "AND table_schema = current_schema() ORDER BY ordinal_position", (table,))
        return [r[0] for r in cur.fetchall()]

    def create_token_counter(self, cur: Any) -> None:
        cur.execute("CREATE SEQUENCE IF NOT EXISTS shard_lease_token_seq")

    def lock_run_slots(self, cur: Any, run_id: str) -> None:
        # READ COMMITTED lets two claims of different rows count the same running set; a transaction-level
        # advisory lock per run makes "count, then claim" atomic among slot-limited claims.
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (self._ADVISORY_KEY & 0x7FFFFFFF, run_id))

    def size_bytes(self, cur: Any) -> int:
        cur.execute("SELECT COALESCE(pg_total_relation_size(to_regclass('shard_status')), 0) "
                    "+ COALESCE(pg_total_relation_size(to_regclass('schema_version')), 0) "
                    "+ COALESCE(pg_total_relation_size(to_regclass('shard_attempts')), 0)")
        return int(cur.fetchone()[0])


def _dialect_for(name: str, **kw: Any) -> _Dialect:
    name = (name or "").lower()
    if name in ("sqlite", "sqlite3"):
        return _SqliteDialect(busy_timeout_ms=kw.get("busy_timeout_ms", 5000),
                              synchronous=kw.get("synchronous", "NORMAL"), read_only=kw.get("read_only", False))
    if name in ("postgresql", "postgres", "psycopg2", "pg"):
        return _PostgresDialect(read_only=kw.get("read_only", False))
    raise ConfigurationError(f"unknown shard store dialect {name!r}: use 'sqlite' or 'postgresql'")


def sqlite_read_only_uri(path: str) -> str:
    """A ``file:`` URI opening the SQLite file ``path`` read-only without leaving a file behind.

    ``mode=ro`` never writes the database; but on a WAL database it creates ``-wal``/``-shm`` files when they do
    not exist and cannot remove them again. A WAL database without them is fully checkpointed and no
    connection has it open, so it is read with ``immutable=1`` (no side files); when they exist (workers are
    writing), they are shared as usual and nothing new is left behind."""
    uri = "file:" + quote(os.path.abspath(path), safe="/") + "?mode=ro"
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return uri
    wal_format = len(header) == 20 and header[18] == 2
    if wal_format and not os.path.exists(path + "-wal") and not os.path.exists(path + "-shm"):
        uri += "&immutable=1"
    return uri


def describe_db_error(exc: BaseException, description: str) -> str:
    """One line naming what is wrong with the shard status database and the fix, for a driver error."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    low = msg.lower()
    where = f"the shard status database {description}"
    if isinstance(exc, sqlite3.Error):
        if "malformed" in low or "corrupt" in low:
            return (f"{where} is corrupted ({msg}): restore it from a backup (airflow-worktree db integrity; "
                    "runbook: Database Corruption)")
        if "not a database" in low:
            return f"{description} is not an SQLite database ({msg}): point --db or the connection at the shard database"
        if "readonly database" in low or "read-only" in low:
            return (f"{where} is read-only for this user ({msg}): run as the owner of the file, or make the file "
                    "and its directory writable")
        if "unable to open database file" in low:
            parent = os.path.dirname(description) or "."
            if os.path.isdir(description):
                return f"{description} is a directory, not a shard database file: name the database file"
            if os.path.exists(description) and not os.access(parent, os.W_OK):
                return (f"cannot open {where}: its directory {parent} is not writable for this user (SQLite "
                        "writes its journal there); run as the owner or grant write access to the directory")
            return f"cannot open {where} ({msg}): check that the path exists and is readable"
        if "disk i/o" in low:
            return f"{where} hit a disk I/O error ({msg}): check the disk and file system (dmesg), then db integrity"
        if "full" in low:
            return f"{where}: no space left on the device ({msg}): free space there, then retry"
        if "no such table" in low or "no such column" in low:
            return (f"{where} does not have the schema this package expects ({msg}): upgrade it with "
                    "`airflow-worktree db upgrade`")
        return f"{where} failed: {msg}"
    code = getattr(exc, "pgcode", None)
    if code == "42P01":
        return (f"{where} has no shard tables ({msg}): nothing recorded yet; `airflow-worktree db upgrade` "
                "creates them")
    if code == "25006":
        return f"{where} was opened read-only and a write was attempted ({msg}): use a command that writes"
    if code == "42501":
        return f"{where}: permission denied ({msg}): grant the connection's user access to the shard tables"
    return f"{where} failed: {type(exc).__name__}: {msg}"


def newer_schema_message(description: str, version: int) -> str:
    return (f"the shard status database {description} has schema version {version}, newer than this package "
            f"understands ({CURRENT_SCHEMA_VERSION}): upgrade airflow-provider-worktree "
            "(pip install -U airflow-provider-worktree) on this machine")


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.split(".")[0] == "psycopg2"


def connection_factory(target: str, *, connect_timeout_s: float = 10.0,
                       read_only: bool = False) -> tuple[Callable[[], Any], str, str]:
    """Parse ``target`` and return ``(connect, dialect_name, description)``.

    ``target`` is a SQLite file path, ``sqlite:///abs/path`` or ``postgresql://user:pw@host:port/db``
    (``postgres://`` and ``postgresql+psycopg2://`` are accepted too). ``connect()`` returns a new
    DB-API connection each call. ``read_only``: SQLite files are opened with :func:`sqlite_read_only_uri`
    (a missing file is an error, never created).
    """
    if not isinstance(target, (str, os.PathLike)) or not str(target).strip():
        raise ConfigurationError(
            f"shard store target {target!r} is empty: pass a SQLite file path, sqlite:///abs/path or "
            "postgresql://user:password@host:port/database")
    target = os.fspath(target).strip()
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        try:
            import psycopg2  # noqa: F401 - lazy: only PostgreSQL users need it
        except ImportError as exc:
            raise ConfigurationError(
                "the shard store target is PostgreSQL but psycopg2 is not installed: "
                "pip install 'airflow-provider-worktree[postgres]' (or psycopg2-binary)") from exc
        dsn = "postgresql://" + target.split("://", 1)[1]

        def _connect_pg() -> Any:
            import psycopg2
            try:
                return psycopg2.connect(dsn, connect_timeout=max(1, int(connect_timeout_s)))
            except psycopg2.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise StoreError(f"cannot connect to the shard status database {_redact(dsn)}: {first}. "
                                 "Check host, port, credentials and that the database exists.") from exc

        return _connect_pg, "postgresql", _redact(dsn)
    if scheme == "sqlite":
        path = unquote(urlsplit(target).path)
        if target.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        if not path or path == "/":
            raise ConfigurationError(f"SQLite URL {target!r} has no path: write sqlite:////abs/path/shard_status.db")
    elif scheme:
        raise ConfigurationError(
            f"unsupported shard store URL scheme {scheme!r} in {_redact(target)!r}: use a SQLite path, "
            "sqlite:///abs/path or postgresql://...")
    else:
        path = os.path.expanduser(target)
    if path != ":memory:":
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        if os.path.isdir(path):
            raise ConfigurationError(f"{path} is a directory, not a shard status database file: name the file, "
                                     f"e.g. {os.path.join(path, 'shard_status.db')}")
        if not os.path.isdir(parent):
            raise ConfigurationError(
                f"directory {parent!r} for the shard status database does not exist: create it or choose "
                "another path")

    def _connect_sqlite() -> sqlite3.Connection:
        if read_only and path != ":memory:":
            if not os.path.exists(path):
                raise StoreError(f"no shard status database at {path}: run the DAG first (it creates the "
                                 "database), or name the right file")
            return sqlite3.connect(sqlite_read_only_uri(path), uri=True, timeout=connect_timeout_s,
                                   isolation_level=None)
        return sqlite3.connect(path, timeout=connect_timeout_s, isolation_level=None)

    return _connect_sqlite, "sqlite", path


# ------------------------------------------------------------------------------------------ migrations
def _v2_table_sql(d: _Dialect, table: str) -> str:
    ts, big, real = d.ts_type, d.big_type, d.real_type
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
    input_tokens {big} NOT NULL DEFAULT 0,
    output_tokens {big} NOT NULL DEFAULT 0,
    cache_read_tokens {big} NOT NULL DEFAULT 0,
    cache_write_tokens {big} NOT NULL DEFAULT 0,
    cost_usd {real} NOT NULL DEFAULT 0,
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
    ts, big, real = d.ts_type, d.big_type, d.real_type
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
    input_tokens {big} NOT NULL DEFAULT 0,
    output_tokens {big} NOT NULL DEFAULT 0,
    cache_read_tokens {big} NOT NULL DEFAULT 0,
    cache_write_tokens {big} NOT NULL DEFAULT 0,
    cost_usd {real} NOT NULL DEFAULT 0,
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


MIGRATIONS: dict[int, Callable[[_Dialect, Any], None]] = {1: _migrate_0_to_1, 2: _migrate_1_to_2,
                                                          3: _migrate_2_to_3, 4: migrate_3_to_4}


# ------------------------------------------------------------------------------------------- the store
_ABANDONED: list[Any] = []  # connections inherited across fork: never used nor closed in the child


class ShardStore(BatchRecords):
    """The shard status database (seed component *ShardCoordinator*, with ``core.tasks`` planning).

    Build it with :meth:`open` from a target string, or directly from a DB-API connection factory::

        ShardStore(hook.get_conn, dialect="postgresql")

    Thread- and process-safe: each process (and thread) uses its own connection.
    """

    def __init__(self, connect: Callable[[], Any], dialect: str = "sqlite", *, description: str = "",
                 stale_after_s: float = DEFAULT_STALE_AFTER_S, lock_timeout_s: float = 120.0,
                 busy_timeout_ms: int = 5000, synchronous: str = "NORMAL",
                 clock: Callable[[], _dt.datetime] | None = None, migrate: bool = True,
                 read_only: bool = False) -> None:
        """Wrap ``connect`` (returns a new DB-API connection per call) of ``dialect`` 'sqlite' or 'postgresql'.

        ``stale_after_s``: a running shard whose heartbeat is older is *stale* (given-shard claims may take it
        over; ``lease_expires_at`` = heartbeat + this). ``lock_timeout_s``: how long a write keeps retrying on
        a locked database before :class:`StoreError`. ``clock``: returns the current UTC time (tests).
        ``migrate``: apply schema migrations now. ``read_only``: configure connections for reading only (no
        journal-mode switch on SQLite, READ ONLY sessions on PostgreSQL) and never migrate.
        """
        if not callable(connect):
            raise ConfigurationError("ShardStore(connect=...) needs a callable returning a DB-API connection")
        self._connect = connect
        self.read_only = bool(read_only)
        self.upgraded_from: int | None = None  # read-only: schema version of the file read through a copy
        self.dialect = _dialect_for(dialect, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous,
                                    read_only=self.read_only)
        self.description = description or self.dialect.name
        self.stale_after_s = float(stale_after_s)
        self.lock_timeout_s = float(lock_timeout_s)
        self._clock = clock or _utcnow
        self._local = threading.local()
        self._retry_start_s, self._retry_cap_s = 0.0005, 0.05  # backoff of the retry loop (jittered, doubling)
        self.retries = 0  # lock retries done by this process (diagnostics, benchmarks)
        if migrate and not self.read_only:
            self.migrate()

    @classmethod
    def open(cls, target: str, *, read_only: bool = False, **kw: Any) -> "ShardStore":
        """Open (and create or migrate) the store at ``target``: a SQLite path, ``sqlite:///abs/path`` or
        ``postgresql://user:password@host:port/database``. Keyword arguments go to the constructor.

        ``read_only=True`` creates, migrates and writes nothing (see :meth:`check_readable`)."""
        connect, dialect, description = connection_factory(
            target, connect_timeout_s=kw.pop("connect_timeout_s", 10.0), read_only=read_only)
        if not read_only:
            return cls(connect, dialect, description=description, **kw)
        kw.pop("migrate", None)
        store = cls(connect, dialect, description=description, migrate=False, read_only=True, **kw)
        try:
            store.check_readable()
        except BaseException:
            store.close()
            raise
        return store

    def check_readable(self) -> int:
        """Read-only stores: make sure the database can answer this package's queries; returns its version.

        An empty database (or one without the shard table) and a newer schema raise :class:`StoreError`
        naming the fix. An older SQLite schema (the runbook's version 1, ...) is copied into memory and
        migrated there, so reads answer in the current schema while the file stays as it is
        (:attr:`upgraded_from` records its version); an older PostgreSQL schema names ``db upgrade``."""
        version = self._tx(self._read_version, write=False)
        if version == 0:
            raise StoreError(f"{self.description} holds no shard status tables: nothing was recorded there yet "
                             "(run the DAG first), or it is not the shard database; `airflow-worktree db "
                             "upgrade` creates the tables")
        if version > CURRENT_SCHEMA_VERSION:
            raise StoreError(newer_schema_message(self.description, version))
        if version < CURRENT_SCHEMA_VERSION:
            if self.dialect.name != "sqlite":
                raise StoreError(f"the shard status database {self.description} has schema version {version}, "
                                 f"older than this package's {CURRENT_SCHEMA_VERSION}: upgrade it with "
                                 "`airflow-worktree db upgrade` (then this command reads it)")
            self._read_through_upgraded_copy(version)
        return version

    def _read_through_upgraded_copy(self, version: int) -> None:
        source = self._conn()
        uri = f"file:shard-store-ro-{os.getpid()}-{id(self)}?mode=memory&cache=shared"
        anchor = sqlite3.connect(uri, uri=True, isolation_level=None)  # keeps the memory database alive
        source.backup(anchor)
        self.close()
        self._anchor = anchor
        self._connect = lambda: sqlite3.connect(uri, uri=True, isolation_level=None)
        self.dialect = _SqliteDialect(busy_timeout_ms=self.dialect.busy_timeout_ms)  # the copy is ours to write
        self.migrate()
        self.upgraded_from = version

    def __repr__(self) -> str:
        return f"ShardStore({self.description!r}, dialect={self.dialect.name!r})"

    # --------------------------------------------------------------------------------- connections
    def _conn(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and getattr(local, "pid", None) == os.getpid():
            return conn
        if conn is not None:  # inherited across fork: leave the parent's connection alone
            _ABANDONED.append(conn)
        conn = self._connect()
        self.dialect.prepare(conn)
        local.conn, local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this process's (and thread's) connection; the next call opens a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._local.conn = None

    def _tx(self, fn: Callable[[Any], Any], *, write: bool = True) -> Any:
        """Run ``fn(cursor)`` in one transaction, retrying on lock contention with jittered backoff."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = self._retry_start_s
        while True:
            try:
                conn = self._conn()
            except sqlite3.OperationalError as exc:
                if self.dialect.is_retryable(exc) and time.monotonic() < deadline:
                    self.retries += 1
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self._retry_cap_s)
                    continue
                raise StoreError(describe_db_error(exc, self.description)) from exc
            except sqlite3.Error as exc:  # prepare(): "file is not a database", "unable to open", ...
                raise StoreError(describe_db_error(exc, self.description)) from exc
            cur = conn.cursor()
            try:
                (self.dialect.begin_write if write else self.dialect.begin_read)(cur)
                result = fn(cur)
                self.dialect.commit(conn)
                return result
            except BaseException as exc:
                self.dialect.rollback(conn)
                if isinstance(exc, Exception) and self.dialect.is_retryable(exc):
                    if time.monotonic() < deadline:
                        self.retries += 1
                        time.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, self._retry_cap_s)
                        continue
                    raise StoreError(
                        f"the shard status database {self.description} stayed locked for more than "
                        f"{self.lock_timeout_s:.0f}s ({exc}); look for a process holding a long write "
                        "transaction, or move the shard database to PostgreSQL") from exc
                if isinstance(exc, Exception) and _is_driver_error(exc):
                    raise StoreError(describe_db_error(exc, self.description)) from exc
                raise
            finally:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001
                    pass

    def _q(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self.dialect.sql(sql), tuple(params))
        return cur

    def _row(self, cur: Any, row: Sequence[Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        names = [c[0] for c in cur.description]
        d = {n: _norm_ts(v) for n, v in zip(names, row)}
        for col in _JSON_COLUMNS:
            if col in d:
                d[col] = _loads(d[col], [] if col != "result_summary" else None)
        if "cost_usd" in d and d["cost_usd"] is not None:
            d["cost_usd"] = float(d["cost_usd"])
        return d

    def _rows(self, cur: Any) -> list[dict[str, Any]]:
        return [self._row(cur, r) for r in cur.fetchall()]  # type: ignore[misc]

    def _now(self) -> _dt.datetime:
        return self._clock()

    # ---------------------------------------------------------------------------------- migrations
    def schema_version(self) -> int:
        """The schema version of the database (0: empty, 1: the runbook's table, 2: current)."""
        return self._tx(self._read_version, write=False)

    def _read_version(self, cur: Any, strict: bool = True) -> int:
        """Read the schema version. ``strict=False`` (the unlocked fast path) never raises: on PostgreSQL its
        statements may straddle another process's migration commit, so anything odd means "take the lock"."""
        d = self.dialect
        if d.table_exists(cur, "schema_version"):
            self._q(cur, "SELECT MAX(version) FROM schema_version")
            v = cur.fetchone()[0]
            if v is not None:
                return int(v)
        if d.table_exists(cur, "shard_status"):
            cols = d.columns(cur, "shard_status")
            if "run_id" in cols:
                if not strict:
                    return -1
                raise StoreError(
                    f"table shard_status in {self.description} has a run_id column but no schema_version "
                    "row: it was not created by this package; rename it or use another database")
            return 1
        return 0

    def migrate(self) -> int:
        """Apply pending forward migrations; idempotent and safe when several processes open at once.

        Returns the schema version reached."""
        if self._tx(lambda cur: self._read_version(cur, strict=False), write=False) == CURRENT_SCHEMA_VERSION:
            return CURRENT_SCHEMA_VERSION

        def _apply(cur: Any) -> int:
            version = self._read_version(cur)
            if version > CURRENT_SCHEMA_VERSION:
                raise StoreError(newer_schema_message(self.description, version))
            if version < CURRENT_SCHEMA_VERSION:
                self._q(cur, "CREATE TABLE IF NOT EXISTS schema_version ("
                             f"version INTEGER PRIMARY KEY, applied_at {self.dialect.ts_type} NOT NULL)")
                if version == 1:
                    self._q(cur, "INSERT INTO schema_version (version, applied_at) VALUES (1, ?)", (_ts(self._now()),))
                for step in range(version + 1, CURRENT_SCHEMA_VERSION + 1):
                    MIGRATIONS[step](self.dialect, cur)
                    self._q(cur, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                            (step, _ts(self._now())))
            return max(version, CURRENT_SCHEMA_VERSION)

        conn = self._conn()
        self.dialect.lock_migrations(conn)
        try:
            return self._tx(_apply)
        finally:
            self.dialect.unlock_migrations(conn)

    # -------------------------------------------------------------------------------- registration
    def register_shards(self, run_id: str, shards: Iterable[dict[str, Any] | str]) -> int:
        """Insert the run's shards as pending; idempotent. Existing rows (of any status) are left unchanged.

        ``shards``: shard dicts (``shard_id``, ``task``, ``files``, ``priority``; see docs/architecture.md) or
        bare shard ids. Returns how many rows were new."""
        self._check_run_id(run_id)
        rows = []
        seen: set[str] = set()
        now = _ts(self._now())
        for s in shards:
            if isinstance(s, str):
                s = {"shard_id": s}
            if not isinstance(s, dict) or "shard_id" not in s:
                raise ConfigurationError(f"shard {s!r} is not a shard dict with a 'shard_id' key: "
                                         "pass dicts from core.tasks.plan_shards (or bare shard ids)")
            sid = str(s["shard_id"])
            self._check_shard_id(sid)
            if sid in seen:
                continue
            seen.add(sid)
            files = s.get("files") or []
            if isinstance(files, str) or not all(isinstance(f, str) for f in files):
                raise ConfigurationError(f"shard {sid}: 'files' must be a list of path strings, got {files!r}")
            try:
                priority = int(s.get("priority") or 0)
            except (TypeError, ValueError):
                raise ConfigurationError(f"shard {sid}: 'priority' must be an integer, got {s.get('priority')!r}")
            rows.append((run_id, sid, PENDING, s.get("task"), json.dumps(list(files)), priority, now, now))

        def _insert(cur: Any) -> int:
            new = 0
            for i in range(0, len(rows), 100):
                chunk = rows[i:i + 100]
                values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                self._q(cur, "INSERT INTO shard_status (run_id, shard_id, status, task, files, priority, "
                             f"created_at, updated_at) VALUES {values} ON CONFLICT (run_id, shard_id) DO NOTHING",
                        [v for r in chunk for v in r])
                new += max(cur.rowcount, 0)
            return new

        return self._tx(_insert) if rows else 0

    # ------------------------------------------------------------------------------------- claiming
    def assign_shard(self, run_id: str, worker_id: str, shard_id: str | None = None, *,
                     max_active: int | None = None) -> Lease | None:
        """Claim a shard atomically and return its :class:`Lease`.

        Without ``shard_id``: the next pending shard of the run (highest priority, then shard id), or ``None``
        when nothing is pending. With ``shard_id``: that shard, if pending or failed, or running with a
        stale heartbeat (taken over; the old holder's token stops working). Raises
        :class:`ShardAlreadyCompleted` if completed, :class:`ShardBusy` if running with a fresh heartbeat,
        :class:`ShardNotFound` if not registered. A claim sets status running, attempt+1, a new fencing
        token, ``started_at`` and ``heartbeat_at`` to now, and adds the attempt's row to ``shard_attempts``
        (an earlier attempt still marked running there becomes ``lost``).

        ``max_active``: the run's slot limit. The claim succeeds only while fewer than ``max_active`` other
        shards of the run are running under a live lease (heartbeat fresher than ``stale_after_s``); otherwise
        :class:`NoSlotAvailable`, and nothing changes. A dead holder's slot frees itself when its heartbeat
        goes stale."""
        self._check_run_id(run_id)
        if max_active is not None and (isinstance(max_active, bool) or not isinstance(max_active, int)
                                       or max_active < 1):
            raise ConfigurationError(f"max_active={max_active!r} must be a positive integer (or None: no limit)")
        if not worker_id or not isinstance(worker_id, str):
            raise ConfigurationError("assign_shard needs a non-empty worker_id (e.g. host:pid:task-instance)")
        d = self.dialect

        def _claim(cur: Any) -> Lease | None:
            if max_active is not None:
                d.lock_run_slots(cur, run_id)
            now = self._now()  # after the lock: the claim's times never precede the slot it was given
            note = None
            if shard_id is None:
                self._q(cur, "SELECT shard_id FROM shard_status WHERE run_id = ? AND status = 'pending' "
                             f"ORDER BY priority DESC, shard_id LIMIT 1{d.skip_locked}", (run_id,))
                found = cur.fetchone()
                if found is None:
                    return None
                sid = found[0]
            else:
                sid = shard_id
                self._q(cur, "SELECT status, worker_id, heartbeat_at, started_at, lease_token FROM shard_status "
                             f"WHERE run_id = ? AND shard_id = ?{d.row_lock}", (run_id, sid))
                found = cur.fetchone()
                if found is None:
                    raise ShardNotFound(f"shard {sid!r} of run {run_id!r} is not registered: call "
                                        "register_shards first (or check the run id)")
                status, holder, hb, started, token = found
                if status == COMPLETED:
                    raise ShardAlreadyCompleted(
                        f"shard {sid!r} of run {run_id!r} is already completed (by {holder}); its result "
                        "stands. Register a new run to redo it.")
                if status == RUNNING:
                    last = _norm_ts(hb or started)
                    cutoff = _ts(now - _dt.timedelta(seconds=self.stale_after_s))
                    if last is not None and last >= cutoff:
                        raise ShardBusy(
                            f"shard {sid!r} of run {run_id!r} is running under worker {holder} (token {token}, "
                            f"last heartbeat {last} UTC, fresher than {self.stale_after_s:.0f}s): wait for it, "
                            "or reclaim it once stale (reset_stale / airflow-worktree reset-stale)")
                    note = (f"lease taken over from worker {holder} (token {token}, last heartbeat {last} UTC, "
                            f"stale after {self.stale_after_s:.0f}s)")
            if max_active is not None:
                fresh = _ts(now - _dt.timedelta(seconds=self.stale_after_s))
                self._q(cur, "SELECT COUNT(*) FROM shard_status WHERE run_id = ? AND status = 'running' "
                             "AND shard_id <> ? AND COALESCE(heartbeat_at, started_at, updated_at) >= ?",
                        (run_id, sid, fresh))
                active = int(cur.fetchone()[0])
                if active >= max_active:
                    raise NoSlotAvailable(
                        f"run {run_id!r} already has {active} shard(s) running under live leases "
                        f"(max_active={max_active}): wait for a slot")
            token = d.next_token(cur)
            nowt = _ts(now)
            exp = _ts(now + _dt.timedelta(seconds=self.stale_after_s))
            sets = ("status = 'running', worker_id = ?, attempt = attempt + 1, lease_token = ?, started_at = ?, "
                    "heartbeat_at = ?, lease_expires_at = ?, updated_at = ?, completed_at = NULL")
            params: list[Any] = [worker_id, token, nowt, nowt, exp, nowt]
            if note:
                sets += ", error_message = ?"
                params.append(note)
            self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? "
                         "RETURNING attempt, task, files", [*params, run_id, sid])
            attempt, task, files = cur.fetchone()
            self._q(cur, "UPDATE shard_attempts SET status = 'lost', ended_at = ?, error_message = COALESCE("
                         "error_message, ?) WHERE run_id = ? AND shard_id = ? AND status = 'running'",
                    (nowt, f"lease taken over by worker {worker_id} (attempt {attempt})", run_id, sid))
            self._q(cur, "INSERT INTO shard_attempts (run_id, shard_id, attempt, worker_id, lease_token, "
                         "started_at, status) VALUES (?, ?, ?, ?, ?, ?, 'running') ON CONFLICT (run_id, shard_id, "
                         "attempt) DO UPDATE SET worker_id = excluded.worker_id, lease_token = excluded.lease_token, "
                         "started_at = excluded.started_at, status = 'running', ended_at = NULL",
                    (run_id, sid, int(attempt), worker_id, token, nowt))
            return Lease(run_id=run_id, shard_id=sid, worker_id=worker_id, token=int(token), attempt=int(attempt),
                         task=task, files=list(_loads(files, [])))

        return self._tx(_claim)

    # ------------------------------------------------------------------------------- fenced writes
    def _fenced(self, lease: Lease, action: str, sets: str, params: Sequence[Any]) -> dict[str, Any]:
        if not isinstance(lease, Lease):
            raise ConfigurationError(f"{action} needs a Lease from assign_shard (or Lease.from_dict), got {lease!r}")

        def _write(cur: Any) -> dict[str, Any]:
            self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? AND lease_token = ? "
                         f"AND status = 'running' RETURNING {_COLS_SQL}",
                    [*params, lease.run_id, lease.shard_id, lease.token])
            row = self._row(cur, cur.fetchone())
            if row is not None:
                return row
            self._q(cur, "SELECT status, worker_id, lease_token, attempt FROM shard_status "
                         "WHERE run_id = ? AND shard_id = ?", (lease.run_id, lease.shard_id))
            now_row = cur.fetchone()
            raise self._lease_lost(lease, action, now_row)

        return self._tx(_write)

    @staticmethod
    def _lease_lost(lease: Lease, action: str, now_row: Sequence[Any] | None) -> LeaseLostError:
        head = (f"{action} refused: the lease of worker {lease.worker_id} on shard {lease.shard_id!r} of run "
                f"{lease.run_id!r} (token {lease.token}, attempt {lease.attempt}) is no longer valid; ")
        if now_row is None:
            return LeaseLostError(head + "the shard no longer exists in the database. Discard this work.")
        status, holder, token, attempt = now_row
        if status == RUNNING:
            why = f"it is now held by worker {holder} (token {token}, attempt {attempt}), reclaimed after a stale heartbeat"
        elif status == PENDING:
            why = f"it was reset to pending (stale-lock reclaim or release); last worker {holder}"
        else:
            why = f"it is already {status} by worker {holder} (token {token}, attempt {attempt})"
        return LeaseLostError(head + why + ". Stop working on this shard; its result will not be recorded.",
                              current_status=status, current_worker_id=holder,
                              current_token=None if token is None else int(token))

    def heartbeat(self, lease: Lease) -> dict[str, Any]:
        """Refresh the lease's heartbeat (and ``lease_expires_at``). Raises :class:`LeaseLostError` if fenced out.

        Returns the updated row."""
        now = self._now()
        return self._fenced(lease, "heartbeat", "heartbeat_at = ?, lease_expires_at = ?, updated_at = ?",
                            [_ts(now), _ts(now + _dt.timedelta(seconds=self.stale_after_s)), _ts(now)])

    def _result_sets(self, result: dict[str, Any]) -> tuple[list[str], list[Any]]:
        unknown = set(result) - set(RESULT_FIELDS) - {"result_summary"}
        if unknown:
            raise ConfigurationError(f"unknown result field(s) {sorted(unknown)}: allowed are {', '.join(RESULT_FIELDS)}")
        sets, params = [], []
        for key, value in result.items():
            if value is None:
                continue
            if key in ("summary", "result_summary"):
                sets.append("result_summary = ?")
                params.append(json.dumps(value, default=str))
            elif key == "files_changed":
                sets.append("files_changed = ?")
                params.append(json.dumps(list(value)))
            elif key in _INT_RESULT_FIELDS:
                sets.append(f"{key} = ?")
                params.append(int(value))
            elif key == "cost_usd":
                sets.append("cost_usd = ?")
                params.append(float(value))
            else:
                sets.append(f"{key} = ?")
                params.append(str(value))
        return sets, params

    def _finish_fenced(self, lease: Lease, action: str, status: str, error_message: str | None,
                       result: dict[str, Any]) -> dict[str, Any]:
        """Fenced: the shard row's outcome, this attempt's row (its own spend) and the shard row's cumulative
        spend, in one transaction."""
        if not isinstance(lease, Lease):
            raise ConfigurationError(f"{action} needs a Lease from assign_shard (or Lease.from_dict), got {lease!r}")
        usage = {k: result.pop(k) for k in _USAGE_FIELDS if k in result}
        sets, params = self._result_sets(result)
        sets = [f"status = '{status}'", "completed_at = ?", "updated_at = ?", "error_message = ?",
                "lease_expires_at = NULL", *sets]

        def _write(cur: Any) -> dict[str, Any]:
            nowt = _ts(self._now())
            self._q(cur, f"UPDATE shard_status SET {', '.join(sets)} WHERE run_id = ? AND shard_id = ? "
                         "AND lease_token = ? AND status = 'running'",
                    [nowt, nowt, error_message, *params, lease.run_id, lease.shard_id, lease.token])
            if cur.rowcount != 1:
                self._q(cur, "SELECT status, worker_id, lease_token, attempt FROM shard_status "
                             "WHERE run_id = ? AND shard_id = ?", (lease.run_id, lease.shard_id))
                raise self._lease_lost(lease, action, cur.fetchone())
            self._write_attempt(cur, lease, status, error_message, usage, result, nowt)
            return self._refresh_totals(cur, lease.run_id, lease.shard_id)

        return self._tx(_write)

    def _write_attempt(self, cur: Any, lease: Lease, status: str, error_message: str | None,
                       usage: dict[str, Any], result: dict[str, Any], nowt: str) -> None:
        vals = [max(0, int(usage.get(k) or 0)) for k in _INT_RESULT_FIELDS]
        cost = max(0.0, float(usage.get("cost_usd") or 0.0))
        self._q(cur, "INSERT INTO shard_attempts (run_id, shard_id, attempt, worker_id, lease_token, ended_at, "
                     "status, error_message, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                     "cost_usd, isolation, commit_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (run_id, shard_id, attempt) DO UPDATE SET ended_at = excluded.ended_at, "
                     "status = excluded.status, error_message = excluded.error_message, "
                     "input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, "
                     "cache_read_tokens = excluded.cache_read_tokens, "
                     "cache_write_tokens = excluded.cache_write_tokens, cost_usd = excluded.cost_usd, "
                     "isolation = COALESCE(excluded.isolation, shard_attempts.isolation), "
                     "commit_sha = COALESCE(excluded.commit_sha, shard_attempts.commit_sha)",
                (lease.run_id, lease.shard_id, lease.attempt, lease.worker_id, lease.token, nowt, status,
                 error_message, *vals, cost, result.get("isolation"), result.get("commit_sha")))

    def _refresh_totals(self, cur: Any, run_id: str, shard_id: str) -> dict[str, Any]:
        sub = ("(SELECT COALESCE(SUM({c}), 0) FROM shard_attempts a WHERE a.run_id = shard_status.run_id "
               "AND a.shard_id = shard_status.shard_id)")
        sets = ", ".join(f"{c} = {sub.format(c=c)}" for c in _USAGE_FIELDS)
        self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? RETURNING {_COLS_SQL}",
                (run_id, shard_id))
        return self._row(cur, cur.fetchone())  # type: ignore[return-value]

    def complete(self, lease: Lease, **result: Any) -> dict[str, Any]:
        """Mark the shard completed with its result fields (``branch, commit_sha, files_changed, diffstat,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, summary, isolation``).

        The token and cost fields are this attempt's spend: they go to the attempt's ``shard_attempts`` row,
        and the shard row's token and cost columns become the sum over all its attempts.
        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        return self._finish_fenced(lease, "complete", COMPLETED, None, dict(result))

    def fail(self, lease: Lease, error_message: str, **result: Any) -> dict[str, Any]:
        """Mark the shard failed with ``error_message`` (bounded to :data:`MAX_ERROR_CHARS`) and any result
        fields known so far (this attempt's tokens spent, as for :meth:`complete`).

        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        return self._finish_fenced(lease, "fail", FAILED, bound_error(error_message), dict(result))

    def record_attempt(self, lease: Lease, status: str, error_message: str | None = None,
                       **usage: Any) -> dict[str, Any]:
        """Record an attempt's own outcome and spend without touching the shard's result: for an attempt that
        was fenced out (``status='lost'``) but spent tokens. Not fenced (the spend happened); the shard row's
        cumulative token and cost columns are refreshed. Returns the shard row."""
        if status not in ATTEMPT_STATUSES:
            raise ConfigurationError(f"attempt status {status!r}: use one of {', '.join(ATTEMPT_STATUSES)}")
        unknown = set(usage) - set(_USAGE_FIELDS) - {"isolation", "commit_sha"}
        if unknown:
            raise ConfigurationError(f"unknown attempt field(s) {sorted(unknown)}: allowed are "
                                     f"{', '.join(_USAGE_FIELDS)}, isolation, commit_sha")
        nowt = _ts(self._now())
        err = None if error_message is None else bound_error(error_message)

        def _write(cur: Any) -> dict[str, Any]:
            self._write_attempt(cur, lease, status, err, usage, usage, nowt)
            return self._refresh_totals(cur, lease.run_id, lease.shard_id)

        return self._tx(_write)

    def update_attempt(self, lease: Lease, *, isolation: str | None = None, remote_sha: str | None = None) -> None:
        """Note facts about a running attempt on its ``shard_attempts`` row (and ``isolation`` on the shard
        row while the lease is current)."""
        def _write(cur: Any) -> None:
            self._q(cur, "UPDATE shard_attempts SET isolation = COALESCE(?, isolation), "
                         "remote_sha = COALESCE(?, remote_sha) WHERE run_id = ? AND shard_id = ? AND attempt = ?",
                    (isolation, remote_sha, lease.run_id, lease.shard_id, lease.attempt))
            if isolation is not None:
                self._q(cur, "UPDATE shard_status SET isolation = ? WHERE run_id = ? AND shard_id = ? "
                             "AND lease_token = ?", (isolation, lease.run_id, lease.shard_id, lease.token))

        self._tx(_write)

    def list_attempts(self, run_id: str, shard_id: str | None = None) -> list[dict[str, Any]]:
        """The ``shard_attempts`` rows of a run (or one shard), ordered by shard id and attempt."""
        sql = f"SELECT {_ATT_COLS_SQL} FROM shard_attempts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if shard_id is not None:
            sql += " AND shard_id = ?"
            params.append(shard_id)
        sql += " ORDER BY shard_id, attempt"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def prior_spend(self, run_id: str, shard_id: str, before_attempt: int) -> dict[str, Any]:
        """What the shard's attempts numbered below ``before_attempt`` spent: ``{input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, cost_usd, attempts}`` (sums)."""
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in _USAGE_FIELDS)

        def _read(cur: Any) -> dict[str, Any]:
            self._q(cur, f"SELECT {sums}, COUNT(*) FROM shard_attempts WHERE run_id = ? AND shard_id = ? "
                         "AND attempt < ?", (run_id, shard_id, int(before_attempt)))
            r = cur.fetchone()
            out: dict[str, Any] = {k: int(v) for k, v in zip(_INT_RESULT_FIELDS, r)}
            out["cost_usd"], out["attempts"] = float(r[4]), int(r[5])
            return out

        return self._tx(_read, write=False)

    def release(self, lease: Lease) -> dict[str, Any]:
        """Give the shard back: status pending, ready for another claim (the attempt stays counted).

        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        nowt = _ts(self._now())
        row = self._fenced(lease, "release", "status = 'pending', started_at = NULL, heartbeat_at = NULL, "
                           "lease_expires_at = NULL, completed_at = NULL, updated_at = ?", [nowt])
        self._tx(lambda cur: self._q(cur, "UPDATE shard_attempts SET status = 'released', ended_at = ? WHERE "
                                          "run_id = ? AND shard_id = ? AND attempt = ? AND status = 'running'",
                                     (nowt, lease.run_id, lease.shard_id, lease.attempt)))
        return row

    # ---------------------------------------------------------------------------------------- reads
    def get_shard(self, run_id: str, shard_id: str) -> dict[str, Any]:
        """The shard's row as a dict (column name -> value; JSON columns decoded). Raises :class:`ShardNotFound`."""
        def _get(cur: Any) -> dict[str, Any] | None:
            self._q(cur, f"SELECT {_COLS_SQL} FROM shard_status WHERE run_id = ? AND shard_id = ?", (run_id, shard_id))
            return self._row(cur, cur.fetchone())

        row = self._tx(_get, write=False)
        if row is None:
            raise ShardNotFound(f"shard {shard_id!r} of run {run_id!r} is not in {self.description}: check the "
                                "run id and shard id (list_shards / airflow-worktree status)")
        return row

    def list_shards(self, run_id: str | None = None, status: str | Sequence[str] | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Rows (dicts) filtered by run and status (one status or several), ordered by run, priority desc,
        shard id; at most ``limit``."""
        where, params = self._filters(run_id, status)
        sql = f"SELECT {_COLS_SQL} FROM shard_status{where} ORDER BY run_id, priority DESC, shard_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def _filters(self, run_id: str | None, status: str | Sequence[str] | None,
                 ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            bad = [s for s in wanted if s not in STATUSES]
            if bad:
                raise ConfigurationError(f"unknown status {bad}: use one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def stale_leases(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Running shards whose heartbeat (or, if none, start) is older than ``older_than_s`` seconds."""
        cutoff = _ts(self._now() - _dt.timedelta(seconds=float(older_than_s)))
        sql = (f"SELECT {_COLS_SQL} FROM shard_status WHERE status = 'running' "
               "AND COALESCE(heartbeat_at, started_at, updated_at) < ?")
        params: list[Any] = [cutoff]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY heartbeat_at, run_id, shard_id"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def reset_stale(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Reset stale leases (see :meth:`stale_leases`) to pending; returns the reset rows (after the reset).

        ``error_message`` notes the reclaim; ``worker_id`` keeps the last holder; ``attempt`` keeps the dead
        attempt counted. The dead holder's token stops working (its writes raise :class:`LeaseLostError`)."""
        now = self._now()
        nowt = _ts(now)
        cutoff = _ts(now - _dt.timedelta(seconds=float(older_than_s)))
        note_sql = ("'reclaimed stale lease of worker ' || COALESCE(worker_id, 'unknown') || ' (token ' || "
                    "COALESCE(CAST(lease_token AS TEXT), '-') || ', attempt ' || CAST(attempt AS TEXT) || "
                    "', last heartbeat ' || COALESCE(CAST(heartbeat_at AS TEXT), 'never') || ' UTC) at ' || ?")
        sql = (f"UPDATE shard_status SET status = 'pending', error_message = {note_sql}, started_at = NULL, "
               "heartbeat_at = NULL, lease_expires_at = NULL, updated_at = ? "
               "WHERE status = 'running' AND COALESCE(heartbeat_at, started_at, updated_at) < ?")
        params: list[Any] = [nowt, nowt, cutoff]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += f" RETURNING {_COLS_SQL}"

        def _reset(cur: Any) -> list[dict[str, Any]]:
            rows = self._rows(self._q(cur, sql, params))
            for r in rows:
                self._q(cur, "UPDATE shard_attempts SET status = 'lost', ended_at = ?, error_message = COALESCE("
                             "error_message, 'reclaimed as stale') WHERE run_id = ? AND shard_id = ? "
                             "AND status = 'running'", (nowt, r["run_id"], r["shard_id"]))
            return rows

        rows = self._tx(_reset)
        return sorted(rows, key=lambda r: (r["run_id"], r["shard_id"]))

    def summary(self, run_id: str | None = None) -> dict[str, Any]:
        """Per-status counts and durations (the runbook's statistics query), token and cost totals.

        Returns ``{"run_id", "total", "counts": {status: n} (all four statuses), "by_status": [{"status",
        "count", "avg_duration_minutes", "max_duration_minutes"}], "avg_duration_s", "max_duration_s"
        (finished shards), "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cost_usd", "attempts"}``."""
        where, params = self._filters(run_id, None)
        dur = self.dialect.duration_s("started_at", "completed_at")

        def _sum(cur: Any) -> dict[str, Any]:
            self._q(cur, f"SELECT status, COUNT(*), AVG({dur}), MAX({dur}) FROM shard_status{where} "
                         "GROUP BY status ORDER BY status", params)
            by = cur.fetchall()
            self._q(cur, f"SELECT COUNT(*), AVG({dur}), MAX({dur}), COALESCE(SUM(input_tokens), 0), "
                         "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), "
                         "COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(cost_usd), 0), "
                         f"COALESCE(SUM(attempt), 0) FROM shard_status{where}", params)
            return {"by": by, "tot": cur.fetchone()}

        res = self._tx(_sum, write=False)

        def _f(v: Any) -> float | None:
            return None if v is None else float(v)

        counts = {s: 0 for s in STATUSES}
        by_status = []
        for status, n, avg, mx in res["by"]:
            counts[status] = int(n)
            by_status.append({"status": status, "count": int(n),
                              "avg_duration_minutes": None if avg is None else float(avg) / 60.0,
                              "max_duration_minutes": None if mx is None else float(mx) / 60.0})
        total, avg, mx, i_t, o_t, cr_t, cw_t, cost, attempts = res["tot"]
        return {"run_id": run_id, "total": int(total), "counts": counts, "by_status": by_status,
                "avg_duration_s": _f(avg), "max_duration_s": _f(mx),
                "input_tokens": int(i_t), "output_tokens": int(o_t), "cache_read_tokens": int(cr_t),
                "cache_write_tokens": int(cw_t), "cost_usd": float(cost), "attempts": int(attempts)}

    def runs(self) -> list[dict[str, Any]]:
        """One dict per run: ``run_id, total, pending, running, completed, failed, created_at, updated_at,
        cost_usd``; newest run first."""
        sql = ("SELECT run_id, COUNT(*), "
               + ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in STATUSES)
               + ", MIN(created_at), MAX(updated_at), COALESCE(SUM(cost_usd), 0) FROM shard_status "
               "GROUP BY run_id ORDER BY MIN(created_at) DESC, run_id")

        def _runs(cur: Any) -> list[dict[str, Any]]:
            out = []
            for r in self._q(cur, sql).fetchall():
                d = {"run_id": r[0], "total": int(r[1])}
                d.update({s: int(r[2 + i] or 0) for i, s in enumerate(STATUSES)})
                d.update({"created_at": _norm_ts(r[6]), "updated_at": _norm_ts(r[7]), "cost_usd": float(r[8])})
                out.append(d)
            return out

        return self._tx(_runs, write=False)

    def db_size_bytes(self) -> int:
        """Size of the database on disk: SQLite file plus WAL; on PostgreSQL, the store's tables with indexes."""
        return self._tx(self.dialect.size_bytes, write=False)

    # ---------------------------------------------------------------------------------- validation
    @staticmethod
    def _check_run_id(run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r} (use the Airflow run id)")

    @staticmethod
    def _check_shard_id(shard_id: str) -> None:
        if not SHARD_ID_RE.match(shard_id):
            raise ConfigurationError(
                f"shard id {shard_id!r} is invalid: use letters, digits, '.', '_' and '-', starting with a "
                "letter or digit (core.tasks.plan_shards produces valid ids)")
