"""ShardStatusHook: connection resolution and delegation, with real Airflow connections from env vars."""

from __future__ import annotations

import json
import os
import sqlite3
from urllib.parse import urlsplit

import pytest

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import LeaseLostError, ShardStore
from airflow_provider_worktree.hooks.shard_status import ShardStatusHook, resolve_store_target

RUN = "manual__2026-03-03T00:00:00+00:00"


@pytest.fixture
def airflow_home(tmp_path, monkeypatch):
    home = tmp_path / "airflow-home"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", raising=False)
    return home


def test_no_connection_means_embedded_sqlite_in_airflow_home(airflow_home):
    assert resolve_store_target() == str(airflow_home / "shard_status.db")
    hook = ShardStatusHook()
    assert hook.target == str(airflow_home / "shard_status.db")
    assert hook.register_shards(RUN, ["a-1", "a-2"]) == 2
    assert (airflow_home / "shard_status.db").exists()
    assert hook.get_uri() == f"sqlite:///{airflow_home / 'shard_status.db'}"


def test_db_path_wins(airflow_home, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "sqlite", "host": "/nowhere.db"}))
    explicit = str(tmp_path / "explicit.db")
    assert resolve_store_target(db_path=explicit) == explicit
    assert ShardStatusHook(db_path=explicit).target == explicit


def test_sqlite_connection_from_env_json(airflow_home, tmp_path, monkeypatch):
    db = str(tmp_path / "via-conn.db")
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "sqlite", "host": db}))
    assert resolve_store_target() == db
    hook = ShardStatusHook()
    assert hook.target == db and hook.dialect_name == "sqlite" and hook.placeholder == "?"
    hook.register_shards(RUN, [{"shard_id": "s-1", "task": "todo", "files": ["a.py"]}])
    lease = hook.assign_shard(RUN, "w1")
    hook.update_status(lease, "running")
    hook.update_status(lease, "completed", commit_sha="abc", input_tokens=3)
    assert hook.get_shard(RUN, "s-1")["commit_sha"] == "abc"
    # DbApiHook's generic helpers work on the same database
    assert hook.get_records("SELECT shard_id, status FROM shard_status") == [("s-1", "completed")]
    assert isinstance(hook.get_conn(), sqlite3.Connection)
    assert ShardStore.open(db).summary()["counts"]["completed"] == 1
    assert not (airflow_home / "shard_status.db").exists()


def test_named_connection(airflow_home, tmp_path, monkeypatch):
    db = str(tmp_path / "named.db")
    monkeypatch.setenv("AIRFLOW_CONN_MY_SHARDS", json.dumps({"conn_type": "sqlite", "host": db}))
    assert resolve_store_target(conn_id="my_shards") == db
    assert ShardStatusHook(shard_status_conn_id="my_shards").target == db
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_store_target(conn_id="missing_conn")


def test_unsupported_connection_type(airflow_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(ConfigurationError, match="sqlite .* or postgres"):
        resolve_store_target()


def test_postgres_connection_from_env_json(airflow_home, monkeypatch, pg_url):
    u = urlsplit(pg_url)
    conn = {"conn_type": "postgres", "host": u.hostname, "port": u.port or 5432, "login": u.username or "",
            "schema": u.path.lstrip("/")}
    if u.password:
        conn["password"] = u.password
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps(conn))
    target = resolve_store_target()
    assert target.startswith("postgresql://") and target.endswith("/" + u.path.lstrip("/"))
    hook = ShardStatusHook(stale_after_s=60)
    assert hook.dialect_name == "postgresql" and hook.placeholder == "%s"
    assert hook.register_shards(RUN, ["p-1", "p-2"]) == 2
    assert hook.register_shards(RUN, ["p-1", "p-2"]) == 0
    lease = hook.assign_shard(RUN, "w1", "p-2")
    hook.release(lease)
    lease2 = hook.assign_shard(RUN, "w2")
    assert lease2.shard_id == "p-1"
    hook.fail(lease2, "lint failed")
    with pytest.raises(LeaseLostError):
        hook.complete(lease)
    assert hook.summary(RUN)["counts"] == {"pending": 1, "running": 0, "completed": 0, "failed": 1}
    assert hook.get_records("SELECT COUNT(*) FROM shard_status") == [(2,)]
    assert hook.cleanup_stale(0) == []
    assert not (airflow_home / "shard_status.db").exists()


def test_cleanup_stale_and_bad_status(airflow_home, tmp_path):
    hook = ShardStatusHook(db_path=str(tmp_path / "c.db"))
    hook.register_shards(RUN, ["c-1"])
    lease = hook.assign_shard(RUN, "w1")
    assert hook.stale_leases(3600) == []
    reset = hook.cleanup_stale(0)
    assert [r["shard_id"] for r in reset] == ["c-1"] and reset[0]["status"] == "pending"
    with pytest.raises(LeaseLostError):
        hook.heartbeat(lease)
    with pytest.raises(ConfigurationError, match="unknown status"):
        hook.update_status(lease, "done")
    ok, msg = hook.test_connection()
    assert ok, msg


def test_hook_class_attributes():
    assert ShardStatusHook.conn_name_attr == "shard_status_conn_id"
    assert ShardStatusHook.default_conn_name == "shard_status_default"
    assert ShardStatusHook.conn_type == "shard_status"
    assert ShardStatusHook.hook_name == "Shard Status"


def test_store_module_imports_no_airflow():
    import subprocess
    import sys
    code = ("import sys, airflow_provider_worktree.core.store.shards as s; "
            "bad = [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_configured_conn_id_is_the_default(airflow_home, tmp_path, monkeypatch):
    """``[worktree] shard_status_conn_id`` names the connection the hook (and CLI, sensor) use by default."""
    db = str(tmp_path / "configured.db")
    monkeypatch.setenv("AIRFLOW__WORKTREE__SHARD_STATUS_CONN_ID", "team_shards")
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_SHARDS", json.dumps({"conn_type": "shard_status", "host": db}))
    hook = ShardStatusHook()
    assert hook.shard_status_conn_id == "team_shards" and hook.target == db
    assert resolve_store_target() == db
    monkeypatch.delenv("AIRFLOW_CONN_TEAM_SHARDS")
    with pytest.raises(ConfigurationError, match="'team_shards' .* does not exist"):
        resolve_store_target()


def test_test_connection_creates_no_file(airflow_home, tmp_path, monkeypatch):
    db = tmp_path / "later.db"
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "shard_status", "host": str(db)}))
    ok, message = ShardStatusHook().test_connection()
    assert ok and "first DAG run creates it" in message
    assert list(tmp_path.iterdir()) == [airflow_home]  # no database, no -wal/-shm
    store = ShardStore.open(str(db))
    store.register_shards(RUN, ["s-1"])
    store.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    ok, message = ShardStatusHook().test_connection()
    assert ok and "schema version" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    db.write_bytes(b"not a database at all" * 10)
    ok, message = ShardStatusHook().test_connection()
    assert not ok and "not an SQLite database" in message and "\n" not in message


def test_dsn_extra_is_masked_in_logs_and_the_rest_api_model(airflow_home, monkeypatch):
    """The database URL (with its password) lives in the ``dsn`` extra: a sensitive name Airflow redacts in
    the REST API (and so the UI); the hook also registers the password with the log masker."""
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_provider_worktree.get_provider_info import get_provider_info

    url = "postgresql://shard_user:s3cr3t-pw@db.example:5432/shards"
    (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "shard_status"]
    assert conn_type["conn-fields"]["dsn"]["schema"]["format"] == "password"
    assert "url" not in conn_type["conn-fields"]
    extra = json.dumps({"dsn": url})
    fields = dict.fromkeys(("description", "host", "login", "schema", "port", "password", "team_name"))
    response = ConnectionResponse(connection_id="shard_status_default", conn_type="shard_status", extra=extra,
                                  **fields)
    assert "s3cr3t-pw" not in response.extra and "***" in response.extra
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "shard_status", "extra": extra}))
    assert ShardStatusHook().target == url  # the 0.x "url" extra still works too
    assert "s3cr3t-pw" not in redact(f"connecting to {url}")


def test_test_connection_on_an_empty_postgresql_database_creates_no_table(airflow_home, monkeypatch, pg_url):
    import psycopg2

    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "shard_status",
                                                                         "extra": {"dsn": pg_url}}))
    ok, message = ShardStatusHook().test_connection()
    assert ok and "first DAG run creates the shard tables" in message
    conn = psycopg2.connect(pg_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] == 0
    conn.close()
    bad = pg_url.rsplit("/", 1)[0] + "/no_such_db_for_test_connection"
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_STATUS_DEFAULT", json.dumps({"conn_type": "shard_status",
                                                                         "extra": {"dsn": bad}}))
    ok, message = ShardStatusHook().test_connection()
    assert not ok and "does not exist" in message and "\n" not in message


def test_hook_methods_fail_with_one_line_naming_the_fix(airflow_home, tmp_path):
    from airflow_provider_worktree.core.store import StoreError
    from test_cli_errors import make_db

    damaged = make_db(tmp_path / "damaged.db", n=400)
    conn = sqlite3.connect(damaged)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'shard_status'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(damaged, "r+b") as fh:  # the table's root page: every query of the table reads it
        fh.seek(page_size * (root - 1))
        fh.write(b"\xff" * page_size)
    with pytest.raises(StoreError) as err:
        ShardStatusHook(db_path=str(damaged)).list_shards()
    assert "is corrupted" in str(err.value) and "restore it from a backup" in str(err.value)
    assert "\n" not in str(err.value)
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigurationError, match="is a directory, not a shard status database file"):
        ShardStatusHook(db_path=str(tmp_path / "adir")).list_shards()
    (tmp_path / "text.db").write_text("plain text, not sqlite\n" * 30)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        ShardStatusHook(db_path=str(tmp_path / "text.db")).summary()
    newer = make_db(tmp_path / "newer.db")
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"newer than this package understands .*pip install -U"):
        ShardStatusHook(db_path=str(newer)).register_shards(RUN, ["x"])
