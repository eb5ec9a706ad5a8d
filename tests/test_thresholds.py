"""The runbook's alert thresholds: levels at each boundary, overrides, metrics from a real shard database."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.health import (
    CRITICAL,
    METRICS,
    OK,
    WARNING,
    Alert,
    HealthCheck,
    Thresholds,
    Verdict,
    check_health,
    collect_metrics,
    evaluate,
    format_value,
    to_epoch,
    worst_level,
)

MB = 1024 * 1024


def _utc(delta_s: float = 0.0):
    """A store clock shifted ``delta_s`` seconds from now (negative: the past)."""
    return lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=delta_s)


def _shards(n: int, prefix: str = "s") -> list[dict]:
    return [{"shard_id": f"{prefix}-{i:03d}", "task": "todo", "files": [f"f{i}.py"]} for i in range(n)]


def _level(metric: str, value: float, **overrides) -> str:
    alerts = evaluate({metric: value}, Thresholds.from_dict(overrides) if overrides else None)
    assert len(alerts) == 1 and alerts[0].metric == metric
    return alerts[0].level


def test_defaults_are_the_runbook_table():
    t = Thresholds()
    assert t.levels("active_worktrees") == (20, 30)
    assert t.levels("task_duration_s") == (30 * 60, 60 * 60)
    assert t.levels("failed_ratio") == (0.05, 0.10)
    assert t.levels("disk_free_pct") == (20, 10)
    assert t.levels("db_size_bytes") == (100 * MB, 500 * MB)
    assert t.levels("stale_locks") == (5, 10)
    actions = {name: spec.action for name, spec in METRICS.items()}
    assert actions == {
        "active_worktrees": "Investigate stuck tasks",
        "task_duration_s": "Check for deadlocks",
        "failed_ratio": "Review error logs",
        "disk_free_pct": "Clean up worktrees",
        "db_size_bytes": "Archive old records",
        "stale_locks": "Manual intervention",
    }


@pytest.mark.parametrize(
    "metric, ok, warning, critical",
    [
        # strict comparisons, as in the runbook: "> 20" means 20 is fine
        ("active_worktrees", [0, 20], [21, 30], [31, 500]),
        ("task_duration_s", [0, 1800], [1800.5, 3600], [3600.5, 86400]),
        ("failed_ratio", [0.0, 0.05], [0.051, 0.10], [0.1001, 1.0]),
        ("db_size_bytes", [0, 100 * MB], [100 * MB + 1, 500 * MB], [500 * MB + 1, 10_000 * MB]),
        ("stale_locks", [0, 5], [6, 10], [11, 100]),
        # "less than" metric
        ("disk_free_pct", [100, 20], [19.9, 10], [9.99, 0]),
    ],
)
def test_each_metric_crosses_each_level(metric, ok, warning, critical):
    for v in ok:
        assert _level(metric, v) == OK, (metric, v)
    for v in warning:
        assert _level(metric, v) == WARNING, (metric, v)
    for v in critical:
        assert _level(metric, v) == CRITICAL, (metric, v)


def test_alert_carries_value_threshold_action_and_message():
    (alert,) = evaluate({"stale_locks": 11})
    assert alert == Alert(metric="stale_locks", value=11, level=CRITICAL, threshold=10,
                          action="Manual intervention", label="Stale Locks", message=alert.message)
    assert "Stale Locks critical" in alert.message and "Manual intervention" in alert.message
    (alert,) = evaluate({"disk_free_pct": 15.0})
    assert (alert.level, alert.threshold, alert.action) == (WARNING, 20, "Clean up worktrees")
    (alert,) = evaluate({"failed_ratio": 0.0})
    assert (alert.level, alert.threshold, alert.action) == (OK, 0.05, "")
    assert Alert.from_dict(alert.to_dict()) == alert


def test_missing_and_unknown_metrics_are_skipped_in_table_order():
    alerts = evaluate({"stale_locks": 1, "failed_ratio": None, "bogus": 99, "active_worktrees": 3,
                       "task_duration_s": float("nan")})
    assert [a.metric for a in alerts] == ["active_worktrees", "stale_locks"]


def test_worst_level():
    assert worst_level([]) == OK
    assert worst_level(evaluate({"stale_locks": 1, "active_worktrees": 25})) == WARNING
    assert worst_level(evaluate({"stale_locks": 11, "active_worktrees": 25})) == CRITICAL
    assert worst_level([{"level": "warning"}, {"level": "ok"}]) == WARNING


def test_overrides_flat_and_nested():
    t = Thresholds.from_dict({"stale_locks_warning": 0, "stale_locks_critical": 2})
    assert t.levels("stale_locks") == (0, 2)
    assert t.levels("failed_ratio") == (0.05, 0.10)  # others keep the runbook's
    assert evaluate({"stale_locks": 1}, t)[0].level == WARNING
    assert evaluate({"stale_locks": 3}, {"stale_locks": {"warning": 0, "critical": 2}})[0].level == CRITICAL
    assert Thresholds.from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"stale_lock_warning": 1}, "unknown threshold(s) stale_lock_warning"),
        ({"stale_locks_warning": 20}, "warning 20 is above critical 10"),
        ({"disk_free_pct_warning": 5}, "give warning >= critical"),
        ({"stale_locks_warning": "five"}, "is not a number"),
        ("stale=5", "thresholds must be a dict"),
    ],
)
def test_bad_overrides_name_the_problem(overrides, needle):
    with pytest.raises(ConfigurationError) as err:
        Thresholds.from_dict(overrides)
    assert needle in str(err.value)


def test_format_value_and_to_epoch():
    assert format_value("task_duration_s", 90) == "90s"
    assert format_value("task_duration_s", 1800) == "30.0 min"
    assert format_value("failed_ratio", 0.125) == "12.5%"
    assert format_value("db_size_bytes", 150 * MB) == "150.0MB"
    assert format_value("stale_locks", 3) == "3"
    assert to_epoch("1970-01-01 00:01:00.000000") == 60.0
    assert to_epoch("1970-01-01T00:01:00+00:00") == 60.0
    assert to_epoch(dt.datetime(1970, 1, 1, 0, 2)) == 120.0
    assert to_epoch(None) is None and to_epoch("garbage") is None


# ----------------------------------------------------------------------------------- real databases


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "shard_status.db")


def test_collect_metrics_from_a_real_store(db, tmp_path):
    # Two hours ago: a worker claimed one shard and died.
    old = ShardStore.open(db, clock=_utc(-7200))
    old.register_shards("run-a", _shards(10))
    old.assign_shard("run-a", "dead-worker", shard_id="s-000")
    old.close()
    store = ShardStore.open(db)
    for i in range(1, 8):
        lease = store.assign_shard("run-a", "w1", shard_id=f"s-{i:03d}")
        store.complete(lease, branch=f"b{i}")
    lease = store.assign_shard("run-a", "w1", shard_id="s-008")
    store.fail(lease, "boom")
    store.assign_shard("run-a", "w2", shard_id="s-009")  # running, fresh
    store.register_shards("run-b", _shards(3, "t"))  # another run, all pending

    m = collect_metrics(store, run_id="run-a", stale_after_s=3600)
    assert m["total"] == 10 and m["failed"] == 1
    assert m["failed_ratio"] == pytest.approx(0.1)
    assert m["stale_locks"] == 1
    assert 7100 < m["task_duration_s"] < 7400  # the dead worker's shard
    assert m["db_size_bytes"] > 0
    assert "active_worktrees" not in m and "disk_free_pct" not in m

    # The whole database: 1 failed of 13.
    m_all = collect_metrics(store, stale_after_s=3600)
    assert m_all["total"] == 13 and m_all["failed_ratio"] == pytest.approx(1 / 13)
    # With a longer stale threshold the dead worker's 2-hour-old lease is not stale.
    assert collect_metrics(store, run_id="run-a", stale_after_s=7200 + 600)["stale_locks"] == 0

    levels = {a.metric: a.level for a in evaluate(m)}
    assert levels == {"task_duration_s": CRITICAL, "failed_ratio": WARNING, "db_size_bytes": OK,
                      "stale_locks": OK}


def test_collect_metrics_worktree_root(tmp_path):
    root = tmp_path / "worktrees"
    for name in ("run1/shard-a", "run1/shard-b", "shard-c"):
        (root / name).mkdir(parents=True)
        (root / name / ".git").write_text("gitdir: /elsewhere\n")
    (root / "run1" / "not-a-worktree").mkdir()
    m = collect_metrics(worktree_root=root)
    assert m["active_worktrees"] == 3
    assert 0 < m["disk_free_pct"] <= 100
    # A root that does not exist yet: no worktrees; disk measured on the nearest existing parent.
    m = collect_metrics(worktree_root=tmp_path / "missing" / "deeper")
    assert m["active_worktrees"] == 0 and 0 < m["disk_free_pct"] <= 100


def test_active_worktrees_threshold_through_worktree_root(tmp_path):
    root = tmp_path / "wt"
    for i in range(21):
        (root / f"s{i}").mkdir(parents=True)
        (root / f"s{i}" / ".git").write_text("gitdir: x\n")
    alerts = {a.metric: a for a in evaluate(collect_metrics(worktree_root=root))}
    assert alerts["active_worktrees"].level == WARNING
    assert alerts["active_worktrees"].action == "Investigate stuck tasks"


def _planted(db: str, age_s: float = 600) -> ShardStore:
    old = ShardStore.open(db, clock=_utc(-age_s))
    old.register_shards("run", _shards(3))
    old.assign_shard("run", "dead", shard_id="s-000")
    old.close()
    return ShardStore.open(db)


@pytest.mark.parametrize("on_stale", ["warn", "fail"])
def test_check_health_reports_stale_without_touching(db, on_stale):
    store = _planted(db)
    check = check_health(store, "run", stale_after_s=60, on_stale=on_stale)
    assert [s["shard_id"] for s in check.stale] == ["s-000"]
    assert check.stale_reset == []
    assert store.get_shard("run", "s-000")["status"] == "running"
    assert check.metrics["stale_locks"] == 1
    assert not check.all_terminal


def test_check_health_reset_puts_stale_back_to_pending(db):
    store = _planted(db)
    check = check_health(store, "run", stale_after_s=60, on_stale="reset",
                         thresholds={"stale_locks_warning": 0})
    assert [s["shard_id"] for s in check.stale_reset] == ["s-000"]
    assert store.get_shard("run", "s-000")["status"] == "pending"
    assert check.metrics["stale_locks"] == 0  # measured after the reset
    assert check.level == OK
    data = check.to_dict()
    assert data["summary"]["counts"]["pending"] == 3 and data["level"] == OK


def test_check_health_all_terminal_and_critical(db):
    store = ShardStore.open(db)
    store.register_shards("run", _shards(4))
    for _ in range(4):
        lease = store.assign_shard("run", "w")
        store.complete(lease) if lease.shard_id != "s-003" else store.fail(lease, "nope")
    check = check_health(store, "run")
    assert check.all_terminal and check.total == 4
    assert check.level == CRITICAL  # 25% failed
    assert "Failed Tasks critical" in check.critical_message()
    # No shards registered: not terminal (the sensor keeps waiting).
    assert not check_health(store, "other-run").all_terminal


def test_check_health_rejects_bad_on_stale(db):
    with pytest.raises(ConfigurationError, match="on_stale='ignore' is not supported"):
        check_health(ShardStore.open(db), "run", on_stale="ignore")


# ------------------------------------------------------------------------------------------- verdict


def _check(counts: dict[str, int], *, stale=(), stale_reset=(), alerts=(), run_id="run") -> HealthCheck:
    return HealthCheck(run_id=run_id, summary={}, status_counts=dict(counts), total=sum(counts.values()),
                       stale=[{"shard_id": s} for s in stale], stale_reset=[{"shard_id": s} for s in stale_reset],
                       alerts=list(alerts), stale_after_s=3600)


def _alert(metric: str, value: float) -> Alert:
    return {a.metric: a for a in evaluate({metric: value})}[metric]


def test_verdict_waiting_and_success():
    assert _check({}).verdict("reset") == Verdict("waiting", "No shards registered for run run yet.")
    v = _check({"completed": 1, "running": 2}).verdict("reset")
    assert v == Verdict("waiting", "Run run: 1 completed, 2 running")
    v = _check({"completed": 3, "failed": 1}).verdict("reset", fail_on_critical=False)
    assert v.status == "success" and v.message == "all 4 shard(s) of run run are terminal: 3 completed, 1 failed"


def test_verdict_stale_fail_is_an_error_naming_the_shards_and_the_fix():
    v = _check({"running": 2}, stale=["s-000", "s-001"]).verdict("fail")
    assert v.status == "error"
    assert v.message == ("2 stale lease(s) in run run (no heartbeat for 3600s): s-000, s-001. Reset them with "
                         "`airflow-worktree reset-stale --run-id run` or use on_stale='reset'.")
    # even when every shard is otherwise terminal, the stale lease decides first
    assert _check({"completed": 1}, stale=["s-000"]).verdict("fail").status == "error"


def test_verdict_stale_warn_and_reset_only_warn():
    v = _check({"running": 1}, stale=["s-000"]).verdict("warn")
    assert v.status == "waiting" and v.warnings == ("1 stale lease(s) in run run: s-000",)
    v = _check({"pending": 1}, stale=["s-000"], stale_reset=["s-000"]).verdict("reset")
    assert v.status == "waiting" and v.warnings == ("Reset 1 stale shard(s) of run run to pending: s-000",)


def test_verdict_critical_fails_only_with_fail_on_critical_and_alerts_are_warnings():
    crit, warn, ok = _alert("failed_ratio", 0.5), _alert("stale_locks", 6), _alert("db_size_bytes", 1)
    check = _check({"completed": 1, "failed": 1}, alerts=[crit, warn, ok])
    v = check.verdict("reset", fail_on_critical=True)
    assert v.status == "error" and v.message == check.critical_message()
    assert "Failed Tasks critical: 50.0% > 10.0%" in v.message
    assert v.warnings == (crit.message, warn.message)  # ok alerts are not warnings
    assert check.verdict("reset", fail_on_critical=False).status == "success"
    # a warning level never fails
    assert _check({"running": 1}, alerts=[warn]).verdict("fail").status == "waiting"


def test_verdict_rejects_bad_on_stale():
    with pytest.raises(ConfigurationError, match="on_stale='ignore' is not supported"):
        _check({}).verdict("ignore")


def test_verdict_from_a_real_store(db):
    store = _planted(db)
    check = check_health(store, "run", stale_after_s=60, on_stale="fail")
    v = check.verdict("fail")
    assert v.status == "error" and "(no heartbeat for 60s): s-000" in v.message
    check = check_health(store, "run", stale_after_s=60, on_stale="reset")
    assert check.verdict("reset").warnings[0] == "Reset 1 stale shard(s) of run run to pending: s-000"


def test_thresholds_module_needs_no_airflow():
    code = (
        "import sys; sys.modules['airflow'] = None\n"  # any `import airflow` now raises ImportError
        "from airflow_provider_worktree.core.health import evaluate, Thresholds\n"
        "print(evaluate({'stale_locks': 6})[0].level)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "warning"


def test_active_worktrees_from_a_real_worktree_manager(tmp_path, git_repo):
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    root = tmp_path / "worktrees"
    manager = WorktreeManager(git_repo, worktree_root=root)
    assert collect_metrics(manager=manager)["active_worktrees"] == 0
    manager.create_worktree("run-1", "shard-a")
    manager.create_worktree("run-1", "shard-b")
    # A worktree the user made by hand, outside the root, is not a shard worktree.
    subprocess.run(["git", "worktree", "add", "-q", str(tmp_path / "mine"), "-b", "mine"], cwd=git_repo,
                   check=True)
    m = collect_metrics(manager=manager)
    assert m["active_worktrees"] == 2
    assert 0 < m["disk_free_pct"] <= 100  # measured on the manager's worktree root
    assert evaluate(m, {"active_worktrees_warning": 1, "active_worktrees_critical": 5})[0].level == WARNING
