"""Which shard database a command works on (``--db``, ``--conn-id`` or the default), checked before it is
opened: a missing file, one that is not the shard database or one this user cannot write is refused with the
fix; nothing is created or changed on the way."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from airflow_provider_worktree.cli.common import (
    DEFAULT_CONN_ID,
    PROG,
    CliError,
    _one_line,
    _redact,
)
from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.health import Thresholds


def _sqlite_path_of(target: str) -> str | None:
    """The file of an SQLite target (a path or ``sqlite:///...``); ``None`` for a server URL."""
    if target.startswith("sqlite:"):
        rest = target[len("sqlite:"):]
        return rest[2:] if rest.startswith("///") else rest.lstrip("/") or None
    if "://" in target:
        return None
    return target



def check_sqlite_file(path: str, *, write: bool = False) -> None:
    """Refuse, with a message naming the fix, a missing file or one that is not the shard database; with
    ``write``, also a file or directory this user cannot write.

    Never creates or changes anything (the file is opened read-only, see ``sqlite_read_only_uri``)."""
    from airflow_provider_worktree.core.store import (
        describe_db_error,
        sqlite_read_only_uri,
    )

    p = Path(path)
    if not p.parent.is_dir():
        raise CliError(f"no directory {p.parent} for the shard database: check the path passed with --db")
    if not p.exists():
        raise CliError(f"no shard database at {p}: run the DAG first or pass --db")
    if p.is_dir():
        raise CliError(f"{p} is a directory, not a shard database: pass the database file with --db")
    try:
        with open(p, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise CliError(f"cannot read {p}: {exc.strerror}; check its permissions (run as its owner)") from None
    if header != b"SQLite format 3\x00":
        what = "an empty file" if not header else "not an SQLite database"
        raise CliError(f"{p} is {what}: pass the shard database file with --db")
    try:
        conn = sqlite3.connect(sqlite_read_only_uri(str(p)), uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='shard_status'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CliError(describe_db_error(exc, str(p))) from None
    if row is None:
        raise CliError(
            f"{p} is an SQLite database without a shard_status table, so not a shard database: "
            f"pass the right file with --db"
        )
    if write:
        check_writable(p)



def check_writable(p: Path) -> None:
    """A command that writes needs the file and its directory (SQLite's journal) writable."""
    if not os.access(p, os.W_OK):
        raise CliError(f"{p} is read-only for this user: run this command as the owner of the file "
                       f"(ls -l {p}) or make it writable (chmod u+w); read-only commands (status, stale, "
                       "report, check) work as they are")
    if not os.access(p.parent, os.W_OK):
        raise CliError(f"the directory {p.parent} is not writable for this user, and SQLite writes its journal "
                       f"there: run this command as the directory's owner or grant write access to it")



def _default_sqlite_path() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "shard_status.db")



def resolve_target(args: argparse.Namespace, *, write: bool = False) -> tuple[str, str]:
    """``(store target, description for humans)`` from ``--db`` / ``--conn-id`` / the default."""
    db = getattr(args, "db", None)
    conn_id = getattr(args, "conn_id", None)
    if db:
        target = os.path.abspath(os.path.expanduser(db)) if "://" not in db else db
    else:
        try:
            # Imports Airflow: only for --conn-id and the default resolution.
            from airflow_provider_worktree.hooks.shard_status import (
                resolve_store_target,
            )
        except ImportError as exc:
            if conn_id:
                raise CliError(
                    f"--conn-id needs Apache Airflow ({exc}); install it or pass the SQLite file with --db"
                ) from None
            target = _default_sqlite_path()
        else:
            try:
                target = str(resolve_store_target(conn_id=conn_id, db_path=None, create_home=False))
            except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException, ConfigurationError, ...
                name = conn_id or DEFAULT_CONN_ID
                raise CliError(f"cannot use connection {name!r}: {_one_line(exc)}") from None
    sqlite_path = _sqlite_path_of(target)
    if sqlite_path:
        check_sqlite_file(sqlite_path, write=write)
        return target, sqlite_path
    return target, _redact(target)



def open_store(args: argparse.Namespace, *, write: bool = False):
    """The shard store of ``--db``/``--conn-id``. Read-only unless ``write``: nothing is created, migrated or
    left behind (an older SQLite schema is read through an upgraded in-memory copy). SQLite files pass
    ``PRAGMA quick_check`` first, so a damaged page is reported whichever rows the command reads."""
    target, desc = resolve_target(args, write=write)
    from airflow_provider_worktree.core.store import ShardStore
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    try:
        if _sqlite_path_of(target):
            problems = dbmaint.integrity_check(target, quick=True, max_errors=1)
            if not dbmaint.is_ok(problems):
                raise CliError(f"the shard database {desc} is corrupted ({problems[0]}): restore it from a "
                               f"backup with `{PROG} db restore BACKUP --db {desc}` (see `{PROG} db integrity`)")
        store = ShardStore.open(target, read_only=not write)
    except WorktreeProviderError as exc:  # the store's messages name the database and the fix
        raise CliError(str(exc)) from None
    if store.upgraded_from is not None:
        print(f"{PROG}: note: {desc} has schema version {store.upgraded_from} (older than this package's); "
              f"read through an upgraded in-memory copy, the file is unchanged. Upgrade it with: "
              f"{PROG} db upgrade --db {desc}", file=sys.stderr)
    return store, desc



def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()



def _thresholds(args: argparse.Namespace) -> Thresholds:
    overrides = dict(getattr(args, "threshold", None) or [])
    try:
        return Thresholds.from_dict(overrides)
    except WorktreeProviderError as exc:
        raise CliError(str(exc)) from None



def _manager(repo: str, worktree_root: str | None):
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    repo_path = os.path.abspath(os.path.expanduser(repo))
    if not os.path.isdir(repo_path):
        raise CliError(f"no repository at {repo_path}: pass the repository with --repo")
    try:
        return WorktreeManager(repo_path, worktree_root=worktree_root)
    except WorktreeProviderError as exc:
        raise CliError(f"cannot use the repository {repo_path}: {exc}") from None



def _describe_unexpected(exc: BaseException) -> str:
    """One line for an error no command anticipated (driver, file system, ...): cause first, then the fix."""
    from airflow_provider_worktree.core.store.dialects import (
        _is_driver_error,
        describe_db_error,
    )

    if _is_driver_error(exc):
        return describe_db_error(exc, "in use")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{where}: check the path, its permissions and free space"
    return (f"unexpected {type(exc).__name__}: {_one_line(exc)} (set AIRFLOW_WORKTREE_DEBUG=1 for the traceback "
            "and report it)")
