"""``airflow-worktree db ...`` on real SQLite files and a real PostgreSQL server, and ``airflow worktree``.

The runbook's "Database Corruption" procedure is done end to end with the package's own commands: back up,
damage a page of the live file, detect it, restore the backup, carry on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.core.store import maintenance as dbmaint
from airflow_provider_worktree.core.store import CURRENT_SCHEMA_VERSION, RUNBOOK_V1_SCHEMA, ShardStore

from test_cli_errors import corrupt_page, make_db

SCRIPT = Path(sys.executable).with_name("airflow-worktree")


def cli(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    base.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=base,
                          cwd=tmp_path)


def cli_json(tmp_path: Path, *args: str, expect: int = 0) -> dict:
    out = cli(tmp_path, *args, "--json")
    assert out.returncode == expect, (out.stdout, out.stderr)
    return json.loads(out.stdout)


def _utc(delta_s: float = 0.0):
    return lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=delta_s)


def _finished_run(store: ShardStore, run_id: str, n: int, *, fail_every: int = 0) -> None:
    store.register_shards(run_id, [f"s-{i:03d}" for i in range(n)])
    for i in range(n):
        lease = store.assign_shard(run_id, "w", shard_id=f"s-{i:03d}")
        if fail_every and i % fail_every == 0:
            store.fail(lease, "verify failed")
        else:
            store.complete(lease, branch=f"worktree/{run_id}/s-{i:03d}", input_tokens=10)


def test_runbook_database_corruption_procedure(tmp_path: Path):
    """Backup current database -> verify integrity -> (corrupted) -> restore from backup."""
    db = make_db(tmp_path / "shard_status.db", n=400)
    backups = tmp_path / "backups"
    backups.mkdir()

    # 1. Backup current database (online backup API, checked).
    out = cli_json(tmp_path, "db", "backup", str(backups), "--db", str(db))
    backup = Path(out["backup"])
    assert backup.parent == backups and out["integrity"] == "ok" and backup.stat().st_size > 0

    # 2. Verify integrity: a sound file.
    assert cli_json(tmp_path, "db", "integrity", "--db", str(db))["ok"] is True

    # A page of the live file is damaged (a disk fault, a copy made while it was written...).
    corrupt_page(db)
    damaged = db.read_bytes()
    bad = cli(tmp_path, "db", "integrity", "--db", str(db))
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "the database is damaged" in bad.stdout and f"db restore BACKUP --db {db}" in bad.stdout
    assert cli_json(tmp_path, "db", "integrity", "--quick", "--db", str(db), expect=2)["ok"] is False
    status = cli(tmp_path, "status", "--db", str(db))
    assert status.returncode == 3 and "is corrupted" in status.stderr

    # 3. Restore from backup: the damaged file is kept aside, nothing is deleted.
    out = cli_json(tmp_path, "db", "restore", str(backup), "--db", str(db))
    aside = Path(out["moved_aside"])
    assert aside.read_bytes() == damaged
    assert cli_json(tmp_path, "db", "integrity", "--db", str(db))["ok"] is True
    data = cli_json(tmp_path, "status", "--db", str(db))
    assert data["total"] == 400 and data["counts"]["completed"] == 134

    # The restored database takes writes again.
    store = ShardStore.open(str(db))
    assert store.assign_shard("run-1", "after-restore") is not None
    store.close()


def test_backup_is_consistent_while_a_writer_holds_the_wal(tmp_path: Path):
    db = make_db(tmp_path / "live.db", n=30)
    writer = ShardStore.open(str(db))
    writer.register_shards("run-2", ["a", "b"])  # in the WAL, not checkpointed: the writer is still open
    assert (tmp_path / "live.db-wal").exists()
    out = cli_json(tmp_path, "db", "backup", str(tmp_path / "copy.db"), "--db", str(db))
    writer.close()
    copy = ShardStore.open(out["backup"], read_only=True)
    assert {r["run_id"] for r in copy.runs()} == {"run-1", "run-2"}
    copy.close()
    again = cli(tmp_path, "db", "backup", str(tmp_path / "copy.db"), "--db", str(db))
    assert again.returncode == 3 and "exists" in again.stderr and "--overwrite" in again.stderr
    assert cli(tmp_path, "db", "backup", str(tmp_path / "copy.db"), "--overwrite", "--db", str(db)).returncode == 0


def _batch_records(store: ShardStore, run_id: str) -> None:
    """The run's first shard as a batch entry, and the run's one batch."""
    first = store.list_shards(run_id)[0]["shard_id"]
    store.put_batch_entries(run_id, [{"shard_id": first, "custom_id": f"{first}-x", "status": "queued", "part": 0}])
    store.begin_batch_part(run_id, 0, 1, "claude-sonnet-4-5")
    store.set_batch_id(run_id, 0, f"msgbatch_{run_id}")


def test_archive_moves_only_old_shards_of_finished_runs(tmp_path: Path):
    db = str(tmp_path / "shard_status.db")
    old = ShardStore.open(db, clock=_utc(-40 * 86400))
    _finished_run(old, "run-old", 20, fail_every=5)
    _batch_records(old, "run-old")
    old.register_shards("run-old-unfinished", ["p-1", "p-2"])  # one shard still pending: not archived
    _batch_records(old, "run-old-unfinished")
    lease = old.assign_shard("run-old-unfinished", "w", shard_id="p-1")
    old.complete(lease)
    old.close()
    new = ShardStore.open(db)
    _finished_run(new, "run-new", 5)
    new.close()

    dry = cli_json(tmp_path, "db", "archive", "--older-than", "30d", "--dry-run", "--db", db)
    assert dry["rows"] == 20 and dry["runs"] == ["run-old"] and dry["dry_run"] is True
    assert ShardStore.open(db, read_only=True).summary("run-old")["total"] == 20

    out = cli(tmp_path, "db", "archive", "--older-than", "30d", "--vacuum", "--db", db)
    assert out.returncode == 0, out.stderr
    assert "Moved 20 shard row(s) of 1 finished run(s)" in out.stdout and "Vacuumed" in out.stdout
    live = ShardStore.open(db, read_only=True)
    assert {r["run_id"] for r in live.runs()} == {"run-old-unfinished", "run-new"}
    live.close()
    archive_file = tmp_path / "shard_status.archive.db"
    conn = sqlite3.connect(archive_file)
    rows = conn.execute("SELECT status, COUNT(*) FROM shard_status WHERE run_id = 'run-old' GROUP BY status").fetchall()
    assert dict(rows) == {"completed": 16, "failed": 4}
    # batch mode's records follow their run: per shard (batch_entries) and per run (shard_batches)
    for table in ("batch_entries", "shard_batches"):
        assert conn.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() == [("run-old",)], table
    conn.close()
    live = sqlite3.connect(db)
    for table in ("batch_entries", "shard_batches"):
        assert live.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() == [("run-old-unfinished",)], table
    live.close()
    # Idempotent: nothing left to move; a second archive run appends to the same file.
    assert cli_json(tmp_path, "db", "archive", "--older-than", "30d", "--db", db)["rows"] == 0


def test_vacuum_shrinks_the_file_after_archive(tmp_path: Path):
    db = str(tmp_path / "big.db")
    old = ShardStore.open(db, clock=_utc(-90 * 86400))
    for r in range(8):
        _finished_run(old, f"run-{r}", 60)
    old.close()
    before = os.path.getsize(db)
    assert cli_json(tmp_path, "db", "archive", "--older-than", "30d", "--db", db)["rows"] == 480
    assert os.path.getsize(db) >= before * 0.9  # deleted pages stay in the file until vacuum
    out = cli_json(tmp_path, "db", "vacuum", "--db", db)
    assert out["bytes_after"] < out["bytes_before"] and os.path.getsize(db) < before / 2


def test_upgrade_a_runbook_era_database_with_a_backup(tmp_path: Path):
    db = tmp_path / "shard_status.db"
    conn = sqlite3.connect(db)
    conn.execute(RUNBOOK_V1_SCHEMA.rstrip(";"))
    conn.execute("INSERT INTO shard_status (shard_id, status) VALUES ('a', 'failed')")
    conn.commit()
    conn.close()
    original = db.read_bytes()
    out = cli_json(tmp_path, "db", "upgrade", "--db", str(db))
    assert out["from_version"] == 1 and out["to_version"] == CURRENT_SCHEMA_VERSION
    saved = sqlite3.connect(out["backup"])
    assert saved.execute("SELECT shard_id, status FROM shard_status").fetchall() == [("a", "failed")]
    assert "schema_version" not in {r[0] for r in saved.execute("SELECT name FROM sqlite_master")}
    saved.close()
    assert original[:16] == b"SQLite format 3\x00"
    store = ShardStore.open(str(db), read_only=True)
    assert store.upgraded_from is None and store.get_shard("legacy", "a")["status"] == "failed"
    store.close()
    again = cli(tmp_path, "db", "upgrade", "--db", str(db))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # A new file: upgrade creates the tables (and nothing to back up).
    fresh = cli_json(tmp_path, "db", "upgrade", "--db", str(tmp_path / "fresh.db"))
    assert fresh["from_version"] == 0 and fresh["backup"] is None


@pytest.mark.postgres
def test_postgresql_archive_vacuum_integrity_upgrade(pg_url: str, tmp_path: Path):
    up = cli_json(tmp_path, "db", "upgrade", "--db", pg_url)
    assert up["from_version"] == 0 and up["to_version"] == CURRENT_SCHEMA_VERSION
    old = ShardStore.open(pg_url, clock=_utc(-40 * 86400))
    _finished_run(old, "run-old", 6, fail_every=3)
    _batch_records(old, "run-old")
    old.close()
    new = ShardStore.open(pg_url)
    _finished_run(new, "run-new", 2)
    new.close()
    assert cli_json(tmp_path, "db", "integrity", "--db", pg_url)["ok"] is True
    out = cli_json(tmp_path, "db", "archive", "--older-than", "30d", "--db", pg_url)
    assert out["rows"] == 6 and out["archive"] == "shard_status_archive"
    import psycopg2

    conn = psycopg2.connect(pg_url)
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, COUNT(*) FROM shard_status_archive GROUP BY run_id")
        assert cur.fetchall() == [("run-old", 6)]
        cur.execute("SELECT DISTINCT run_id FROM shard_status")
        assert cur.fetchall() == [("run-new",)]
        for table in ("batch_entries", "shard_batches"):
            cur.execute(f"SELECT DISTINCT run_id FROM {table}_archive")
            assert cur.fetchall() == [("run-old",)], table
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert cur.fetchone() == (0,), table
    conn.close()
    vac = cli_json(tmp_path, "db", "vacuum", "--db", pg_url)
    assert vac["bytes_after"] > 0
    restore = cli(tmp_path, "db", "restore", str(tmp_path / "x.bak"), "--db", pg_url)
    assert restore.returncode == 3 and "not supported on PostgreSQL" in restore.stderr


def test_archive_function_refuses_a_negative_age(tmp_path: Path):
    db = str(make_db(tmp_path / "x.db"))
    with pytest.raises(Exception, match="duration >= 0"):
        dbmaint.archive(db, -1)


@pytest.mark.integration
def test_airflow_worktree_runs_the_same_commands(tmp_path: Path):
    """The provider's ``cli`` entry: ``airflow worktree status`` inside Airflow's own CLI."""
    db = make_db(tmp_path / "shard_status.db")
    airflow = Path(sys.executable).with_name("airflow")
    env = {k: v for k, v in os.environ.items()}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONWARNINGS="ignore",
               AIRFLOW__CORE__LOAD_EXAMPLES="False")
    out = subprocess.run([str(airflow), "worktree", "status", "--db", str(db), "--json"], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    data = json.loads(out.stdout[out.stdout.index("{"):])
    assert data["total"] == 50 and data["counts"]["completed"] == 17
    bad = subprocess.run([str(airflow), "worktree", "status", "--db", str(tmp_path / "missing.db")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert bad.returncode == 3 and "no shard database at" in bad.stderr
    helped = subprocess.run([str(airflow), "--help"], capture_output=True, text=True, timeout=300, env=env)
    assert "worktree" in helped.stdout


@pytest.mark.integration
def test_health_dag_with_empty_params_skips_worktrees_and_archives_on_request(tmp_path: Path):
    """worktree_health triggered with no repository: the worktree part is skipped, the database checks run;
    with ``archive_older_than_days`` set and the database past its size warning, old finished runs move to
    the archive."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(root / "airflow_provider_worktree" / "example_dags" / "worktree_health.py", home / "dags")
    db = home / "shards.db"
    old = ShardStore.open(str(db), clock=_utc(-40 * 86400))
    _finished_run(old, "run-old", 10)
    old.close()
    new = ShardStore.open(str(db))
    _finished_run(new, "run-new", 3)
    new.close()
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONWARNINGS="ignore",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               AIRFLOW_CONN_SHARD_STATUS_DEFAULT=json.dumps({"conn_type": "shard_status", "host": str(db)}))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    conf = {"archive_older_than_days": 30, "thresholds": {"db_size_bytes_warning": 1}}
    proc = subprocess.run([airflow, "dags", "test", "worktree_health", "-c", json.dumps(conf)], env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "state=success" in out, out[-5000:]
    assert "no repository configured" in out  # prune skipped cleanly
    assert "Archived 10 shard row(s) of 1 run(s)" in out, out[-5000:]
    live = ShardStore.open(str(db), read_only=True)
    assert [r["run_id"] for r in live.runs()] == ["run-new"]
    live.close()
    assert (home / "shards.archive.db").exists()
    # Without the Param, archiving is off: nothing moves.
    proc = subprocess.run([airflow, "dags", "test", "worktree_health", "-c", "{}"], env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "archiving is off" in out, out[-5000:]
