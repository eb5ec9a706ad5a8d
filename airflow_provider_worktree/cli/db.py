"""The database commands (``db backup|restore|integrity|archive|vacuum|upgrade``, the runbook's database
procedures of :mod:`airflow_provider_worktree.core.store.maintenance`) and ``example-dags``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from airflow_provider_worktree.cli.common import (
    EXIT_CRITICAL,
    EXIT_OK,
    PROG,
    CliError,
    _size,
)
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import check_writable, resolve_target
from airflow_provider_worktree.core.health import CRITICAL


def cmd_db_backup(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args)
    data = dbmaint.backup(target, args.dest, overwrite=args.overwrite)
    return data, (f"Backed up {desc} to {data['backup']} ({_size(data['bytes'])}, integrity ok).\n"
                  f"Restore it with: {PROG} db restore {data['backup']} --db {desc}"), EXIT_OK



def cmd_db_restore(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    target = (os.path.abspath(os.path.expanduser(db)) if db and "://" not in db else db) or resolve_target(args)[0]
    data = dbmaint.restore(target, args.source)
    aside = f"; the replaced file is kept as {data['moved_aside']}" if data["moved_aside"] else ""
    return data, f"Restored {data['database']} from {data['restored_from']}{aside}.", EXIT_OK



def cmd_db_integrity(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    if db and "://" not in db:  # a damaged file may not even pass the shard-database checks: check it as it is
        target = desc = os.path.abspath(os.path.expanduser(db))
        if not os.path.isfile(target):
            raise CliError(f"no database file at {target}: pass the shard database with --db")
    else:
        target, desc = resolve_target(args)
    problems = dbmaint.integrity_check(target, quick=args.quick)
    ok = dbmaint.is_ok(problems)
    data = {"database": desc, "check": "quick_check" if args.quick else "integrity_check", "ok": ok,
            "problems": [] if ok else problems}
    if ok:
        return data, f"{desc}: integrity {out.level('ok')} ({data['check']})", EXIT_OK
    lines = [f"{desc}: {out.level(CRITICAL.upper())} the database is damaged ({len(problems)} problem(s)):"]
    lines += [f"  {p}" for p in problems[:10]]
    lines += ["", f"Restore it from a backup: {PROG} db restore BACKUP --db {desc} (pause the DAGs first)"]
    return data, "\n".join(lines), EXIT_CRITICAL



def cmd_db_archive(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args, write=not args.dry_run)
    data = dbmaint.archive(target, args.older_than, archive_path=args.to, dry_run=args.dry_run)
    if args.vacuum and not args.dry_run and data["rows"]:
        data["vacuum"] = dbmaint.vacuum(target)
    verb = "Would move" if args.dry_run else "Moved"
    text = (f"{verb} {data['rows']} shard row(s) of {len(data['runs'])} finished run(s) that ended before "
            f"{data['cutoff']} UTC from {desc} to {data['archive']}"
            + (out.style(" (dry run: nothing changed)", "yellow") if args.dry_run else "."))
    if data.get("vacuum"):
        text += (f"\nVacuumed: {_size(data['vacuum']['bytes_before'])} -> {_size(data['vacuum']['bytes_after'])}")
    elif data["rows"] and not args.dry_run:
        text += f"\nThe file shrinks after: {PROG} db vacuum --db {desc}"
    return data, text, EXIT_OK



def cmd_db_vacuum(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args, write=True)
    data = dbmaint.vacuum(target)
    return data, f"Vacuumed {desc}: {_size(data['bytes_before'])} -> {_size(data['bytes_after'])}", EXIT_OK



def cmd_db_upgrade(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    if db and "://" not in db:  # upgrade may create the tables in a new file: no shard-database checks
        target = desc = os.path.abspath(os.path.expanduser(db))
        if os.path.exists(target):
            check_writable(Path(target))
    else:
        target, desc = resolve_target(args, write=True)
    data = dbmaint.upgrade(target, backup_first=not args.no_backup)
    if data["from_version"] == data["to_version"]:
        text = f"{desc} is at schema version {data['to_version']}, the current one: nothing to do."
    else:
        text = f"Upgraded {desc} from schema version {data['from_version']} to {data['to_version']}."
        if data["backup"]:
            text += f" The previous file is saved as {data['backup']}."
    return data, text, EXIT_OK



def cmd_example_dags(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    """Copy the package's example DAGs (package data) into a dags folder."""
    import importlib.resources

    dest = Path(os.path.expanduser(args.dest or _dags_folder())).absolute()
    if dest.exists() and not dest.is_dir():
        raise CliError(f"{dest} is a file: pass the dags folder (a directory) to copy the example DAGs into")
    source = importlib.resources.files("airflow_provider_worktree") / "example_dags"
    names = sorted(p.name for p in source.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))
    clash = [n for n in names if (dest / n).exists()]
    if clash and not args.overwrite:
        raise CliError(f"{', '.join(str(dest / n) for n in clash)} exist(s): pass --overwrite to replace them")
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).write_bytes((source / name).read_bytes())
    data = {"dest": str(dest), "dags": [str(dest / n) for n in names]}
    hint = [] if args.dest is None else ["", "Point Airflow's [core] dags_folder at it (or copy them into yours)."]
    return data, "\n".join([f"Copied {len(names)} example DAG(s) into {dest}:"] + [f"  {n}" for n in names]
                           + hint), EXIT_OK


def _dags_folder() -> str:
    """Airflow's own ``[core] dags_folder`` (``$AIRFLOW_HOME/dags``, ``~/airflow/dags`` when AIRFLOW_HOME is unset)."""
    try:
        from airflow.configuration import conf
    except ImportError:
        raise CliError("Airflow is not importable here to read [core] dags_folder: pass the dags folder as DEST") \
            from None
    return conf.get("core", "dags_folder")
