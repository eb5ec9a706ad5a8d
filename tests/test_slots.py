"""The run-time parallel limit: ``max_active_shards`` is a slot semaphore in the shard database. Twelve real
processes with a limit of three never have more than three shards working at once; a dead holder's slot is
reclaimed once its heartbeat is stale. Real git repository, real SQLite and PostgreSQL databases.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
from marker_edits import resolve_markers
from conftest import make_repo, wait_until_dead

from airflow_provider_worktree.core.lifecycle import ShardConfig, run_shard
from airflow_provider_worktree.core.runners import RunResult, Usage
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

RUN = "manual__2026-11-30T03:00:00+00:00"
SPAWN = mp.get_context("spawn")
LIMIT, PROCESSES = 3, 12


class SlotRunner:
    """Marks itself active in ``marks`` while it works, and lingers until ``LIMIT`` shards are active (or a few
    seconds pass), so a broken limit shows as more than ``LIMIT`` at once. Resolves the markers for real."""

    def __init__(self, marks: str, name: str) -> None:
        self.marks, self.name, self.model = Path(marks), name, "claude-sonnet-4-6"

    def run(self, worktree_path, shard_prompt, system_prompt=None):
        active = self.marks / f"{self.name}.active"
        (self.marks / f"{self.name}.start").write_text(repr(time.time()))
        active.write_text("")
        deadline = time.monotonic() + 4.0
        while len(list(self.marks.glob("*.active"))) < LIMIT and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        resolve_markers(worktree_path)
        (self.marks / f"{self.name}.end").write_text(repr(time.time()))
        active.unlink()
        return RunResult(stop_reason="end_turn", turns=1, usage=Usage(10, 1), model=self.model)

    def cancel(self):
        pass


def _slot_worker(repo: str, tmp: str, db: str, shard: dict, out: str) -> None:
    try:
        store = ShardStore.open(db, stale_after_s=30)
        manager = WorktreeManager(repo, worktree_root=f"{tmp}/wt")
        res = run_shard(shard, RUN, task=get_task("todo"), manager=manager,
                        runner=SlotRunner(f"{tmp}/marks", shard["shard_id"]), store=store,
                        config=ShardConfig(max_active_shards=LIMIT, slot_poll_s=0.05, heartbeat_interval=1.0),
                        worker_id=f"host:{os.getpid()}")
        Path(out).write_text(json.dumps({"status": res.status}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        Path(out).write_text(json.dumps({"status": "error", "error": repr(exc)}))


def _max_overlap(intervals: list[tuple]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        now += step
        peak = max(peak, now)
    return peak


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "shard_status.db")
    return request.getfixturevalue("pg_url")


def test_twelve_processes_never_exceed_three_at_once(tmp_path, target):
    repo = make_repo(tmp_path / "repo", n_files=PROCESSES)
    shards = plan_shards(str(repo), "todo", max_files=1)
    assert len(shards) == PROCESSES
    (tmp_path / "marks").mkdir()
    ShardStore.open(target).register_shards(RUN, shards)
    procs = []
    for i, shard in enumerate(shards):
        p = SPAWN.Process(target=_slot_worker, args=(str(repo), str(tmp_path), target, shard,
                                                     str(tmp_path / f"out{i}.json")))
        p.start()
        procs.append(p)
    for p in procs:
        p.join(300)
    outcomes = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(PROCESSES)]
    assert [o["status"] for o in outcomes] == ["completed"] * PROCESSES, outcomes
    marks = tmp_path / "marks"
    work = [(float((marks / f"{s['shard_id']}.start").read_text()), float((marks / f"{s['shard_id']}.end").read_text()))
            for s in shards]
    leases = [(a["started_at"], a["ended_at"]) for a in ShardStore.open(target).list_attempts(RUN)]
    assert len(leases) == PROCESSES and all(end for _, end in leases)
    assert _max_overlap(leases) <= LIMIT, "never more than LIMIT leases at once (database timestamps)"
    assert _max_overlap(work) == LIMIT, "the limit is reached, never exceeded (the workers' own marks)"


def _hold_slot_forever(db: str, shard_id: str, ready: str) -> None:
    store = ShardStore.open(db, stale_after_s=1.5)
    lease = store.assign_shard(RUN, "doomed:1", shard_id, max_active=1)
    Path(ready).write_text(json.dumps(lease.to_dict()))
    while True:
        store.heartbeat(lease)
        time.sleep(0.1)


def test_a_dead_holders_slot_is_reclaimed(tmp_path, git_repo):
    db = str(tmp_path / "shard_status.db")
    shards = plan_shards(str(git_repo), "todo", max_files=1)
    assert len(shards) >= 2
    store = ShardStore.open(db, stale_after_s=1.5)
    store.register_shards(RUN, shards)
    holder = SPAWN.Process(target=_hold_slot_forever, args=(db, shards[0]["shard_id"], str(tmp_path / "ready")))
    holder.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline and holder.is_alive(), "the holder never claimed its slot"
        time.sleep(0.05)
    os.kill(holder.pid, signal.SIGKILL)
    assert wait_until_dead(holder.pid)
    holder.join(10)
    (tmp_path / "marks").mkdir()
    res = run_shard(shards[1], RUN, task=get_task("todo"), manager=WorktreeManager(git_repo, worktree_root=tmp_path / "wt"),
                    runner=SlotRunner(str(tmp_path / "marks"), "s"), store=store,
                    config=ShardConfig(max_active_shards=1, slot_poll_s=0.05, heartbeat_interval=0.5),
                    worker_id="other-host:7")
    assert res.status == "completed"
    dead = store.get_shard(RUN, shards[0]["shard_id"])
    assert dead["status"] == "running" and dead["worker_id"] == "doomed:1", "reclaimed by staleness, not by a reset"
    attempt = store.list_attempts(RUN, shards[1]["shard_id"])[0]
    waited = dt.datetime.fromisoformat(attempt["started_at"]) - dt.datetime.fromisoformat(dead["heartbeat_at"])
    assert waited >= dt.timedelta(seconds=1.5), "the slot was taken only once the holder's heartbeat was stale"
