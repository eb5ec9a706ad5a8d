"""SQL dialects of the shard database (SQLite, PostgreSQL), connection factories and driver error messages."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
)
from airflow_provider_worktree.core.store._common import CURRENT_SCHEMA_VERSION, _redact
from airflow_provider_worktree.core.store.errors import StoreError


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


