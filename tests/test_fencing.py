"""Fenced at the point of no return: a worker frozen past its lease (SIGSTOP) and resumed (SIGCONT) after another
process completed the shard and pushed it never changes what the remote holds, and the database agrees.

Real processes, a real bare ``file://`` remote, a real SQLite shard database. The model is replaced by a small
runner that makes the real edit (the runner is not what is under test here); a file-based rendezvous tells the
test where the frozen worker is, so the freeze lands exactly before the model returns or before the push.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from marker_edits import resolve_markers

from airflow_provider_worktree.core.lifecycle import ShardConfig, ShardFailed, run_shard
from airflow_provider_worktree.core.runners import RunResult, Usage
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

RUN = "manual__2026-11-30T02:00:00+00:00"
STALE_S = 1.5
SPAWN = mp.get_context("spawn")


class TodoRunner:
    """Resolves the TODO/FIXME markers of the worktree's Python files; with ``pause``, writes ``<pause>.here`` and
    waits for ``<pause>.go`` before returning (or until cancelled)."""

    def __init__(self, pause: str | None = None) -> None:
        self.pause, self.cancelled, self.model = pause, False, "claude-sonnet-4-6"

    def run(self, worktree_path, shard_prompt, system_prompt=None):
        resolve_markers(worktree_path)
        if self.pause:
            _rendezvous(self.pause, lambda: self.cancelled)
        return RunResult(stop_reason="end_turn", turns=1, usage=Usage(100, 10), cost_usd=0.001, model=self.model)

    def cancel(self):
        self.cancelled = True


class PausingPushManager(WorktreeManager):
    """A real WorktreeManager that stops at the rendezvous right before it pushes (after the lease check)."""

    pause: str | None = None

    def push(self, *args, **kwargs):
        if self.pause:
            _rendezvous(self.pause, lambda: False)
        return super().push(*args, **kwargs)


def _rendezvous(prefix: str, stop) -> None:
    Path(prefix + ".here").write_text(str(os.getpid()))
    while not Path(prefix + ".go").exists() and not stop():
        time.sleep(0.05)


def _frozen_worker(remote: str, tmp: str, db: str, shard: dict, where: str, out: str) -> None:
    """The worker that will be frozen: pauses ``where`` ('model' or 'push') at the rendezvous ``tmp/a``."""
    store = ShardStore.open(db, stale_after_s=STALE_S)
    manager = PausingPushManager(remote, worktree_root=f"{tmp}/wt-a", cache_dir=f"{tmp}/cache-a")
    if where == "push":
        manager.pause = f"{tmp}/a"
    runner = TodoRunner(pause=f"{tmp}/a" if where == "model" else None)
    try:
        res = run_shard(shard, RUN, task=get_task("todo"), manager=manager, runner=runner, store=store,
                        config=ShardConfig(push=True, heartbeat_interval=0.2), worker_id="host-a:frozen")
        outcome = {"status": res.status, "commit": res.commit_sha}
    except ShardFailed as exc:
        outcome = {"status": "failed", "error": str(exc), "permanent": exc.permanent}
    Path(out).write_text(json.dumps(outcome))


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def remote(git_repo, tmp_path):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(git_repo), str(bare)], check=True)
    return bare


def _freeze_and_overtake(remote: Path, tmp_path: Path, git_repo: Path, where: str, earlier_attempts: int = 0):
    url = f"file://{remote}"
    db = str(tmp_path / "shard_status.db")
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]
    store = ShardStore.open(db, stale_after_s=STALE_S)
    store.register_shards(RUN, [shard])
    for i in range(earlier_attempts):  # earlier tries that failed: the frozen worker is a retry
        store.fail(store.assign_shard(RUN, f"host-old:{i}", shard["shard_id"]), "transient: connection reset")
    out = tmp_path / "a.json"
    proc = SPAWN.Process(target=_frozen_worker, args=(url, str(tmp_path), db, shard, where, str(out)))
    proc.start()
    try:
        _wait_for(lambda: (tmp_path / "a.here").exists(), f"the worker to reach the {where} rendezvous")
        os.kill(proc.pid, signal.SIGSTOP)
        _wait_for(lambda: store.stale_leases(STALE_S, RUN), "the frozen worker's lease to go stale")
        # another process (this one) takes the shard over, completes it and pushes
        b = run_shard(shard, RUN, task=get_task("todo"),
                      manager=WorktreeManager(url, worktree_root=tmp_path / "wt-b", cache_dir=tmp_path / "cache-b"),
                      runner=TodoRunner(), store=store, config=ShardConfig(push=True, heartbeat_interval=0.2),
                      worker_id="host-b:overtaker")
        assert b.status == "completed" and b.commit_sha
        (tmp_path / "a.go").write_text("")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.join(120)
    assert proc.exitcode == 0
    return shard, b, json.loads(out.read_text()), store


def _assert_remote_and_db_agree(remote: Path, store: ShardStore, shard: dict, b) -> None:
    row = store.get_shard(RUN, shard["shard_id"])
    assert row["status"] == "completed" and row["commit_sha"] == b.commit_sha
    assert _git(remote, "rev-parse", f"refs/heads/{b.branch}") == b.commit_sha, "the remote keeps the completed commit"
    statuses = [a["status"] for a in store.list_attempts(RUN, shard["shard_id"])]
    assert statuses[-2:] == ["lost", "completed"]


def test_worker_frozen_in_the_model_stops_at_the_lease_check(remote, tmp_path, git_repo):
    shard, b, a, store = _freeze_and_overtake(remote, tmp_path, git_repo, "model")
    assert a["status"] == "failed" and "lease" in a["error"] and not a["permanent"]
    _assert_remote_and_db_agree(remote, store, shard, b)
    # the frozen attempt's spend is still counted on the shard
    assert store.get_shard(RUN, shard["shard_id"])["input_tokens"] == 200


def test_retry_frozen_right_before_push_cannot_replace_the_completed_commit(remote, tmp_path, git_repo):
    # the frozen worker is attempt 2: without a compare-and-swap push, a retry would force-push over the remote
    shard, b, a, store = _freeze_and_overtake(remote, tmp_path, git_repo, "push", earlier_attempts=1)
    assert a["status"] == "failed", a
    _assert_remote_and_db_agree(remote, store, shard, b)


class _DatabaseGoesAwayRunner:
    """Drops the shard database (as an outage would) once the model starts, then works until cancelled."""

    model = "claude-sonnet-4-6"

    def __init__(self, admin_dsn: str, name: str) -> None:
        self.admin_dsn, self.name, self.cancelled = admin_dsn, name, False

    def run(self, worktree_path, shard_prompt, system_prompt=None):
        import psycopg2

        admin = psycopg2.connect(self.admin_dsn)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        admin.close()
        deadline = time.monotonic() + 120
        while not self.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
        return RunResult(stop_reason="cancelled" if self.cancelled else "end_turn", usage=Usage(5, 1))

    def cancel(self):
        self.cancelled = True


def test_worker_that_cannot_reach_the_database_stops(pg_url, git_repo, tmp_path):
    from conftest import PG_DSN

    store = ShardStore.open(pg_url)
    runner = _DatabaseGoesAwayRunner(PG_DSN, pg_url.rsplit("/", 1)[1])
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]
    manager = WorktreeManager(git_repo, worktree_root=tmp_path / "wt")
    with pytest.raises(ShardFailed, match="unreachable for 3 heartbeats") as info:
        run_shard(shard, RUN, task=get_task("todo"), manager=manager, runner=runner, store=store,
                  config=ShardConfig(heartbeat_interval=0.2, heartbeat_max_misses=3))
    assert runner.cancelled and not info.value.permanent, "stopped, and Airflow's retry may run it again"
    assert manager.list_worktrees()[1:] == [], "the worktree is cleaned up all the same"
