"""Every bad input to ``airflow-worktree``: one line on stderr naming the problem and the fix, the documented
exit code, no traceback, and nothing written by a command that only reads.

Table-driven: each case builds its input from real files (a real SQLite database with a damaged page, a
read-only file, a directory nobody may write, ...) or a real PostgreSQL server, then runs the installed
console script in a subprocess. Permission cases run the script as the unprivileged user ``nobody``
(``setpriv``), because root ignores file modes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import nobody
from airflow_provider_worktree.core.store import RUNBOOK_V1_SCHEMA, ShardStore

SCRIPT = Path(sys.executable).with_name("airflow-worktree")
NOBODY = 65534
SETPRIV = shutil.which("setpriv")


def _shards(n: int) -> list[dict]:
    return [{"shard_id": f"s-{i:04d}", "task": "todo", "files": [f"src/pkg_{i}/module_{i}.py"] * 3}
            for i in range(n)]


def make_db(path: Path, n: int = 50) -> Path:
    store = ShardStore.open(str(path))
    store.register_shards("run-1", _shards(n))
    for i in range(0, n, 3):
        lease = store.assign_shard("run-1", "w1", shard_id=f"s-{i:04d}")
        store.complete(lease, branch=f"worktree/run-1/s-{i:04d}", commit_sha="c" * 40)
    store.close()
    return path


def corrupt_page(path: Path) -> None:
    """Overwrite one page in the middle of the file (a b-tree page of the shard table) with junk."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages = conn.execute("PRAGMA page_size").fetchone()[0], conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 8, pages
    with open(path, "r+b") as fh:
        fh.seek(page_size * (pages // 2))
        fh.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def shared_dir():
    """A directory ``nobody`` can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="wt-cli-errors-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(args: list[str], cwd: Path, *, as_nobody: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "AIRFLOW_WORKTREE_DEBUG")}
    env.update(AIRFLOW_HOME=str(cwd / "airflow-home"), PYTHONWARNINGS="ignore", HOME=str(cwd))
    cmd = [str(SCRIPT), *args]
    if as_nobody:  # from a copy nobody can read: the checkout and its venv may be in a private (0700) directory
        if nobody.skip_reason():
            pytest.skip(nobody.skip_reason())
        env["PYTHONPATH"] = str(nobody.readable_copy())
        cmd = nobody.as_nobody([nobody.interpreter(), "-m", "airflow_provider_worktree.cli", *args])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # builds the input in the directory, returns the CLI arguments
    code: int
    says: tuple[str, ...]  # substrings of the one-line error (or of stdout when code is 0)
    as_nobody: bool = False
    unchanged: bool = True  # the directory's files are byte-identical afterwards (no -wal/-shm, no migration)
    marks: list = field(default_factory=list)


def _corrupted(cmd: str, *extra: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        corrupt_page(make_db(d / "shard_status.db", n=400))
        return [cmd, *extra, "--db", str(d / "shard_status.db")]
    return setup


def _newer(cmd: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        make_db(d / "new.db")
        conn = sqlite3.connect(d / "new.db")
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01 00:00:00')")
        conn.commit()
        conn.close()
        return [cmd, "--db", str(d / "new.db")]
    return setup


def _runbook_v1(cmd: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        conn = sqlite3.connect(d / "shard_status.db")
        conn.execute(RUNBOOK_V1_SCHEMA.rstrip(";"))
        conn.execute("INSERT INTO shard_status (shard_id, status, started_at, completed_at) VALUES "
                     "('s-1', 'completed', '2025-01-01 10:00:00', '2025-01-01 10:05:00'), "
                     "('s-2', 'completed', '2025-01-01 10:00:00', '2025-01-01 10:01:00')")
        conn.commit()
        conn.close()
        return [cmd, "--db", str(d / "shard_status.db")]
    return setup


def _read_only_file(cmd: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        make_db(d / "ro.db")
        os.chown(d, NOBODY, NOBODY)
        (d / "ro.db").chmod(0o444)
        return [cmd, "--db", str(d / "ro.db")]
    return setup


def _unwritable_dir(cmd: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        make_db(d / "db.db")
        os.chown(d / "db.db", NOBODY, NOBODY)  # the file is nobody's, its directory root's (0755)
        return [cmd, "--db", str(d / "db.db")]
    return setup


def _plain(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: [a.replace("{d}", str(d)) for a in args]


def _with_file(name: str, content: bytes, *args: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / name).write_bytes(content)
        return [a.replace("{d}", str(d)) for a in args]
    return setup


def _with_db(*args: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        make_db(d / "ok.db")
        return [a.replace("{d}", str(d)) for a in args]
    return setup


def _sqlite_without_table(d: Path) -> list[str]:
    conn = sqlite3.connect(d / "other.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return ["report", "--db", str(d / "other.db")]


READ_COMMANDS = ("status", "stale", "report", "check")

CASES: list[Case] = [
    Case("missing-file", _plain("status", "--db", "{d}/missing.db"), 3, ("no shard database at", "run the DAG first")),
    Case("missing-directory", _plain("stale", "--db", "{d}/nope/x.db"), 3, ("no directory", "--db")),
    Case("directory-not-file", lambda d: (d.joinpath("db").mkdir(), ["status", "--db", str(d / "db")])[1], 3,
         ("is a directory", "pass the database file")),
    Case("not-a-database", _with_file("notes.txt", b"hello, I am text\n" * 20, "report", "--db", "{d}/notes.txt"), 3,
         ("is not an SQLite database", "--db")),
    Case("empty-file", _with_file("empty.db", b"", "check", "--db", "{d}/empty.db"), 3, ("is an empty file",)),
    Case("sqlite-without-shard-table", _sqlite_without_table, 3, ("without a shard_status table",)),
    *[Case(f"corrupted-page-{c}", _corrupted(c), 3, ("is corrupted", "db restore")) for c in READ_COMMANDS],
    Case("corrupted-page-stale-alt", _corrupted("stale", "--older-than", "1m"), 3, ("is corrupted",)),
    Case("corrupted-page-reset-stale", _corrupted("reset-stale"), 3, ("is corrupted", "db restore")),
    Case("corrupted-page-db-integrity", _corrupted("db", "integrity"), 2, ("damaged", "db restore")),
    Case("corrupted-page-db-backup", lambda d: _corrupted("db", "backup", str(d / "b.bak"))(d), 3,
         ("is corrupted",)),
    *[Case(f"newer-schema-{c}", _newer(c), 3, ("newer than this package understands", "pip install -U"))
      for c in ("status", "reset-stale")],
    *[Case(f"runbook-v1-{c}", _runbook_v1(c), 0, ("",)) for c in READ_COMMANDS],
    Case("read-only-file-reset-stale", _read_only_file("reset-stale"), 3, ("is read-only for this user", "owner"),
         as_nobody=True),
    Case("read-only-file-archive", lambda d: ["db", "archive", "--older-than", "1d", *_read_only_file("x")(d)[1:]], 3,
         ("is read-only for this user",), as_nobody=True),
    Case("read-only-file-status-works", _read_only_file("status"), 0, ("completed",), as_nobody=True),
    Case("unwritable-dir-reset-stale", _unwritable_dir("reset-stale"), 3, ("is not writable", "journal"),
         as_nobody=True),
    Case("unwritable-dir-vacuum", lambda d: ["db", "vacuum", *_unwritable_dir("x")(d)[1:]], 3, ("is not writable",),
         as_nobody=True),
    Case("unwritable-dir-status-works", _unwritable_dir("status"), 0, ("completed",), as_nobody=True),
    Case("unsupported-url", _plain("status", "--db", "mysql://u:secret@h/db"), 3,
         ("unsupported shard store URL scheme 'mysql'",)),
    Case("unreachable-server", _plain("status", "--db", "postgresql://u:pw@127.0.0.1:1/db"), 3,
         ("cannot connect to the shard status database", "Check host, port")),
    Case("missing-connection", _plain("status", "--conn-id", "no_such_conn"), 3,
         ("cannot use connection 'no_such_conn'", "create it")),
    Case("bad-duration", _with_db("stale", "--older-than", "5 parsecs", "--db", "{d}/ok.db"), 3,
         ("invalid duration",)),
    Case("bad-threshold", _with_db("check", "--threshold", "stale_locks=abc", "--db", "{d}/ok.db"), 3,
         ("invalid threshold",)),
    Case("backup-into-missing-dir", _with_db("db", "backup", "{d}/no/such/dir/b.db", "--db", "{d}/ok.db"), 3,
         ("does not exist",), unchanged=False),
    Case("backup-over-existing", _with_db("db", "backup", "{d}/ok.db", "--db", "{d}/ok.db"), 3,
         ("is the database itself",)),
    Case("restore-missing-backup", _with_db("db", "restore", "{d}/nope.bak", "--db", "{d}/ok.db"), 3,
         ("no backup file",)),
    Case("restore-damaged-backup", lambda d: (corrupt_page(make_db(d / "bad.bak", n=400)),
                                              make_db(d / "ok.db"),
                                              ["db", "restore", str(d / "bad.bak"), "--db", str(d / "ok.db")])[2],
         3, ("is damaged too",)),
    Case("archive-needs-older-than", _with_db("db", "archive", "--db", "{d}/ok.db"), 3, ("--older-than",)),
    Case("example-dags-into-a-file", _with_file("f.txt", b"x", "example-dags", "{d}/f.txt"), 3,
         ("is a file", "dags folder")),
    Case("prune-missing-repo", _plain("prune", "--repo", "{d}/no-repo"), 3, ("no repository at",)),
    Case("unknown-command", _plain("frobnicate"), 3, ("invalid choice",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_and_the_documented_exit_code(case: Case, shared_dir: Path):
    args = case.setup(shared_dir)
    before = files_of(shared_dir)
    out = run(args, shared_dir, as_nobody=case.as_nobody)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == case.code, (out.returncode, out.stdout, out.stderr)
    if case.code in (0, 2) and "db" not in args[:1]:
        text = out.stdout
    elif case.code == 2:
        text = out.stdout
    else:
        errors = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("usage:")]
        assert len(errors) == 1, out.stderr
        text = errors[0]
        assert text.startswith("airflow-worktree: error: ") or "error:" in text, text
    for part in case.says:
        assert part in text, (part, text)
    if case.unchanged:
        assert files_of(shared_dir) == before, "a command that failed or only read changed the files"


def test_runbook_era_database_is_read_not_migrated(shared_dir: Path):
    """status/report on the runbook's schema answer from its columns; the file stays version 1, not WAL."""
    args = _runbook_v1("report")(shared_dir)
    db = shared_dir / "shard_status.db"
    before = db.read_bytes()
    out = run([*args, "--json"], shared_dir)
    assert out.returncode == 0, out.stderr
    (rep,) = json.loads(out.stdout)["runs"]
    assert rep["run_id"] == "legacy" and rep["totals"]["by_status"] == {"completed": 2}
    assert "airflow-worktree db upgrade --db" in out.stderr  # says which command upgrades it
    assert db.read_bytes() == before and sorted(p.name for p in shared_dir.iterdir()) == ["shard_status.db"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert "schema_version" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()


def test_read_commands_leave_no_wal_files_on_a_wal_database(shared_dir: Path):
    db = make_db(shared_dir / "shard_status.db")
    assert sorted(p.name for p in shared_dir.iterdir()) == ["shard_status.db"]  # checkpointed on close
    for cmd in ("status", "stale", "report", "check", "thresholds"):
        out = run([cmd, "--db", str(db)], shared_dir)
        assert out.returncode == 0, (cmd, out.stderr)
        assert sorted(p.name for p in shared_dir.iterdir()) == ["shard_status.db"], cmd


@pytest.mark.postgres
def test_status_on_an_unrelated_postgresql_database_creates_nothing(pg_url: str, tmp_path: Path):
    import psycopg2

    out = run(["status", "--db", pg_url], tmp_path)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "holds no shard status tables" in out.stderr and "db upgrade" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    conn = psycopg2.connect(pg_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] == 0
    conn.close()


@pytest.mark.postgres
def test_postgresql_wrong_database_and_unsupported_backup(pg_url: str, tmp_path: Path):
    wrong = pg_url.rsplit("/", 1)[0] + "/no_such_database_here"
    out = run(["status", "--db", wrong], tmp_path)
    assert out.returncode == 3 and "does not exist" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    ShardStore.open(pg_url).close()  # the tables exist now
    out = run(["db", "backup", str(tmp_path / "b.bak"), "--db", pg_url], tmp_path)
    assert out.returncode == 3 and "not supported on PostgreSQL" in out.stderr and "pg_dump" in out.stderr
    out = run(["status", "--db", pg_url.replace("://", "://nosuchuser@", 1) if "@" not in pg_url else
               pg_url.split("://")[0] + "://nosuchuser@" + pg_url.split("@", 1)[1]], tmp_path)
    assert out.returncode == 3 and "cannot connect" in out.stderr, out.stderr
