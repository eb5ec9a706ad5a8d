"""Small readers the smoke run's checks use: the repository fingerprint, the shard database, task logs."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def git(*args: str, cwd: Path | str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})


def repository_problem(repo: str, ref: str = "HEAD") -> str | None:
    """Why ``--repo`` cannot be run (one line naming the fix), checked before any setup; None when it can, or
    when it is a URL (the clone step reports those)."""
    if not repo or "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return None
    path = Path(repo).expanduser()
    if not path.exists():
        return f"--repo {repo}: no such directory; give a local git repository or a URL"
    if not path.is_dir():
        return f"--repo {repo} is a file, not a directory; give the repository's directory"
    if git("-C", str(path), "rev-parse", "--show-toplevel").returncode != 0:
        return f"--repo {repo} is not inside a git repository; run `git init` and commit there, or give another path"
    if git("-C", str(path), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        what = "has no commit yet; commit something first" if ref == "HEAD" else \
            f"has no commit {ref!r}; pass an existing branch, tag or sha as base_ref"
        return f"--repo {repo} {what}"
    return None


def fingerprint(repo: str) -> str:
    """HEAD, status, every ref, worktrees and stashes of a local repository (read-only git calls)."""
    if not Path(repo).is_dir():
        return "remote\n"
    calls = (["rev-parse", "HEAD"], ["symbolic-ref", "-q", "HEAD"],
             ["status", "--porcelain=v1", "--untracked-files=all"],
             ["for-each-ref", "--format=%(refname) %(objectname)"], ["worktree", "list", "--porcelain"],
             ["stash", "list"])
    return "".join(git("-C", repo, *c).stdout for c in calls)


def shard_rows(db: Path, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of the shard database, opened read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def shard_counts(db: Path, run_id: str | None = None) -> str:
    if not db.is_file():
        return "no shards registered yet"
    try:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        rows = shard_rows(db, f"SELECT status, COUNT(*) FROM shard_status {where} GROUP BY status "
                              "ORDER BY status", args)
    except sqlite3.Error:
        return "shard database not readable yet"
    return " ".join(f"{s}={n}" for s, n in rows) or "no shards registered yet"


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals (start, end) open at one instant."""
    best = 0
    for start, _ in intervals:
        best = max(best, sum(1 for s, e in intervals if s <= start < e))
    return best


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime, timezone
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def last_error_of(log_dir: Path) -> tuple[str, Path | None]:
    """(the exception of a task's last attempt, that attempt's log) from Airflow's JSON task logs."""
    logs = sorted(log_dir.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
    if not logs:
        return "no log", None
    what = "no error in the log"
    for raw in logs[-1].read_text(errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        for d in (rec.get("error_detail") or []) if isinstance(rec, dict) else []:
            what = f"{d.get('exc_type')}: {d.get('exc_value')}"
    return what, logs[-1]


PROBE = """
import json, sys
found = {"python": "%d.%d.%d" % sys.version_info[:3], "airflow": None, "package": None}
try:
    import airflow, airflow_provider_worktree, anthropic
    found.update(airflow=airflow.__version__, package=airflow_provider_worktree.__version__)
except Exception:
    pass
print(json.dumps(found))
"""
# Scripts run by the interpreter that has Airflow (the metadata database through Airflow's own models).
RUN_WATCHER = """
import sys, time
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
while True:
    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        state = str(dr.state) if dr is not None else "missing"
    if state in ("success", "DagRunState.SUCCESS"):
        print("run state: success", flush=True); sys.exit(0)
    if state in ("failed", "DagRunState.FAILED"):
        print("run state: failed", flush=True); sys.exit(1)
    time.sleep(1)
"""
RUN_FACTS = """
import json, sys
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
with create_session() as session:
    if not run_id:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        run_id = dr.run_id if dr else ""
    tis = [[ti.task_id, ti.map_index, str(ti.state).split(".")[-1].lower(), ti.try_number]
           for ti in session.query(TI).filter(TI.dag_id == dag_id, TI.run_id == run_id)
           .order_by(TI.task_id, TI.map_index)]
print(json.dumps({"run_id": run_id, "tis": tis}))
"""
PG_ADMIN = """
import sys
import psycopg2
dsn, action, name = sys.argv[1:4]
con = psycopg2.connect(dsn, connect_timeout=3)
con.autocommit = True
with con.cursor() as cur:
    if action == "create":
        cur.execute(f'CREATE DATABASE "{name}"')
    elif action == "drop":
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
con.close()
"""
