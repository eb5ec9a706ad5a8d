"""ShardStore behaviour: the same suite on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import threading

import pytest

from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError
from airflow_provider_worktree.core.store import (
    CURRENT_SCHEMA_VERSION,
    LEGACY_RUN_ID,
    RUNBOOK_V1_SCHEMA,
    Lease,
    LeaseLostError,
    ShardAlreadyCompleted,
    ShardBusy,
    ShardNotFound,
    ShardStore,
    connection_factory,
)

RUN = "manual__2026-01-01T00:00:00+00:00"


class FakeClock:
    """A controllable UTC clock, so staleness is tested without sleeping."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += dt.timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    """A fresh store target: a SQLite file, or a fresh PostgreSQL database (skipped when absent)."""
    if request.param == "sqlite":
        return str(tmp_path / "shard_status.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(target, clock):
    s = ShardStore.open(target, clock=clock, stale_after_s=60)
    yield s
    s.close()


def shards(n: int, task: str = "todo", prio=lambda i: 0):
    return [{"shard_id": f"{task}-{i:04d}", "task": task, "files": [f"src/m{i}.py"], "priority": prio(i), "bytes": 10}
            for i in range(n)]


# ------------------------------------------------------------------------------------ registration
def test_register_is_idempotent_and_completed_stay_completed(store):
    assert store.register_shards(RUN, shards(5)) == 5
    assert store.register_shards(RUN, shards(5)) == 0
    lease = store.assign_shard(RUN, "w1", "todo-0002")
    store.complete(lease, branch="b", commit_sha="abc")
    before = store.get_shard(RUN, "todo-0002")
    assert store.register_shards(RUN, shards(7)) == 2
    after = store.get_shard(RUN, "todo-0002")
    assert after == before and after["status"] == "completed"
    assert len(store.list_shards(RUN)) == 7
    # bare ids, duplicates in one call, and a second run with the same shard ids are fine
    assert store.register_shards("other-run", ["todo-0000", "todo-0000", "x-1"]) == 2
    assert {r["run_id"] for r in store.list_shards()} == {RUN, "other-run"}


def test_register_rejects_bad_input(store):
    with pytest.raises(ConfigurationError, match="shard id"):
        store.register_shards(RUN, [{"shard_id": "../evil"}])
    with pytest.raises(ConfigurationError, match="files"):
        store.register_shards(RUN, [{"shard_id": "a", "files": "src/a.py"}])
    with pytest.raises(ConfigurationError, match="run_id"):
        store.register_shards("", shards(1))
    assert store.list_shards() == []


def test_row_shape(store, clock):
    store.register_shards(RUN, shards(1))
    row = store.get_shard(RUN, "todo-0000")
    for col in ("shard_id", "status", "started_at", "completed_at", "updated_at", "error_message", "worker_id",
                "run_id", "task", "files", "priority", "attempt", "heartbeat_at", "lease_token", "lease_expires_at",
                "branch", "commit_sha", "files_changed", "diffstat", "input_tokens", "output_tokens",
                "cache_read_tokens", "cache_write_tokens", "cost_usd", "result_summary", "created_at"):
        assert col in row
    assert row["status"] == "pending" and row["files"] == ["src/m0.py"] and row["attempt"] == 0
    assert row["created_at"] == clock().strftime("%Y-%m-%d %H:%M:%S.%f")


# ---------------------------------------------------------------------------------------- claims
def test_next_pending_by_priority_then_id(store):
    store.register_shards(RUN, shards(4, prio=lambda i: {0: 0, 1: 5, 2: 5, 3: 1}[i]))
    got = [store.assign_shard(RUN, "w").shard_id for _ in range(4)]
    assert got == ["todo-0001", "todo-0002", "todo-0003", "todo-0000"]
    assert store.assign_shard(RUN, "w") is None
    assert store.assign_shard("no-such-run", "w") is None


def test_claim_sets_lease_fields_and_tokens_increase(store, clock):
    store.register_shards(RUN, shards(3))
    a = store.assign_shard(RUN, "w1")
    b = store.assign_shard(RUN, "w2")
    assert b.token > a.token and a.attempt == 1
    assert (a.task, a.files) == ("todo", ["src/m0.py"])
    row = store.get_shard(RUN, a.shard_id)
    now = clock().strftime("%Y-%m-%d %H:%M:%S.%f")
    assert row["status"] == "running" and row["worker_id"] == "w1" and row["lease_token"] == a.token
    assert row["started_at"] == row["heartbeat_at"] == now
    assert Lease.from_dict(a.to_dict()) == a


def test_given_shard_states(store, clock):
    store.register_shards(RUN, shards(3))
    with pytest.raises(ShardNotFound):
        store.assign_shard(RUN, "w", "nope-1")
    a = store.assign_shard(RUN, "w1", "todo-0001")
    with pytest.raises(ShardBusy, match="w1"):
        store.assign_shard(RUN, "w2", "todo-0001")
    store.complete(a)
    with pytest.raises(ShardAlreadyCompleted):
        store.assign_shard(RUN, "w2", "todo-0001")
    # failed -> claimable again, attempt counted
    f = store.assign_shard(RUN, "w1", "todo-0002")
    store.fail(f, "boom")
    again = store.assign_shard(RUN, "w2", "todo-0002")
    assert again.attempt == 2 and again.token > f.token
    # running but stale -> taken over
    clock.advance(61)
    taken = store.assign_shard(RUN, "w3", "todo-0002")
    assert taken.attempt == 3
    assert "taken over from worker w2" in store.get_shard(RUN, "todo-0002")["error_message"]
    with pytest.raises(LeaseLostError, match="w3"):
        store.heartbeat(again)


def test_complete_fail_release_record_results(store):
    store.register_shards(RUN, shards(3))
    a = store.assign_shard(RUN, "w1")
    row = store.complete(a, branch="worktree/r/todo-0000", commit_sha="deadbeef", files_changed=["src/m0.py"],
                         diffstat="1 file changed", input_tokens=100, output_tokens=20, cache_read_tokens=50,
                         cache_write_tokens=5, cost_usd=0.0125, summary={"todos_resolved": 1})
    assert row["status"] == "completed" and row["completed_at"] is not None
    got = store.get_shard(RUN, a.shard_id)
    assert got["files_changed"] == ["src/m0.py"] and got["result_summary"] == {"todos_resolved": 1}
    assert got["cost_usd"] == pytest.approx(0.0125) and got["input_tokens"] == 100
    b = store.assign_shard(RUN, "w1")
    store.fail(b, "tests failed: 2 errors", input_tokens=7)
    got = store.get_shard(RUN, b.shard_id)
    assert got["status"] == "failed" and got["error_message"] == "tests failed: 2 errors" and got["input_tokens"] == 7
    c = store.assign_shard(RUN, "w1")
    store.release(c)
    got = store.get_shard(RUN, c.shard_id)
    assert got["status"] == "pending" and got["attempt"] == 1 and got["started_at"] is None
    with pytest.raises(ConfigurationError, match="unknown result field"):
        store.complete(store.assign_shard(RUN, "w1"), colour="blue")


def test_fencing_double_complete_refused(store):
    store.register_shards(RUN, shards(1))
    a = store.assign_shard(RUN, "w1")
    store.complete(a, commit_sha="one")
    with pytest.raises(LeaseLostError, match="already completed") as ei:
        store.complete(a, commit_sha="two")
    assert isinstance(ei.value, WorktreeProviderError)
    assert ei.value.current_status == "completed"
    assert store.get_shard(RUN, a.shard_id)["commit_sha"] == "one"
    forged = Lease(RUN, a.shard_id, "w1", a.token + 1000, 1)
    with pytest.raises(LeaseLostError):
        store.heartbeat(forged)


def test_zombie_after_reset_and_reclaim_changes_nothing(store, clock):
    store.register_shards(RUN, shards(2))
    zombie = store.assign_shard(RUN, "zombie", "todo-0000")
    clock.advance(30)
    store.heartbeat(zombie)
    assert store.stale_leases(60) == []
    clock.advance(90)
    stale = store.stale_leases(60)
    assert [r["shard_id"] for r in stale] == ["todo-0000"]
    reset = store.reset_stale(60)
    assert [(r["shard_id"], r["status"], r["worker_id"]) for r in reset] == [("todo-0000", "pending", "zombie")]
    assert "reclaimed stale lease of worker zombie" in reset[0]["error_message"]
    # a zombie write between reset and reclaim is refused too
    with pytest.raises(LeaseLostError, match="reset to pending"):
        store.heartbeat(zombie)
    fresh = store.assign_shard(RUN, "healthy")
    assert fresh.shard_id == "todo-0000" and fresh.attempt == 2 and fresh.token > zombie.token
    before = store.get_shard(RUN, "todo-0000")
    for call in (lambda: store.heartbeat(zombie), lambda: store.complete(zombie, commit_sha="zzz"),
                 lambda: store.fail(zombie, "late"), lambda: store.release(zombie)):
        with pytest.raises(LeaseLostError, match="held by worker healthy") as ei:
            call()
        assert ei.value.current_worker_id == "healthy" and ei.value.current_token == fresh.token
    assert store.get_shard(RUN, "todo-0000") == before
    store.complete(fresh, commit_sha="good")
    row = store.get_shard(RUN, "todo-0000")
    assert (row["status"], row["commit_sha"], row["worker_id"], row["error_message"]) == ("completed", "good", "healthy", None)


def test_reset_stale_filters_by_run(store, clock):
    store.register_shards("r1", shards(1))
    store.register_shards("r2", shards(1))
    store.assign_shard("r1", "w")
    store.assign_shard("r2", "w")
    clock.advance(120)
    assert [r["run_id"] for r in store.reset_stale(60, run_id="r2")] == ["r2"]
    assert store.get_shard("r1", "todo-0000")["status"] == "running"
    assert [r["run_id"] for r in store.stale_leases(60)] == ["r1"]


def test_list_summary_runs_and_size(store, clock):
    store.register_shards(RUN, shards(5))
    store.register_shards("r2", shards(2))
    a = store.assign_shard(RUN, "w")
    clock.advance(120)
    store.complete(a, input_tokens=10, output_tokens=2, cost_usd=0.5)
    b = store.assign_shard(RUN, "w")
    clock.advance(60)
    store.fail(b, "x", input_tokens=5, cost_usd=0.25)
    store.assign_shard(RUN, "w")
    assert len(store.list_shards(RUN, status="pending")) == 2
    assert len(store.list_shards(status=["completed", "failed"])) == 2
    assert len(store.list_shards(limit=3)) == 3
    with pytest.raises(ConfigurationError, match="unknown status"):
        store.list_shards(status="done")
    s = store.summary(RUN)
    assert s["counts"] == {"pending": 2, "running": 1, "completed": 1, "failed": 1} and s["total"] == 5
    by = {r["status"]: r for r in s["by_status"]}
    assert by["completed"]["avg_duration_minutes"] == pytest.approx(2.0, abs=1e-3)
    assert by["failed"]["max_duration_minutes"] == pytest.approx(1.0, abs=1e-3)
    assert s["avg_duration_s"] == pytest.approx(90.0, abs=0.1) and s["max_duration_s"] == pytest.approx(120, abs=0.1)
    assert (s["input_tokens"], s["output_tokens"], s["cost_usd"]) == (15, 2, pytest.approx(0.75))
    assert store.summary()["total"] == 7
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs[RUN]["completed"] == 1 and runs[RUN]["total"] == 5 and runs["r2"]["pending"] == 2
    assert store.db_size_bytes() > 0


# -------------------------------------------------------------------------------------- migrations
def _make_v1(target: str) -> None:
    """A database as the runbook describes it: its exact CREATE TABLE, with some rows."""
    connect, dialect, _ = connection_factory(target)
    conn = connect()
    cur = conn.cursor()
    cur.execute(RUNBOOK_V1_SCHEMA.rstrip(";") if dialect == "postgresql" else RUNBOOK_V1_SCHEMA)
    ph = "%s" if dialect == "postgresql" else "?"
    rows = [("shard_001", "completed", "2025-01-01 10:00:00", "2025-01-01 10:05:00", "w1", None),
            ("shard_002", "failed", "2025-01-01 10:00:00", "2025-01-01 10:01:00", "w2", "boom"),
            ("shard_003", "running", "2025-01-01 10:00:00", None, "w3", None)]
    for r in rows:
        cur.execute(f"INSERT INTO shard_status (shard_id, status, started_at, completed_at, worker_id, error_message) "
                    f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})", r)
    cur.execute("INSERT INTO shard_status (shard_id, status) VALUES ('shard_004', 'pending')")
    conn.commit()
    conn.close()


def test_migration_from_runbook_v1(target):
    _make_v1(target)
    s = ShardStore.open(target, stale_after_s=60)
    assert s.schema_version() == CURRENT_SCHEMA_VERSION
    rows = {r["shard_id"]: r for r in s.list_shards(LEGACY_RUN_ID)}
    assert set(rows) == {"shard_001", "shard_002", "shard_003", "shard_004"}
    assert rows["shard_001"]["status"] == "completed"
    assert rows["shard_001"]["completed_at"].startswith("2025-01-01 10:05:00")
    assert rows["shard_002"]["error_message"] == "boom" and rows["shard_002"]["worker_id"] == "w2"
    assert rows["shard_003"]["status"] == "running"
    # the legacy running shard is long stale; it can be reclaimed and finished
    assert [r["shard_id"] for r in s.reset_stale(3600)] == ["shard_003"]
    got = {s.assign_shard(LEGACY_RUN_ID, "w9").shard_id for _ in range(2)}
    assert got == {"shard_003", "shard_004"}
    # reopening is a no-op
    s2 = ShardStore.open(target)
    assert s2.schema_version() == CURRENT_SCHEMA_VERSION and len(s2.list_shards()) == 4
    connect, _, _ = connection_factory(target)
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in cur.fetchall()] == list(range(1, CURRENT_SCHEMA_VERSION + 1))
    conn.close()


def test_fresh_database_schema(target):
    s = ShardStore.open(target)
    assert s.schema_version() == CURRENT_SCHEMA_VERSION
    s.migrate()
    assert s.schema_version() == CURRENT_SCHEMA_VERSION


# ------------------------------------------------------------------------------------- runbook SQL
RUNBOOK_QUERIES = {
    1: "SELECT * FROM shard_status ORDER BY updated_at DESC;",
    2: "SELECT shard_id, status, started_at FROM shard_status WHERE status = 'running';",
    3: "SELECT shard_id, error_message, updated_at FROM shard_status WHERE status = 'failed';",
    4: """
   SELECT 
     status, 
     COUNT(*) as count,
     AVG(JULIANDAY(completed_at) - JULIANDAY(started_at)) * 24 * 60 as avg_duration_minutes
   FROM shard_status 
   GROUP BY status;""",
    5: """
   SELECT shard_id, started_at, status 
   FROM shard_status 
   WHERE status = 'running' 
   AND datetime(started_at) < datetime('now', '-1 hour');""",
}


@pytest.fixture
def runbook_db(tmp_path):
    """A SQLite store with one shard in each state, plus a running shard started two hours ago."""
    path = str(tmp_path / "shard_status.db")
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=2))
    s = ShardStore.open(path, clock=clock)
    s.register_shards(RUN, shards(5))
    old = s.assign_shard(RUN, "w-old", "todo-0000")  # stays running, started 2h ago
    clock.advance(3600 + 1800)  # 30 min ago
    done = s.assign_shard(RUN, "w1", "todo-0001")
    clock.advance(600)
    s.complete(done)  # 10 minutes
    bad = s.assign_shard(RUN, "w2", "todo-0002")
    clock.advance(300)
    s.fail(bad, "lint failed")  # 5 minutes
    clock.advance(600)  # now ~ 10 minutes ago
    s.assign_shard(RUN, "w3", "todo-0003")  # running, recent
    s.close()
    return path, old


def _check_runbook_results(results: dict[int, list[tuple]]) -> None:
    assert len(results[1]) == 5
    assert {r[0] for r in results[2]} == {"todo-0000", "todo-0003"}
    assert [(r[0], r[1]) for r in results[3]] == [("todo-0002", "lint failed")]
    stats = {r[0]: (int(r[1]), r[2]) for r in results[4]}
    assert stats["completed"][0] == 1 and float(stats["completed"][1]) == pytest.approx(10.0, abs=0.01)
    assert stats["failed"][0] == 1 and float(stats["failed"][1]) == pytest.approx(5.0, abs=0.01)
    assert stats["pending"][0] == 1 and stats["running"][0] == 2
    assert [r[0] for r in results[5]] == ["todo-0000"]


def test_runbook_queries_verbatim_sqlite3_module(runbook_db):
    path, _ = runbook_db
    conn = sqlite3.connect(path)
    results = {k: conn.execute(q).fetchall() for k, q in RUNBOOK_QUERIES.items()}
    star = conn.execute(RUNBOOK_QUERIES[1])
    assert [c[0] for c in star.description][:7] == ["shard_id", "status", "started_at", "completed_at",
                                                      "updated_at", "error_message", "worker_id"]
    conn.close()
    _check_runbook_results(results)
    # query 1 orders by updated_at, most recent first: the fail (10 min ago) precedes the completion
    order = [r[0] for r in results[1]]
    assert order.index("todo-0002") < order.index("todo-0001")
    assert results[1][0][0] == "todo-0003"


def test_runbook_queries_verbatim_sqlite3_cli(runbook_db):
    if not shutil.which("sqlite3"):
        pytest.skip("the sqlite3 command-line shell is not installed")
    path, _ = runbook_db
    results = {}
    for k, q in RUNBOOK_QUERIES.items():
        out = subprocess.run(["sqlite3", path, q], check=True, capture_output=True, text=True).stdout
        results[k] = [tuple(line.split("|")) for line in out.splitlines() if line.strip()]
    results[4] = [(r[0], r[1], r[2] or None) for r in results[4]]
    _check_runbook_results(results)


def test_runbook_stale_query_agrees_with_store(runbook_db):
    path, old = runbook_db
    s = ShardStore.open(path)
    assert [r["shard_id"] for r in s.stale_leases(3600)] == [old.shard_id]


# -------------------------------------------------------------------------------------- targets
def test_targets_and_errors(tmp_path):
    p = tmp_path / "a.db"
    ShardStore.open(f"sqlite:///{p}").register_shards(RUN, shards(1))
    assert len(ShardStore.open(str(p)).list_shards()) == 1
    with pytest.raises(ConfigurationError, match="does not exist"):
        ShardStore.open(str(tmp_path / "missing" / "a.db"))
    with pytest.raises(ConfigurationError, match="unsupported"):
        ShardStore.open("mysql://x/y")
    with pytest.raises(ConfigurationError, match="empty"):
        ShardStore.open("")


def test_connection_factory_constructor(tmp_path):
    path = str(tmp_path / "f.db")
    s = ShardStore(lambda: sqlite3.connect(path), dialect="sqlite")
    s.register_shards(RUN, shards(2))
    lease = s.assign_shard(RUN, "w")
    s.complete(lease)
    assert ShardStore.open(path).summary()["counts"]["completed"] == 1


def test_newer_schema_refused(tmp_path):
    path = str(tmp_path / "n.db")
    ShardStore.open(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01 00:00:00')")
    conn.commit()
    conn.close()
    with pytest.raises(WorktreeProviderError, match="newer"):
        ShardStore.open(path)
