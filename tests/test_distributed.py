"""The example DAG on a real CeleryExecutor deployment: scripts/distributed_run.py, both scenarios.

One invocation starts PostgreSQL databases (metadata + Celery results, shard status), a Redis broker database,
the api-server, scheduler, dag-processor and two Celery workers with their own worktree roots and clone caches,
then runs ``parallel_maintenance_poc`` twice against a shared ``file://`` remote: once normally, once with
worker 2 SIGKILLed mid-run. The script's own checks are the assertions (run succeeded, both workers did
shards, every shard completed exactly once, every branch on the remote at the recorded commit, integration
branch merged and pushed, no worktree left; after the kill: heartbeat timeout, retry on worker 1, lease
reclaimed). About 3 minutes on 2 cores.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "distributed_run.py"
pytestmark = [pytest.mark.celery, pytest.mark.integration, pytest.mark.timeout(900)]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _missing_prerequisite() -> str | None:
    for module, why in (
        ("airflow.providers.celery", "the celery provider is not installed (pip install -e '.[celery]')"),
        ("redis", "the redis client is not installed (pip install -e '.[celery]')"),
        ("psycopg2", "psycopg2 is not installed (pip install -e '.[postgres]')"),
        ("asyncpg", "asyncpg is not installed: Airflow 3 needs it for a PostgreSQL metadata database "
                    "(pip install asyncpg)"),
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            return why
    try:  # installed but not importable: e.g. provider 3.26 with celery 5.7 (celery.backends.database.retry gone)
        importlib.import_module("airflow.providers.celery.executors.celery_executor_utils")
    except ImportError as exc:
        return f"the celery provider cannot be imported with this celery version ({exc}); pip install 'celery<5.7'"
    if not _reachable("127.0.0.1", 5432):
        return "PostgreSQL is not reachable on 127.0.0.1:5432"
    if not _reachable("127.0.0.1", 6379):
        return "Redis is not reachable on 127.0.0.1:6379"
    return None


def test_celery_two_workers_normal_and_killed_worker(tmp_path):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--scenario", "both", "--home", str(tmp_path / "home")],
                          env=env, capture_output=True, text=True, timeout=840)
    out = proc.stdout + proc.stderr
    if proc.returncode == 2:
        pytest.skip("distributed_run.py cannot run here: " + out.strip().splitlines()[-1])
    assert proc.returncode == 0, out[-8000:]
    assert "RESULT: PASSED" in out
    assert "scenario normal: PASSED" in out and "scenario kill-worker: PASSED" in out, out[-4000:]
    # the checks that make the scenarios what they are, by name
    for check in ("both workers completed shards", "every shard completed",
                  "every shard branch is on the remote at the recorded commit",
                  "integration branch contains every shard commit", "nothing left in worker1's worktree root",
                  "worker2 was killed while running shards", "every shard killed on worker2 completed on worker1",
                  "the killed shards were re-claimed", "Airflow retried the killed task instances",
                  "worker2's abandoned worktrees are those of shards killed there"):
        assert f"[PASS] {check}" in out, f"missing check {check!r}:\n{out[-4000:]}"
    assert "[FAIL]" not in out
    # everything was cleaned up: no process of the run left, databases dropped
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "home")], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"processes left behind: {leftover}"
    assert "dropped PostgreSQL database" in out
