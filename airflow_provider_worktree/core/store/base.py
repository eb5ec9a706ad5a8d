"""The shard database's connection handling: per-process connections, transactions with retries, migration."""

from __future__ import annotations

import datetime as _dt
import os
import random
import sqlite3
import threading
import time
from typing import Any, Callable, Self, Sequence

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
)
from airflow_provider_worktree.core.store._common import (
    _JSON_COLUMNS,
    CURRENT_SCHEMA_VERSION,
    DEFAULT_STALE_AFTER_S,
    _loads,
    _norm_ts,
    _ts,
    _utcnow,
)
from airflow_provider_worktree.core.store.dialects import (
    _dialect_for,
    _is_driver_error,
    _SqliteDialect,
    connection_factory,
    describe_db_error,
    newer_schema_message,
)
from airflow_provider_worktree.core.store.errors import StoreError
from airflow_provider_worktree.core.store.schema import MIGRATIONS

_ABANDONED: list[Any] = []  # connections inherited across fork: never used nor closed in the child


class StoreConnection:
    """Connections, transactions and schema migration of :class:`~.shards.ShardStore`."""

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
    def open(cls, target: str, *, read_only: bool = False, **kw: Any) -> Self:
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
