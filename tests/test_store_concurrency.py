"""ShardStore under real multi-process contention (processes, not threads), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import traceback
from pathlib import Path

import pytest

from airflow_provider_worktree.core.store import (
    CURRENT_SCHEMA_VERSION,
    RUNBOOK_V1_SCHEMA,
    Lease,
    LeaseLostError,
    ShardBusy,
    ShardStore,
    connection_factory,
)

RUN = "scheduled__2026-02-02T00:00:00+00:00"
SPAWN = mp.get_context("spawn")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "shard_status.db")
    return request.getfixturevalue("pg_url")


# ------------------------------------------------------------------ worker bodies (run in spawned processes)
def _drain_worker(target: str, worker_id: str, start, out) -> None:
    """Claim and complete shards until none is pending; report claimed ids or the error."""
    try:
        store = ShardStore.open(target, stale_after_s=600)
        start.wait(30)
        claimed = []
        while True:
            lease = store.assign_shard(RUN, worker_id)
            if lease is None:
                break
            store.complete(lease, commit_sha=f"sha-{lease.shard_id}", input_tokens=1)
            claimed.append(lease.shard_id)
        out.put((worker_id, claimed, None, store.retries))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        out.put((worker_id, [], traceback.format_exc(), 0))


def _heartbeat_forever(target: str, shard_id: str, lease_file: str) -> None:
    """Claim ``shard_id``, publish the lease, heartbeat every 50 ms until killed."""
    store = ShardStore.open(target, stale_after_s=1.0)
    lease = store.assign_shard(RUN, "doomed-worker", shard_id)
    Path(lease_file + ".tmp").write_text(json.dumps(lease.to_dict()))
    os.replace(lease_file + ".tmp", lease_file)
    while True:
        store.heartbeat(lease)
        time.sleep(0.05)


def _claim_and_complete(target: str, worker_id: str, out) -> None:
    try:
        store = ShardStore.open(target)
        lease = store.assign_shard(RUN, worker_id)
        store.complete(lease, commit_sha="rescued")
        out.put((lease.shard_id, lease.attempt, None))
    except BaseException:  # noqa: BLE001
        out.put((None, None, traceback.format_exc()))


def _open_only(target: str, start, out) -> None:
    try:
        start.wait(30)
        store = ShardStore.open(target)
        out.put((store.schema_version(), None))
    except BaseException:  # noqa: BLE001
        out.put((None, traceback.format_exc()))


def _claim_given(target: str, worker_id: str, shard_id: str, start, out) -> None:
    try:
        store = ShardStore.open(target, stale_after_s=600)
        start.wait(30)
        try:
            lease = store.assign_shard(RUN, worker_id, shard_id)
            out.put(("claimed", lease.token, None))
        except ShardBusy:
            out.put(("busy", None, None))
    except BaseException:  # noqa: BLE001
        out.put((None, None, traceback.format_exc()))


def _collect(out, n: int, timeout: float = 240.0) -> list:
    deadline = time.monotonic() + timeout
    results = []
    while len(results) < n:
        results.append(out.get(timeout=max(1.0, deadline - time.monotonic())))
    return results


def _join(procs) -> None:
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"worker process exited with {p.exitcode}"


# ---------------------------------------------------------------------------------------------- tests
def test_16_processes_drain_2000_shards_each_claimed_once(target):
    store = ShardStore.open(target)
    n = 2000
    assert store.register_shards(RUN, [{"shard_id": f"s-{i:05d}", "task": "todo", "files": [f"f{i}.py"],
                                        "priority": i % 3} for i in range(n)]) == n
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_drain_worker, args=(target, f"w{i:02d}", start, out)) for i in range(16)]
    for p in procs:
        p.start()
    start.set()
    results = _collect(out, len(procs))
    _join(procs)
    errors = [err for _, _, err, _ in results if err]
    assert not errors, errors[0]
    claimed = [sid for _, ids, _, _ in results for sid in ids]
    assert len(claimed) == n and len(set(claimed)) == n, "a shard was claimed twice or missed"
    assert sum(1 for _, ids, _, _ in results if ids) >= 2, "only one process ever got a shard"
    s = store.summary(RUN)
    assert s["counts"] == {"pending": 0, "running": 0, "completed": n, "failed": 0}
    assert s["attempts"] == n and s["input_tokens"] == n
    tokens = [r["lease_token"] for r in store.list_shards(RUN)]
    assert len(set(tokens)) == n, "fencing tokens must be unique"
    by_worker = {}
    for r in store.list_shards(RUN):
        by_worker.setdefault(r["worker_id"], 0)
        by_worker[r["worker_id"]] += 1
    assert by_worker == {w: len(ids) for w, ids, _, _ in results if ids}


def test_sigkilled_worker_is_found_stale_and_its_shard_finished_by_another(target, tmp_path):
    store = ShardStore.open(target, stale_after_s=1.0)
    store.register_shards(RUN, ["victim-1"])
    lease_file = str(tmp_path / "lease.json")
    proc = SPAWN.Process(target=_heartbeat_forever, args=(target, "victim-1", lease_file))
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(lease_file):
            assert proc.is_alive() and time.monotonic() < deadline, "worker did not claim its shard"
            time.sleep(0.02)
        dead_lease = Lease.from_dict(json.loads(Path(lease_file).read_text()))
        time.sleep(0.6)  # it heartbeats meanwhile: not stale
        assert store.stale_leases(0.5, run_id=RUN) == []
        with pytest.raises(ShardBusy):
            store.assign_shard(RUN, "impatient", "victim-1")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        if proc.is_alive():
            proc.kill()
    deadline = time.monotonic() + 10
    while not store.stale_leases(0.5, run_id=RUN):
        assert time.monotonic() < deadline, "a killed worker's lease never became stale"
        time.sleep(0.05)
    reset = store.reset_stale(0.5, run_id=RUN)
    assert [(r["shard_id"], r["status"], r["worker_id"]) for r in reset] == [("victim-1", "pending", "doomed-worker")]
    out = SPAWN.Queue()
    rescuer = SPAWN.Process(target=_claim_and_complete, args=(target, "rescuer", out))
    rescuer.start()
    sid, attempt, err = out.get(timeout=120)
    _join([rescuer])
    assert err is None, err
    assert (sid, attempt) == ("victim-1", 2)
    row = store.get_shard(RUN, "victim-1")
    assert (row["status"], row["worker_id"], row["commit_sha"]) == ("completed", "rescuer", "rescued")
    with pytest.raises(LeaseLostError, match="rescuer"):
        store.complete(dead_lease, commit_sha="from-the-grave")
    assert store.get_shard(RUN, "victim-1") == row


def test_16_processes_race_for_one_given_shard(target):
    ShardStore.open(target).register_shards(RUN, ["hot-1"])
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_claim_given, args=(target, f"w{i}", "hot-1", start, out)) for i in range(16)]
    for p in procs:
        p.start()
    start.set()
    results = _collect(out, len(procs))
    _join(procs)
    assert all(err is None for _, _, err in results), [e for _, _, e in results if e][0]
    assert sorted(r[0] for r in results) == ["busy"] * 15 + ["claimed"]


@pytest.mark.parametrize("initial", ["empty", "runbook_v1"])
def test_concurrent_open_migrates_once(target, initial):
    if initial == "runbook_v1":
        connect, dialect, _ = connection_factory(target)
        conn = connect()
        cur = conn.cursor()
        cur.execute(RUNBOOK_V1_SCHEMA.rstrip(";"))
        cur.execute("INSERT INTO shard_status (shard_id, status) VALUES ('old-1', 'pending')")
        conn.commit()
        conn.close()
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_open_only, args=(target, start, out)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    results = _collect(out, len(procs))
    _join(procs)
    assert all(err is None for _, err in results), [e for _, e in results if e][0]
    assert {v for v, _ in results} == {CURRENT_SCHEMA_VERSION}
    connect, _, _ = connection_factory(target)
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in cur.fetchall()] == list(range(1, CURRENT_SCHEMA_VERSION + 1))
    cur.execute("SELECT COUNT(*) FROM shard_status")
    assert cur.fetchone()[0] == (1 if initial == "runbook_v1" else 0)
    conn.close()
