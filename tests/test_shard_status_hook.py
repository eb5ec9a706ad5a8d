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
    code = ("import sys, airflow_provider_worktree.core.store as s; "
            "bad = [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
