"""ShardStatusSensor (poke and deferrable) and ShardStatusTrigger on real SQLite shard databases.

Shards are completed by a separate process (a worker, as in production) while the sensor or trigger polls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk import PokeReturnValue
from airflow_provider_worktree.version_compat import AirflowException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.sensors.shard_status import ShardStatusSensor
from airflow_provider_worktree.triggers.shard_status import ShardStatusTrigger

RUN = "manual__2026-01-01T00:00:00+00:00"  # a real Airflow run id, with ':' and '+'

COMPLETER = r"""
import sys, time
from airflow_provider_worktree.core.store import ShardStore
db, run, delay, fail_ids = sys.argv[1], sys.argv[2], float(sys.argv[3]), set(sys.argv[4:])
time.sleep(delay)
store = ShardStore.open(db)
while True:
    lease = store.assign_shard(run, "completer-process")
    if lease is None:
        break
    time.sleep(0.05)
    if lease.shard_id in fail_ids:
        store.fail(lease, "verify failed")
    else:
        store.complete(lease, branch="worktree/x/" + lease.shard_id, commit_sha="c" * 40, cost_usd=0.5)
print("done")
"""


def _utc(delta_s: float = 0.0):
    return lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=delta_s)


def _shards(n: int) -> list[dict]:
    return [{"shard_id": f"s-{i:03d}", "task": "todo", "files": [f"f{i}.py"]} for i in range(n)]


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "shard_status.db")
    ShardStore.open(path).register_shards(RUN, _shards(3))
    return path


@pytest.fixture
def planted(tmp_path: Path) -> str:
    """3 shards; s-000 claimed 10 minutes ago by a worker that died (no heartbeat since)."""
    path = str(tmp_path / "planted.db")
    old = ShardStore.open(path, clock=_utc(-600))
    old.register_shards(RUN, _shards(3))
    old.assign_shard(RUN, "dead-worker", shard_id="s-000")
    old.close()
    return path


def start_completer(db: str, delay: float = 0.5, fail: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COMPLETER, db, RUN, str(delay), *fail],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def status_of(db: str, shard_id: str) -> str:
    return ShardStore.open(db).get_shard(RUN, shard_id)["status"]


def sensor(db: str, **kw) -> ShardStatusSensor:
    kw.setdefault("run_id", RUN)
    kw.setdefault("poke_interval", 0.1)
    kw.setdefault("timeout", 60)
    return ShardStatusSensor(task_id="watch_shards", db_path=db, **kw)


# ------------------------------------------------------------------------------------------- poke mode


def test_poke_not_done_then_done(db):
    s = sensor(db)
    r = s.poke({})
    assert isinstance(r, PokeReturnValue) and r.is_done is False
    assert r.xcom_value["summary"]["counts"]["pending"] == 3
    proc = start_completer(db, delay=0)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    r = s.poke({})
    assert r.is_done is True
    assert r.xcom_value["summary"]["counts"]["completed"] == 3
    assert r.xcom_value["stale_reset"] == []
    assert {a["metric"] for a in r.xcom_value["alerts"]} >= {"failed_ratio", "stale_locks", "task_duration_s"}


def test_execute_in_poke_mode_waits_for_another_process(db):
    proc = start_completer(db, delay=1.0)
    started = time.monotonic()
    value = sensor(db).execute({})
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert time.monotonic() - started >= 1.0  # it really waited for the worker
    assert value["summary"]["counts"] == {"pending": 0, "running": 0, "completed": 3, "failed": 0}
    assert set(value) == {"summary", "alerts", "stale_reset"}


def test_no_shards_yet_is_not_done(tmp_path):
    path = str(tmp_path / "empty.db")
    ShardStore.open(path)
    assert sensor(path).poke({}).is_done is False


def test_on_stale_reset_puts_the_shard_back_to_pending(planted):
    r = sensor(planted, stale_after=60, on_stale="reset").poke({})
    assert r.is_done is False
    assert [s["shard_id"] for s in r.xcom_value["stale_reset"]] == ["s-000"]
    assert r.xcom_value["stale_reset"][0]["worker_id"] == "dead-worker"
    assert status_of(planted, "s-000") == "pending"


def test_on_stale_fail_raises_and_keeps_the_lease(planted):
    with pytest.raises(AirflowException, match=r"1 stale lease\(s\) in run .*: s-000.*reset-stale"):
        sensor(planted, stale_after=60, on_stale="fail").poke({})
    assert status_of(planted, "s-000") == "running"


def test_on_stale_warn_keeps_the_lease(planted):
    r = sensor(planted, stale_after=60, on_stale="warn").poke({})
    assert r.is_done is False and r.xcom_value["stale_reset"] == []
    assert status_of(planted, "s-000") == "running"
    stale = [a for a in r.xcom_value["alerts"] if a["metric"] == "stale_locks"]
    assert stale and stale[0]["value"] == 1


def test_a_lease_younger_than_stale_after_is_left_alone(planted):
    r = sensor(planted, stale_after=3600, on_stale="reset").poke({})  # runbook default: 1 h
    assert r.xcom_value["stale_reset"] == []
    assert status_of(planted, "s-000") == "running"


def test_critical_threshold_fails_unless_disabled(db):
    proc = start_completer(db, delay=0, fail=("s-001",))  # 1 of 3 failed: 33% > 10%
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    with pytest.raises(AirflowException, match="Failed Tasks critical: 33.3% > 10.0%; action: Review error logs"):
        sensor(db).poke({})
    r = sensor(db, fail_on_critical=False).poke({})
    assert r.is_done is True
    assert any(a["level"] == "critical" for a in r.xcom_value["alerts"])
    # a raised critical threshold makes it fine again
    assert sensor(db, thresholds={"failed_ratio_critical": 0.5, "failed_ratio_warning": 0.4}).poke({}).is_done


def test_stale_locks_threshold_override(planted):
    with pytest.raises(AirflowException, match="Stale Locks critical: 1 > 0"):
        sensor(planted, stale_after=60, on_stale="warn",
               thresholds={"stale_locks": {"warning": 0, "critical": 0}}).poke({})


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"on_stale": "ignore"}, "on_stale='ignore' is not supported; use one of 'reset', 'fail', 'warn'"),
        ({"stale_after": 0}, "stale_after=0 must be a positive number of seconds"),
        ({"thresholds": {"stale_lock_warning": 1}}, "unknown threshold(s) stale_lock_warning"),
    ],
)
def test_bad_parameters_fail_at_construction(db, kwargs, needle):
    with pytest.raises(ConfigurationError) as err:
        sensor(db, **kwargs)
    assert needle in str(err.value)


def test_defaults_and_templating(db):
    s = ShardStatusSensor(task_id="t")
    assert s.run_id == "{{ run_id }}" and "run_id" in s.template_fields and "db_path" in s.template_fields
    assert s.stale_after == 3600 and s.on_stale == "reset" and s.fail_on_critical is True
    assert s.deferrable is False  # operators.default_deferrable is unset here
    assert sensor(db, stale_after=timedelta(minutes=2)).stale_after == 120


# ------------------------------------------------------------------------------------------- deferrable


def test_deferrable_execute_defers_with_the_trigger(db):
    s = sensor(db, deferrable=True, timeout=120, poke_interval=7, stale_after=90, on_stale="warn",
               thresholds={"stale_locks_warning": 2}, fail_on_critical=False)
    before = time.time()
    with pytest.raises(TaskDeferred) as exc:
        s.execute({})
    deferred = exc.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=120)
    trigger = deferred.trigger
    assert isinstance(trigger, ShardStatusTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_worktree.triggers.shard_status.ShardStatusTrigger"
    assert kwargs["run_id"] == RUN and kwargs["db_path"] == db and kwargs["shard_status_conn_id"] is None
    assert kwargs["poke_interval"] == 7 and kwargs["stale_after"] == 90 and kwargs["on_stale"] == "warn"
    assert kwargs["thresholds"]["stale_locks_warning"] == 2 and kwargs["fail_on_critical"] is False
    assert before + 120 <= kwargs["end_time"] <= time.time() + 120


def test_execute_complete(db):
    s = sensor(db)
    ok = s.execute_complete({}, {"status": "success", "message": "done", "summary": {"total": 3},
                                 "alerts": [{"metric": "stale_locks", "level": "warning", "message": "w"}],
                                 "stale_reset": [{"shard_id": "s-000"}]})
    assert ok == {"summary": {"total": 3}, "alerts": [{"metric": "stale_locks", "level": "warning",
                                                       "message": "w"}], "stale_reset": [{"shard_id": "s-000"}]}
    with pytest.raises(AirflowException, match="boom"):
        s.execute_complete({}, {"status": "error", "message": "boom"})
    with pytest.raises(AirflowSensorTimeout, match="too slow"):
        s.execute_complete({}, {"status": "timeout", "message": "too slow"})
    with pytest.raises(AirflowException, match="without an event"):
        s.execute_complete({}, None)
    with pytest.raises(AirflowException, match="Unexpected ShardStatusTrigger event status 'weird'"):
        s.execute_complete({}, {"status": "weird"})


# ---------------------------------------------------------------------------------------------- trigger


async def _first_event(trigger: ShardStatusTrigger, limit_s: float = 60):
    gen = trigger.run()
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout=limit_s)
    finally:
        await gen.aclose()


def trigger(db: str, **kw) -> ShardStatusTrigger:
    kw.setdefault("poke_interval", 0.1)
    return ShardStatusTrigger(run_id=RUN, db_path=db, **kw)


def test_trigger_serialize_round_trip(db):
    t = trigger(db, stale_after=30, on_stale="fail", thresholds={"stale_locks_warning": 1},
                fail_on_critical=False, end_time=1234.5, shard_status_conn_id="my_conn")
    classpath, kwargs = t.serialize()
    assert classpath == "airflow_provider_worktree.triggers.shard_status.ShardStatusTrigger"
    module, name = classpath.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    again = cls(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["thresholds"]["stale_locks_warning"] == 1 and kwargs["on_stale"] == "fail"


def test_trigger_yields_success_once_another_process_completes_the_shards(db):
    proc = start_completer(db, delay=0.5)
    event = asyncio.run(_first_event(trigger(db)))
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    p = event.payload
    assert p["status"] == "success", p
    assert p["summary"]["counts"]["completed"] == 3 and p["summary"]["cost_usd"] == pytest.approx(1.5)
    assert "all 3 shard(s)" in p["message"]
    assert isinstance(p["alerts"], list) and p["stale_reset"] == []


def test_trigger_resets_stale_then_succeeds(planted):
    proc = start_completer(planted, delay=0.5)  # claims whatever is pending, s-000 once it is reset
    event = asyncio.run(_first_event(trigger(planted, stale_after=60, on_stale="reset")))
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    p = event.payload
    assert p["status"] == "success", p
    assert [s["shard_id"] for s in p["stale_reset"]] == ["s-000"]
    row = ShardStore.open(planted).get_shard(RUN, "s-000")
    assert row["status"] == "completed" and row["worker_id"] == "completer-process"


def test_trigger_on_stale_fail_yields_error(planted):
    event = asyncio.run(_first_event(trigger(planted, stale_after=60, on_stale="fail")))
    assert event.payload["status"] == "error"
    assert "s-000" in event.payload["message"]
    assert status_of(planted, "s-000") == "running"


def test_trigger_critical_yields_error_with_alerts(db):
    proc = start_completer(db, delay=0, fail=("s-000", "s-001"))
    assert proc.wait(timeout=60) == 0
    event = asyncio.run(_first_event(trigger(db)))
    p = event.payload
    assert p["status"] == "error" and "Failed Tasks critical" in p["message"]
    assert any(a["metric"] == "failed_ratio" and a["level"] == "critical" for a in p["alerts"])
    relaxed = asyncio.run(_first_event(trigger(db, fail_on_critical=False)))
    assert relaxed.payload["status"] == "success"


def test_trigger_timeout(db):
    event = asyncio.run(_first_event(trigger(db, end_time=time.time() + 0.3)))
    assert event.payload["status"] == "timeout"
    assert "not all terminal" in event.payload["message"]


def test_trigger_unreadable_database_yields_error(tmp_path):
    event = asyncio.run(_first_event(trigger(str(tmp_path / "no" / "such" / "dir" / "x.db"), poke_interval=0.01)))
    assert event.payload["status"] == "error"
    assert "could not read the shard database" in event.payload["message"]
    assert "does not exist" in event.payload["message"]


def test_trigger_keeps_the_event_loop_free(db):
    """Store calls run in threads: a ticking coroutine keeps ticking while the trigger waits."""
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        event = await _first_event(trigger(db, end_time=time.time() + 1.0))
        task.cancel()
        return event, ticks

    event, ticks = asyncio.run(main())
    assert event.payload["status"] == "timeout"
    assert ticks > 20


# ------------------------------------------------------------------------------------------ connections


def test_sensor_and_trigger_through_a_connection(planted, monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_SHARDS_UNDER_TEST", json.dumps({"conn_type": "sqlite", "host": planted}))
    r = ShardStatusSensor(task_id="w", run_id=RUN, shard_status_conn_id="shards_under_test", stale_after=60,
                          on_stale="reset").poke({})
    assert [s["shard_id"] for s in r.xcom_value["stale_reset"]] == ["s-000"]
    proc = start_completer(planted, delay=0.3)
    event = asyncio.run(_first_event(ShardStatusTrigger(run_id=RUN, shard_status_conn_id="shards_under_test",
                                                        poke_interval=0.1)))
    assert proc.wait(timeout=60) == 0
    assert event.payload["status"] == "success", event.payload


def test_missing_connection_fails_clearly():
    with pytest.raises(ConfigurationError, match="connection 'no_such_shards' .* does not exist"):
        ShardStatusSensor(task_id="w", run_id=RUN, shard_status_conn_id="no_such_shards").poke({})


@pytest.mark.postgres
def test_sensor_on_postgres(pg_url):
    old = ShardStore.open(pg_url, clock=_utc(-600))
    old.register_shards(RUN, _shards(2))
    old.assign_shard(RUN, "dead-worker", shard_id="s-000")
    old.close()
    r = ShardStatusSensor(task_id="w", run_id=RUN, db_path=pg_url, stale_after=60, on_stale="reset").poke({})
    assert [s["shard_id"] for s in r.xcom_value["stale_reset"]] == ["s-000"]
    proc = start_completer(pg_url, delay=0.2)
    event = asyncio.run(_first_event(trigger(pg_url)))
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert event.payload["status"] == "success" and event.payload["summary"]["counts"]["completed"] == 2


def test_deferrable_sensor_keeps_worktree_root_and_the_trigger_checks_it(db, tmp_path):
    """Active worktrees and free disk are evaluated in the triggerer as in poke mode (issue: dropped before)."""
    root = tmp_path / "worktrees"
    for name in ("a", "b", "c"):  # three worktree checkouts: a .git file each
        (root / name).mkdir(parents=True)
        (root / name / ".git").write_text("gitdir: /elsewhere\n")
    s = sensor(db, deferrable=True, worktree_root=str(root),
               thresholds={"active_worktrees_warning": 1, "active_worktrees_critical": 2})
    with pytest.raises(TaskDeferred) as exc:
        s.execute({})
    classpath, kwargs = exc.value.trigger.serialize()
    assert kwargs["worktree_root"] == str(root)
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**{**kwargs, "poke_interval": 0.1})
    event = asyncio.run(_first_event(rebuilt))
    p = event.payload
    assert p["status"] == "error" and "Active Worktrees critical: 3 > 2" in p["message"], p
    assert any(a["metric"] == "disk_free_pct" for a in p["alerts"])
