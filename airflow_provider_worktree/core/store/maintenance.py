"""Maintenance of the shard status database: the runbook's database procedures as functions.

Plain Python, no Airflow import; ``airflow-worktree db ...`` and the worktree_health DAG call these.

=============  ====================================================  ================================================
procedure      SQLite                                                PostgreSQL
=============  ====================================================  ================================================
backup         online backup API into a new file (consistent while   not supported: ``pg_dump -t shard_status ...``
               workers write)                                        (the server's own tools do it better)
restore        check the backup, move the damaged file aside,         not supported: ``pg_restore``
               put a copy of the backup in its place
integrity      ``PRAGMA integrity_check`` / ``quick_check``          reads every row of the store's tables (the
                                                                     server checksums its own pages)
archive        rows of finished runs older than X move into an        rows move into ``<table>_archive`` tables of
               archive database file, then are deleted              the same database, then are deleted
vacuum         ``VACUUM`` (returns free pages to the file system)     ``VACUUM ANALYZE`` of the store's tables
upgrade        forward migrations, after a backup                    forward migrations
=============  ====================================================  ================================================
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sqlite3
from typing import Any, Callable

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store._common import CURRENT_SCHEMA_VERSION, _ts, _utcnow
from airflow_provider_worktree.core.store.dialects import connection_factory, describe_db_error, sqlite_read_only_uri
from airflow_provider_worktree.core.store.errors import StoreError
from airflow_provider_worktree.core.store.shards import ShardStore

__all__ = ["archive", "backup", "integrity_check", "restore", "upgrade", "vacuum", "is_sqlite", "sqlite_path"]

ARCHIVE_SUFFIX = "_archive"
#: Tables whose rows belong to a shard (``run_id`` + ``shard_id`` columns) move with it; these never do.
_NOT_PER_SHARD = {"schema_version", "shard_lease_counter"}


def sqlite_path(target: str) -> str | None:
    """The file of an SQLite target, ``None`` for PostgreSQL."""
    _, dialect, description = connection_factory(target)
    return description if dialect == "sqlite" else None


def is_sqlite(target: str) -> bool:
    return sqlite_path(target) is not None


def _unsupported(what: str, instead: str) -> ConfigurationError:
    return ConfigurationError(f"{what} is not supported on PostgreSQL: {instead}")


def _sqlite_ro(path: str) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise StoreError(f"no shard status database at {path}: name the right file")
    return sqlite3.connect(sqlite_read_only_uri(path), uri=True, isolation_level=None)


def _guard(path: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except sqlite3.Error as exc:
        raise StoreError(describe_db_error(exc, path)) from exc


# ------------------------------------------------------------------------------------------- integrity
def integrity_check(target: str, *, quick: bool = False, max_errors: int = 20) -> list[str]:
    """``["ok"]`` when the database is sound, else the problems found (at most ``max_errors``).

    SQLite: ``PRAGMA integrity_check`` (``quick_check`` with ``quick``: O(N), skips index/content
    cross-checks), opened read-only. PostgreSQL: every row of the store's tables is read."""
    path = sqlite_path(target)
    if path is None:
        store = ShardStore.open(target, read_only=True)
        try:
            store.list_shards()
            store.runs()
        finally:
            store.close()
        return ["ok"]

    def _check() -> list[str]:
        conn = _sqlite_ro(path)
        try:
            pragma = "quick_check" if quick else "integrity_check"
            return [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}({int(max_errors)})").fetchall()]
        finally:
            conn.close()

    try:
        return _check()
    except sqlite3.DatabaseError as exc:  # a damaged header or first page: sqlite cannot even start the check
        text = str(exc).lower()
        if "malformed" in text or "corrupt" in text:
            return [str(exc)]
        raise StoreError(describe_db_error(exc, path)) from exc


def is_ok(problems: list[str]) -> bool:
    return problems == ["ok"]


# ---------------------------------------------------------------------------------------------- backup
def backup(target: str, dest: str, *, overwrite: bool = False) -> dict[str, Any]:
    """Copy the SQLite database into ``dest`` with the online backup API (consistent even while workers
    write). ``dest`` must not exist unless ``overwrite``; a directory receives ``<name>.<UTC stamp>.bak``.
    Returns ``{"source", "backup", "bytes", "integrity"}``."""
    path = sqlite_path(target)
    if path is None:
        raise _unsupported("db backup", "back the shard tables up with the server's tools, e.g. "
                           "pg_dump --table shard_status --table schema_version DBNAME > shard_status.sql")
    dest = os.path.abspath(os.path.expanduser(dest))
    if os.path.isdir(dest):
        stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
        dest = os.path.join(dest, f"{os.path.basename(path)}.{stamp}.bak")
    if os.path.abspath(dest) == os.path.abspath(path):
        raise ConfigurationError(f"backup destination {dest} is the database itself: name another file")
    if os.path.exists(dest) and not overwrite:
        raise ConfigurationError(f"backup destination {dest} exists: name a new file, or pass --overwrite")
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise ConfigurationError(f"directory {parent} for the backup does not exist: create it first")
    if not os.access(parent, os.W_OK):
        raise ConfigurationError(f"cannot write the backup into {parent}: the directory is not writable for "
                                 "this user; choose another destination")
    problems = integrity_check(target, quick=True, max_errors=1)
    if not is_ok(problems):
        raise StoreError(f"the shard status database {path} is corrupted ({problems[0]}), so a backup would be "
                         "too: restore it from an earlier backup (airflow-worktree db restore)")
    tmp = f"{dest}.tmp-{os.getpid()}"

    def _copy() -> None:
        src = _sqlite_ro(path)
        try:
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # a backup is one self-contained file
            finally:
                dst.close()
        finally:
            src.close()

    try:
        _guard(path, _copy)
        problems = integrity_check(tmp)
        if not is_ok(problems):
            raise StoreError(f"the copy of {path} failed its integrity check ({problems[0]}): the database is "
                             "damaged; restore it from an older backup (airflow-worktree db restore)")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"source": path, "backup": dest, "bytes": os.path.getsize(dest), "integrity": "ok"}


def restore(target: str, source: str) -> dict[str, Any]:
    """Replace the SQLite database with a copy of the backup ``source`` (checked first). The replaced file,
    with its ``-wal``/``-shm``, moves aside to ``<db>.damaged-<UTC stamp>``: nothing is deleted.
    Pause the DAGs first: workers holding the old file open keep writing to it."""
    path = sqlite_path(target)
    if path is None:
        raise _unsupported("db restore", "restore the shard tables with pg_restore or psql from your dump")
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isfile(source):
        raise ConfigurationError(f"no backup file at {source}: name the file `db backup` wrote")
    problems = integrity_check(source)
    if not is_ok(problems):
        raise StoreError(f"the backup {source} is damaged too ({problems[0]}): choose another backup")
    parent = os.path.dirname(path)
    if not os.access(parent, os.W_OK):
        raise ConfigurationError(f"cannot restore into {parent}: the directory is not writable for this user")
    tmp = f"{path}.restore-{os.getpid()}"
    shutil.copyfile(source, tmp)
    moved = None
    if os.path.exists(path):
        moved = f"{path}.damaged-{_utcnow().strftime('%Y%m%dT%H%M%SZ')}"
        os.replace(path, moved)
        for side in ("-wal", "-shm", "-journal"):
            if os.path.exists(path + side):
                os.replace(path + side, moved + side)
    os.replace(tmp, path)
    return {"database": path, "restored_from": source, "moved_aside": moved}


# --------------------------------------------------------------------------------------------- archive
def _sqlite_tables(cur: Any, schema: str = "main") -> dict[str, list[str]]:
    names = [r[0] for r in cur.execute(
        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()]
    return {n: [r[1] for r in cur.execute(f"PRAGMA {schema}.table_info({n})").fetchall()] for n in names}


def _per_shard_tables(tables: dict[str, list[str]]) -> list[str]:
    """``shard_status`` first, then every other table with ``run_id`` and ``shard_id`` columns."""
    others = sorted(n for n, cols in tables.items()
                    if n != "shard_status" and n not in _NOT_PER_SHARD and not n.endswith(ARCHIVE_SUFFIX)
                    and {"run_id", "shard_id"} <= set(cols))
    return ["shard_status", *others]


def _per_run_tables(tables: dict[str, list[str]]) -> list[str]:
    """Tables of whole runs (a ``run_id`` column, no ``shard_id``), e.g. ``shard_batches``: their rows follow the
    run's last shard into the archive."""
    return sorted(n for n, cols in tables.items()
                  if n not in _NOT_PER_SHARD and not n.endswith(ARCHIVE_SUFFIX)
                  and "run_id" in cols and "shard_id" not in cols)


#: Rows of per-run tables whose run has no shard left in the live table.
_RUN_GONE = "run_id NOT IN (SELECT run_id FROM {prefix}shard_status)"


_FINISHED = ("status IN ('completed', 'failed') AND COALESCE(completed_at, updated_at) < ? AND run_id NOT IN "
             "(SELECT run_id FROM shard_status WHERE status IN ('pending', 'running'))")


def archive(target: str, older_than_s: float, *, archive_path: str | None = None, dry_run: bool = False,
            now: _dt.datetime | None = None) -> dict[str, Any]:
    """Move completed and failed shards of finished runs (no shard pending or running) that ended more than
    ``older_than_s`` seconds ago out of the live tables, then delete them there; one transaction.

    SQLite: into the database file ``archive_path`` (default ``<db>.archive.db``; created, tables grow
    columns as the schema does). PostgreSQL: into ``shard_status_archive`` (and ``<table>_archive`` for
    other per-shard tables) of the same database. Returns ``{"database", "archive", "cutoff", "rows",
    "runs", "dry_run"}``; the file does not shrink until ``vacuum``."""
    if older_than_s is None or float(older_than_s) < 0:
        raise ConfigurationError(f"older_than={older_than_s!r}: give a duration >= 0, like 30d")
    cutoff = _ts((now or _utcnow()) - _dt.timedelta(seconds=float(older_than_s)))
    store = ShardStore.open(target)  # current schema: the archive copies today's columns
    try:
        if store.dialect.name == "sqlite":
            path = store.description
            dest = os.path.abspath(archive_path or f"{os.path.splitext(path)[0]}.archive.db")
            result = _guard(path, lambda: _archive_sqlite(store, dest, cutoff, dry_run))
        else:
            dest = "shard_status" + ARCHIVE_SUFFIX
            result = _archive_postgres(store, cutoff, dry_run)
    finally:
        store.close()
    return {"database": store.description, "archive": dest, "cutoff": cutoff, "dry_run": dry_run, **result}


def _candidates(cur: Any, q: Callable[..., Any], cutoff: str) -> tuple[int, list[str]]:
    rows = q(cur, f"SELECT run_id, COUNT(*) FROM shard_status WHERE {_FINISHED} GROUP BY run_id ORDER BY run_id",
             (cutoff,)).fetchall()
    return sum(int(r[1]) for r in rows), [r[0] for r in rows]


def _sqlite_archive_table(cur: Any, table: str, cols: list[str], have: dict[str, list[str]]) -> str:
    """Create ``archive.<table>`` or give it the live table's new columns; returns the column list (SQL)."""
    if table not in have:
        cur.execute(f"CREATE TABLE archive.{table} ({', '.join(cols)})")
    else:
        for col in cols:
            if col not in have[table]:
                cur.execute(f"ALTER TABLE archive.{table} ADD COLUMN {col}")
    return ", ".join(cols)


def _archive_sqlite(store: ShardStore, dest: str, cutoff: str, dry_run: bool) -> dict[str, Any]:
    conn = store._conn()
    cur = conn.cursor()
    if dry_run:
        n, runs = _candidates(cur, lambda c, sql, p=(): c.execute(sql, p), cutoff)
        return {"rows": n, "runs": runs}
    if not os.access(os.path.dirname(dest), os.W_OK):
        raise ConfigurationError(f"cannot create the archive {dest}: its directory is not writable")
    cur.execute("ATTACH DATABASE ? AS archive", (dest,))
    try:
        cur.execute("BEGIN IMMEDIATE")
        try:
            n, runs = _candidates(cur, lambda c, sql, p=(): c.execute(sql, p), cutoff)
            live = _sqlite_tables(cur, "main")
            have = _sqlite_tables(cur, "archive")
            keys = f"SELECT run_id, shard_id FROM main.shard_status WHERE {_FINISHED}"
            for table in _per_shard_tables(live):
                col_sql = _sqlite_archive_table(cur, table, live[table], have)
                where = f"(run_id, shard_id) IN ({keys})"
                cur.execute(f"INSERT INTO archive.{table} ({col_sql}) SELECT {col_sql} FROM main.{table} "
                            f"WHERE {where}", (cutoff,))
                if table != "shard_status":
                    cur.execute(f"DELETE FROM main.{table} WHERE {where}", (cutoff,))
            cur.execute(f"DELETE FROM main.shard_status WHERE {_FINISHED}", (cutoff,))
            gone = _RUN_GONE.format(prefix="main.")
            for table in _per_run_tables(live):
                col_sql = _sqlite_archive_table(cur, table, live[table], have)
                cur.execute(f"INSERT INTO archive.{table} ({col_sql}) SELECT {col_sql} FROM main.{table} "
                            f"WHERE {gone}")
                cur.execute(f"DELETE FROM main.{table} WHERE {gone}")
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
    finally:
        cur.execute("DETACH DATABASE archive")
    return {"rows": n, "runs": runs}


def _archive_postgres(store: ShardStore, cutoff: str, dry_run: bool) -> dict[str, Any]:
    def q(cur: Any, sql: str, params: tuple = ()) -> Any:
        cur.execute(store.dialect.sql(sql), params)
        return cur

    def _move(cur: Any) -> dict[str, Any]:
        n, runs = _candidates(cur, q, cutoff)
        if dry_run:
            return {"rows": n, "runs": runs}
        q(cur, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
               "current_schema() ORDER BY table_name, ordinal_position")
        tables: dict[str, list[str]] = {}
        for name, col in cur.fetchall():
            tables.setdefault(name, []).append(col)
        keys = f"SELECT run_id, shard_id FROM shard_status WHERE {_FINISHED}"
        def archive_table(table: str) -> tuple[str, str]:
            arch = table + ARCHIVE_SUFFIX
            q(cur, f"CREATE TABLE IF NOT EXISTS {arch} (LIKE {table} INCLUDING DEFAULTS)")
            for col in tables[table]:
                if col not in tables.get(arch, tables[table]):
                    q(cur, f"ALTER TABLE {arch} ADD COLUMN IF NOT EXISTS {col} TEXT")
            return arch, ", ".join(tables[table])

        for table in _per_shard_tables(tables):
            arch, col_sql = archive_table(table)
            where = f"(run_id, shard_id) IN ({keys})"
            q(cur, f"INSERT INTO {arch} ({col_sql}) SELECT {col_sql} FROM {table} WHERE {where}", (cutoff,))
            if table != "shard_status":
                q(cur, f"DELETE FROM {table} WHERE {where}", (cutoff,))
        q(cur, f"DELETE FROM shard_status WHERE {_FINISHED}", (cutoff,))
        gone = _RUN_GONE.format(prefix="")
        for table in _per_run_tables(tables):
            arch, col_sql = archive_table(table)
            q(cur, f"INSERT INTO {arch} ({col_sql}) SELECT {col_sql} FROM {table} WHERE {gone}")
            q(cur, f"DELETE FROM {table} WHERE {gone}")
        return {"rows": n, "runs": runs}

    return store._tx(_move)


# ---------------------------------------------------------------------------------------------- vacuum
def vacuum(target: str) -> dict[str, Any]:
    """Give free pages back (SQLite ``VACUUM``; PostgreSQL ``VACUUM ANALYZE`` of the store's tables).
    Returns ``{"database", "bytes_before", "bytes_after"}``. SQLite needs free disk about the database's
    size and blocks writers while it runs: schedule it when no DAG runs."""
    store = ShardStore.open(target)
    try:
        before = store.db_size_bytes()
        conn = store._conn()
        if store.dialect.name == "sqlite":
            _guard(store.description, lambda: (conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall(),
                                               conn.execute("VACUUM").fetchall(),
                                               conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()))
        else:
            conn.rollback()
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                "current_schema() AND (table_name LIKE 'shard%' OR table_name = 'schema_version')")
                    for (name,) in cur.fetchall():
                        cur.execute(f"VACUUM ANALYZE {name}")
            finally:
                conn.autocommit = False
        after = store.db_size_bytes()
    finally:
        store.close()
    return {"database": store.description, "bytes_before": before, "bytes_after": after}


# --------------------------------------------------------------------------------------------- upgrade
def upgrade(target: str, *, backup_dir: str | None = None, backup_first: bool = True) -> dict[str, Any]:
    """Apply the forward migrations (creating the tables in an empty database). SQLite files are backed up
    first (beside the file, or into ``backup_dir``) unless ``backup_first`` is false or nothing is there yet.
    Returns ``{"database", "from_version", "to_version", "backup"}``."""
    path = sqlite_path(target)
    saved = None
    before: int | None = None
    if path is not None and os.path.exists(path):
        conn = _sqlite_ro(path)
        try:
            before = _guard(path, lambda: _sqlite_version(conn))
        finally:
            conn.close()
        if backup_first and 0 < before < CURRENT_SCHEMA_VERSION:
            saved = backup(target, backup_dir or os.path.dirname(path))["backup"]
    connect, dialect, description = connection_factory(target)
    store = ShardStore(connect, dialect, description=description, migrate=False)
    try:
        if before is None:
            before = store.schema_version()
        after = store.migrate()
    finally:
        store.close()
    return {"database": description, "from_version": before, "to_version": after, "backup": saved}


def _sqlite_version(conn: sqlite3.Connection) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        v = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if v is not None:
            return int(v)
    return 1 if "shard_status" in tables else 0
