"""ShardStatusHook: the shard status database as an Airflow DbApiHook (a thin face over core.store)."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import (
    CURRENT_SCHEMA_VERSION,
    Lease,
    ShardStore,
    connection_factory,
    newer_schema_message,
)

DEFAULT_CONN_ID = "shard_status_default"
DB_FILENAME = "shard_status.db"


def _airflow_home() -> str:
    return os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow")


def _get_airflow_connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id``, or None when it does not exist or Airflow is not importable."""
    try:
        from airflow.sdk.bases.hook import BaseHook

        from airflow_provider_worktree.version_compat import AirflowNotFoundException
    except ImportError:  # pragma: no cover - airflow missing
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _mask_password_of(url: str) -> None:
    """Register the password of a ``dsn`` (or old ``url``) extra, and the URL itself, with Airflow's secrets
    masker, so logs show ``***``. The UI and REST API mask ``dsn`` by its name (a sensitive field name), and
    the form shows it as a password field (``format: password`` in the provider's conn-fields)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover
        try:
            from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]
        except ImportError:
            return
    password = urlsplit(url).password
    if password:
        mask_secret(password)
        mask_secret(url)


def target_from_connection(conn: Any) -> str:
    """Turn an Airflow connection into a store target (SQLite path or postgresql:// URL)."""
    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    if conn_type in ("postgres", "postgresql"):
        if not conn.host:
            raise ConfigurationError(f"connection {conn.conn_id!r} (postgres) has no host: set host, port, login, "
                                     "password and schema (the database name)")
        auth = ""
        if conn.login:
            auth = quote(conn.login, safe="")
            if conn.password:
                auth += ":" + quote(conn.password, safe="")
            auth += "@"
        port = f":{conn.port}" if conn.port else ""
        database = conn.schema or extra.get("database") or "postgres"
        return f"postgresql://{auth}{conn.host}{port}/{quote(database, safe='')}"
    if conn_type in ("sqlite", "shard_status"):
        url = extra.get("dsn") or extra.get("url")  # "url": the 0.x name, unmasked by Airflow; prefer "dsn"
        if url:
            _mask_password_of(str(url))
            return str(url)
        path = conn.host or extra.get("path")
        if not path:
            raise ConfigurationError(f"connection {conn.conn_id!r} ({conn_type}) has no host: set host to the "
                                     "SQLite file path, e.g. /var/lib/airflow/shard_status.db")
        return path
    raise ConfigurationError(
        f"connection {conn.conn_id!r} has conn_type {conn.conn_type!r}, which the shard status database does not "
        "support: use sqlite (host = file path) or postgres (host, port, login, password, schema = database)")


def configured_conn_id() -> str:
    """``[worktree] shard_status_conn_id`` (``AIRFLOW__WORKTREE__SHARD_STATUS_CONN_ID``), default
    ``shard_status_default``."""
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - the CLI without Airflow
        return DEFAULT_CONN_ID
    return conf.get("worktree", "shard_status_conn_id", fallback=DEFAULT_CONN_ID) or DEFAULT_CONN_ID


def resolve_store_target(conn_id: str | None = None, db_path: str | None = None, *,
                         create_home: bool = True) -> str:
    """Where the shard status database is, as a :meth:`ShardStore.open` target.

    1. ``db_path`` (a SQLite path, or a sqlite:/// or postgresql:// URL) when given;
    2. else the Airflow connection ``conn_id`` (default ``shard_status_default``) when it exists: conn_type
       ``sqlite`` (host = file path) or ``postgres``/``postgresql``. An explicitly named connection that does
       not exist is an error; a missing default is not;
    3. else the embedded SQLite file ``$AIRFLOW_HOME/shard_status.db``.

    Without ``conn_id`` the default is ``[worktree] shard_status_conn_id``. Connections are read only when
    Airflow is importable, so the CLI works without it. ``create_home=False``: never create
    ``$AIRFLOW_HOME`` (read-only callers)."""
    if db_path:
        return os.fspath(db_path)
    default = configured_conn_id()
    conn = _get_airflow_connection(conn_id or default)
    if conn is not None:
        return target_from_connection(conn)
    if (conn_id and conn_id != DEFAULT_CONN_ID) or (not conn_id and default != DEFAULT_CONN_ID):
        name = conn_id or default
        raise ConfigurationError(
            f"Airflow connection {name!r} for the shard status database does not exist: create it "
            f"(conn_type shard_status, sqlite or postgres), or pass a database path instead")
    home = _airflow_home()
    if create_home:
        os.makedirs(home, exist_ok=True)
    return os.path.join(home, DB_FILENAME)


class ShardStatusHook(DbApiHook):
    """The shard status database (seed component *ShardCoordinator*): SQLite or PostgreSQL.

    Resolution: ``db_path`` if given; else the connection ``shard_status_conn_id`` when it exists; else
    ``$AIRFLOW_HOME/shard_status.db``. ``get_store()`` returns the :class:`ShardStore` the operators use;
    ``get_conn()`` a plain DB-API connection (``get_records`` and friends work on it)."""

    conn_name_attr = "shard_status_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "shard_status"
    hook_name = "Shard Status"

    def __init__(self, *args: Any, db_path: str | None = None, stale_after_s: float | None = None,
                 **kwargs: Any) -> None:
        if not args and not kwargs.get(self.conn_name_attr):
            kwargs[self.conn_name_attr] = configured_conn_id()  # [worktree] shard_status_conn_id
        super().__init__(*args, **kwargs)
        self.db_path = db_path
        self.stale_after_s = stale_after_s
        self._target: str | None = None
        self._store: ShardStore | None = None

    # ------------------------------------------------------------------------------- connection
    @property
    def target(self) -> str:
        """The resolved store target (SQLite path or postgresql:// URL)."""
        if self._target is None:
            conn_id = self.get_conn_id()
            explicit = conn_id if conn_id not in (DEFAULT_CONN_ID, configured_conn_id()) else None
            self._target = resolve_store_target(explicit, self.db_path)
        return self._target

    @property
    def dialect_name(self) -> str:  # type: ignore[override]
        """'sqlite' or 'postgresql'."""
        return connection_factory(self.target)[1]

    @property
    def placeholder(self) -> str:  # type: ignore[override]
        """The DB-API parameter placeholder of the resolved dialect."""
        return "?" if self.dialect_name == "sqlite" else "%s"

    def get_conn(self) -> Any:
        """A new DB-API connection to the shard status database (sqlite3 or psycopg2)."""
        connect, _, _ = connection_factory(self.target)
        return connect()

    def get_uri(self) -> str:
        """SQLAlchemy-style URI of the database."""
        target = self.target
        if "://" in target:
            return target
        return f"sqlite:///{os.path.abspath(target)}"

    def get_store(self) -> ShardStore:
        """The :class:`ShardStore` over this hook's connections (created, and migrated, once per hook)."""
        if self._store is None:
            _, dialect, description = connection_factory(self.target)
            kw: dict[str, Any] = {"description": description}
            if self.stale_after_s is not None:
                kw["stale_after_s"] = self.stale_after_s
            self.log.info("Shard status database: %s (%s)", description, dialect)
            self._store = ShardStore(self.get_conn, dialect, **kw)
        return self._store

    def report_dir(self) -> str:
        """Where run reports are written: beside the SQLite file, or ``$AIRFLOW_HOME`` for PostgreSQL."""
        target = self.target
        if "://" in target and not target.startswith("sqlite:"):
            return _airflow_home()
        return os.path.dirname(os.path.abspath(target.replace("sqlite:///", "/", 1)))

    def test_connection(self) -> tuple[bool, str]:
        """Open the database read-only and report its schema version; creates, migrates and writes nothing.

        A SQLite file that does not exist yet (with a writable directory) and a reachable PostgreSQL database
        without the tables are fine: the first DAG run creates them."""
        try:
            connect, dialect, description = connection_factory(self.target, read_only=True)
            if dialect == "sqlite" and not os.path.exists(description):
                parent = os.path.dirname(description)
                if not os.access(parent, os.W_OK):
                    return False, (f"no database at {description} and its directory {parent} is not writable: "
                                   "grant the Airflow workers write access, or choose another path")
                return True, (f"no database at {description} yet; the first DAG run creates it "
                              f"(the directory {parent} is writable)")
            store = ShardStore(connect, dialect, description=description, read_only=True)
            try:
                version = store.schema_version()
            finally:
                store.close()
            if version == 0:
                return True, f"{description} ({dialect}) is reachable; the first DAG run creates the shard tables"
            if version > CURRENT_SCHEMA_VERSION:
                return False, newer_schema_message(description, version)
            note = "" if version == CURRENT_SCHEMA_VERSION else (
                f" (older than this package's {CURRENT_SCHEMA_VERSION}: workers upgrade it on first use, or run "
                "`airflow-worktree db upgrade`)")
            return True, f"shard status database {description} OK ({dialect}), schema version {version}{note}"
        except Exception as exc:  # noqa: BLE001 - reported to the UI, one line
            text = str(exc).strip()
            return False, text.splitlines()[0] if text else type(exc).__name__

    # ------------------------------------------------------------------------- seed names
    def assign_shard(self, run_id: str, worker_id: str, shard_id: str | None = None, *,
                     max_active: int | None = None) -> Lease | None:
        """Claim a shard (next pending, or the given one), within the run's slot limit ``max_active``;
        see :meth:`ShardStore.assign_shard`."""
        lease = self.get_store().assign_shard(run_id, worker_id, shard_id, max_active=max_active)
        if lease is None:
            self.log.info("No pending shard left in run %s", run_id)
        else:
            self.log.info("Worker %s claimed shard %s of run %s (attempt %s, token %s)", worker_id,
                          lease.shard_id, run_id, lease.attempt, lease.token)
        return lease

    def update_status(self, lease: Lease, status: str, error_message: str | None = None,
                      **result: Any) -> dict[str, Any]:
        """Record the lease's outcome: ``running`` (a heartbeat), ``completed``, ``failed`` or ``pending``
        (release). Fenced: raises ``LeaseLostError`` when the lease is no longer current."""
        store = self.get_store()
        if status == "running":
            return store.heartbeat(lease)
        if status == "completed":
            row = store.complete(lease, **result)
        elif status == "failed":
            row = store.fail(lease, error_message or "failed without a message", **result)
        elif status == "pending":
            row = store.release(lease)
        else:
            raise ConfigurationError(f"unknown status {status!r}: use running, completed, failed or pending")
        self.log.info("Shard %s of run %s is now %s", lease.shard_id, lease.run_id, status)
        return row

    def cleanup_stale(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Reset running shards whose heartbeat is older than ``older_than_s`` to pending; returns them."""
        rows = self.get_store().reset_stale(older_than_s, run_id)
        for r in rows:
            self.log.warning("Reclaimed stale shard %s of run %s (last worker %s)", r["shard_id"], r["run_id"],
                             r["worker_id"])
        return rows

    # ------------------------------------------------------------------------------ delegates
    def register_shards(self, run_id: str, shards: Iterable[dict[str, Any] | str]) -> int:
        """Register the run's shards as pending (idempotent); returns how many were new."""
        new = self.get_store().register_shards(run_id, shards)
        self.log.info("Registered %s new shard(s) for run %s", new, run_id)
        return new

    def heartbeat(self, lease: Lease) -> dict[str, Any]:
        """Refresh the lease's heartbeat (fenced)."""
        return self.get_store().heartbeat(lease)

    def complete(self, lease: Lease, **result: Any) -> dict[str, Any]:
        """Mark the lease's shard completed with its result (fenced)."""
        return self.update_status(lease, "completed", **result)

    def fail(self, lease: Lease, error_message: str, **result: Any) -> dict[str, Any]:
        """Mark the lease's shard failed (fenced)."""
        return self.update_status(lease, "failed", error_message, **result)

    def release(self, lease: Lease) -> dict[str, Any]:
        """Give the lease's shard back to pending (fenced)."""
        return self.update_status(lease, "pending")

    def get_shard(self, run_id: str, shard_id: str) -> dict[str, Any]:
        """One shard's row."""
        return self.get_store().get_shard(run_id, shard_id)

    def list_shards(self, run_id: str | None = None, status: str | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Rows filtered by run and status."""
        return self.get_store().list_shards(run_id, status, limit)

    def stale_leases(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Running shards with a heartbeat older than ``older_than_s``."""
        return self.get_store().stale_leases(older_than_s, run_id)

    def summary(self, run_id: str | None = None) -> dict[str, Any]:
        """Counts, durations, tokens and cost (see :meth:`ShardStore.summary`)."""
        return self.get_store().summary(run_id)

    def list_attempts(self, run_id: str, shard_id: str | None = None) -> list[dict[str, Any]]:
        """Every attempt of the run's shards (or one shard): worker, outcome, tokens, cost, isolation."""
        return self.get_store().list_attempts(run_id, shard_id)


__all__ = ["ShardStatusHook", "resolve_store_target", "target_from_connection", "DEFAULT_CONN_ID"]
