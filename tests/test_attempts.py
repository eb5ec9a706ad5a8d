"""Schema v3: every attempt of a shard is kept (worker, outcome, tokens, cost), the shard row sums them, the
v2 -> v3 migration keeps what v2 knew, and claims respect a run's slot limit. SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_worktree.core.store import (
    CURRENT_SCHEMA_VERSION,
    MAX_ERROR_CHARS,
    LeaseLostError,
    NoSlotAvailable,
    ShardStore,
)
from airflow_provider_worktree.core.store.schema import MIGRATIONS

RUN = "manual__2026-11-30T00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "shard_status.db")
    return request.getfixturevalue("pg_url")


class Clock:
    """A settable UTC clock shared by stores in this process (lease staleness without sleeping)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, 0, 0, 0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def test_every_attempt_is_kept_and_the_row_sums_them(target):
    store = ShardStore.open(target)
    assert store.schema_version() == CURRENT_SCHEMA_VERSION == 7
    store.register_shards(RUN, [{"shard_id": "s1", "files": ["a.py"]}])
    first = store.assign_shard(RUN, "host-a:1", "s1")
    store.fail(first, "verification failed: 1 marker left", input_tokens=100, output_tokens=20,
               cache_read_tokens=300, cache_write_tokens=40, cost_usd=0.5, isolation="bwrap")
    assert store.prior_spend(RUN, "s1", 2) == {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 300,
                                               "cache_write_tokens": 40, "cost_usd": 0.5, "attempts": 1}
    second = store.assign_shard(RUN, "host-b:2", "s1")
    row = store.complete(second, commit_sha="c" * 40, input_tokens=10, output_tokens=5, cache_read_tokens=30,
                         cache_write_tokens=4, cost_usd=0.25, isolation="none")
    # the shard row: cumulative over both attempts, not the last attempt's numbers
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == \
        (110, 25, 330, 44)
    assert row["cost_usd"] == pytest.approx(0.75) and row["isolation"] == "none" and row["status"] == "completed"
    attempts = store.list_attempts(RUN, "s1")
    assert [(a["attempt"], a["worker_id"], a["status"], a["input_tokens"], a["isolation"]) for a in attempts] == [
        (1, "host-a:1", "failed", 100, "bwrap"), (2, "host-b:2", "completed", 10, "none")]
    assert attempts[0]["error_message"].startswith("verification failed")
    assert attempts[1]["commit_sha"] == "c" * 40 and attempts[1]["ended_at"] >= attempts[1]["started_at"]
    assert store.summary(RUN)["cost_usd"] == pytest.approx(0.75)


def test_a_fenced_out_attempt_keeps_its_spend(target):
    clock = Clock()
    store = ShardStore.open(target, stale_after_s=60, clock=clock)
    store.register_shards(RUN, ["s1"])
    old = store.assign_shard(RUN, "frozen:1", "s1")
    clock.advance(120)  # the holder froze; its lease went stale and a retry takes the shard over
    new = store.assign_shard(RUN, "retry:2", "s1")
    assert [a["status"] for a in store.list_attempts(RUN, "s1")] == ["lost", "running"]
    with pytest.raises(LeaseLostError):
        store.complete(old, commit_sha="a" * 40, input_tokens=1000, cost_usd=2.0)
    row = store.record_attempt(old, "lost", "lease lost before completion", input_tokens=1000, cost_usd=2.0)
    assert row["status"] == "running" and row["input_tokens"] == 1000, "the result is not the old attempt's"
    row = store.complete(new, commit_sha="b" * 40, input_tokens=10, cost_usd=0.01)
    assert row["commit_sha"] == "b" * 40 and row["input_tokens"] == 1010 and row["cost_usd"] == pytest.approx(2.01)
    assert store.prior_spend(RUN, "s1", 3)["cost_usd"] == pytest.approx(2.01)


def test_reset_stale_and_release_close_the_attempt(target):
    clock = Clock()
    store = ShardStore.open(target, stale_after_s=60, clock=clock)
    store.register_shards(RUN, ["s1", "s2"])
    store.assign_shard(RUN, "dead:1", "s1")
    released = store.assign_shard(RUN, "polite:2", "s2")
    store.release(released)
    clock.advance(120)
    assert [r["shard_id"] for r in store.reset_stale(60, RUN)] == ["s1"]
    statuses = {a["shard_id"]: (a["status"], a["ended_at"] is not None) for a in store.list_attempts(RUN)}
    assert statuses == {"s1": ("lost", True), "s2": ("released", True)}


def test_error_message_is_bounded_cause_first(target):
    store = ShardStore.open(target)
    store.register_shards(RUN, ["s1"])
    lease = store.assign_shard(RUN, "w:1", "s1")
    huge = "fatal: No space left on device\n" + "noise line\n" * 20000
    row = store.fail(lease, huge)
    assert len(row["error_message"]) <= MAX_ERROR_CHARS + 100
    assert row["error_message"].startswith("fatal: No space left on device")
    assert len(store.list_attempts(RUN, "s1")[0]["error_message"]) <= MAX_ERROR_CHARS + 100


def _make_v2(target: str) -> None:
    """A database exactly as schema version 2 left it, with one finished and one retried shard."""
    store = ShardStore.open(target, migrate=False)

    def _build(cur):
        store._q(cur, f"CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at "
                      f"{store.dialect.ts_type} NOT NULL)")
        for step in (1, 2):
            MIGRATIONS[step](store.dialect, cur)
            store._q(cur, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                     (step, "2026-01-01 00:00:00.000000"))
        store._q(cur, "INSERT INTO shard_status (run_id, shard_id, status, attempt, worker_id, lease_token, "
                      "started_at, completed_at, input_tokens, output_tokens, cost_usd, commit_sha) VALUES "
                      "(?, 's1', 'completed', 2, 'w:1', 7, '2026-01-01 00:00:00', '2026-01-01 00:01:00', "
                      "500, 50, 1.5, ?), (?, 's2', 'pending', 0, NULL, NULL, NULL, NULL, 0, 0, 0, NULL)",
                 (RUN, "d" * 40, RUN))

    store._tx(_build)
    store.close()


def test_migration_from_v2_keeps_what_v2_knew(target):
    _make_v2(target)
    store = ShardStore.open(target)
    assert store.schema_version() == CURRENT_SCHEMA_VERSION
    row = store.get_shard(RUN, "s1")
    assert row["input_tokens"] == 500 and row["cost_usd"] == pytest.approx(1.5) and row["isolation"] is None
    attempts = store.list_attempts(RUN)
    assert [(a["shard_id"], a["attempt"], a["status"], a["input_tokens"], a["commit_sha"]) for a in attempts] == [
        ("s1", 2, "completed", 500, "d" * 40)], "a never-claimed shard has no attempt"
    # the migrated shard keeps counting: a new attempt of s2 and its spend land in v3's tables
    lease = store.assign_shard(RUN, "w:2", "s2")
    assert store.complete(lease, input_tokens=3, cost_usd=0.1)["input_tokens"] == 3
    assert ShardStore.open(target).schema_version() == CURRENT_SCHEMA_VERSION, "opening again applies nothing twice"


def test_claims_respect_the_slot_limit_and_reclaim_dead_slots(target):
    clock = Clock()
    store = ShardStore.open(target, stale_after_s=60, clock=clock)
    store.register_shards(RUN, [f"s{i}" for i in range(4)])
    store.register_shards("other-run", ["s0"])
    a = store.assign_shard(RUN, "w:a", "s0", max_active=2)
    store.assign_shard(RUN, "w:b", "s1", max_active=2)
    store.assign_shard("other-run", "w:x", "s0", max_active=2)  # another run's slots are its own
    with pytest.raises(NoSlotAvailable, match="max_active=2"):
        store.assign_shard(RUN, "w:c", "s2", max_active=2)
    assert store.get_shard(RUN, "s2")["status"] == "pending", "a refused claim changes nothing"
    store.complete(a)
    c = store.assign_shard(RUN, "w:c", "s2", max_active=2)  # a finished shard frees its slot
    with pytest.raises(NoSlotAvailable):
        store.assign_shard(RUN, "w:d", None, max_active=2)
    clock.advance(30)
    store.heartbeat(c)
    clock.advance(40)  # s1's holder stopped heartbeating 70 s ago: its slot is free again, c's is not
    assert store.assign_shard(RUN, "w:d", "s3", max_active=2).shard_id == "s3"
    with pytest.raises(ValueError, match="max_active"):
        store.assign_shard(RUN, "w:e", "s1", max_active=0)
