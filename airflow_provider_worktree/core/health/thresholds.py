"""The runbook's alert thresholds, their evaluation, and the metrics they are evaluated on.

One place for these rules: the sensor, its trigger, the ``airflow-worktree`` command and the health DAG
all call :func:`evaluate` (or :func:`check_health`, which collects, applies the stale-lock policy and
evaluates in one go). Plain Python: no Airflow import.

The runbook's table ("Monitoring and Alerts"), with how each metric is measured here:

=====================  ========  ========  ========================  =====================================
Metric                 Warning   Critical  Action                    Measured as
=====================  ========  ========  ========================  =====================================
Active Worktrees       > 20      > 30      Investigate stuck tasks   ``active_worktrees``: shard worktrees
                                                                     (the manager's list, or directories
                                                                     with a ``.git`` file under the root)
Task Duration          > 30 min  > 60 min  Check for deadlocks       ``task_duration_s``: age of the
                                                                     longest-running shard, in seconds
Failed Tasks           > 5%      > 10%     Review error logs         ``failed_ratio``: failed / all shards
                                                                     (of the run, or of the database)
Disk Space (/tmp)      < 20%     < 10%     Clean up worktrees        ``disk_free_pct``: free space on the
                                                                     worktree root's filesystem, percent
Database Size          > 100MB   > 500MB   Archive old records       ``db_size_bytes`` (MB = 1024 * 1024)
Stale Locks            > 5       > 10      Manual intervention       ``stale_locks``: running shards whose
                                                                     lease is older than ``stale_after_s``
=====================  ========  ========  ========================  =====================================

Comparisons are strict, as in the runbook: 20 active worktrees is ok, 21 is a warning.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from airflow_provider_worktree.core.errors import ConfigurationError

__all__ = [
    "OK",
    "WARNING",
    "CRITICAL",
    "LEVELS",
    "ON_STALE_CHOICES",
    "METRICS",
    "MetricSpec",
    "Thresholds",
    "Alert",
    "HealthCheck",
    "Verdict",
    "VERDICT_STATUSES",
    "evaluate",
    "worst_level",
    "collect_metrics",
    "check_health",
    "validate_on_stale",
    "format_value",
    "to_epoch",
    "jsonable",
]

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
LEVELS = (OK, WARNING, CRITICAL)
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

#: What a sensor, trigger or health check does with stale leases (running shards whose worker stopped
#: heartbeating): ``reset`` puts them back to pending, ``fail`` fails the check, ``warn`` only reports.
ON_STALE_CHOICES = ("reset", "fail", "warn")

TERMINAL_STATUSES = ("completed", "failed")

MB = 1024 * 1024


@dataclass(frozen=True)
class MetricSpec:
    """How one runbook metric is compared: ``above`` (bigger is worse) or ``below`` (smaller is worse)."""

    name: str
    label: str
    direction: str  # "above" | "below"
    unit: str  # "count" | "seconds" | "ratio" | "percent" | "bytes"
    action: str


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("active_worktrees", "Active Worktrees", "above", "count", "Investigate stuck tasks"),
        MetricSpec("task_duration_s", "Task Duration", "above", "seconds", "Check for deadlocks"),
        MetricSpec("failed_ratio", "Failed Tasks", "above", "ratio", "Review error logs"),
        MetricSpec("disk_free_pct", "Disk Space", "below", "percent", "Clean up worktrees"),
        MetricSpec("db_size_bytes", "Database Size", "above", "bytes", "Archive old records"),
        MetricSpec("stale_locks", "Stale Locks", "above", "count", "Manual intervention"),
    )
}


@dataclass(frozen=True)
class Thresholds:
    """The runbook's thresholds; every field can be overridden (see :meth:`from_dict`).

    Units: durations in seconds, ``failed_ratio`` as a fraction (0.05 = 5%), disk free in percent,
    database size in bytes.
    """

    active_worktrees_warning: float = 20
    active_worktrees_critical: float = 30
    task_duration_s_warning: float = 30 * 60
    task_duration_s_critical: float = 60 * 60
    failed_ratio_warning: float = 0.05
    failed_ratio_critical: float = 0.10
    disk_free_pct_warning: float = 20
    disk_free_pct_critical: float = 10
    db_size_bytes_warning: float = 100 * MB
    db_size_bytes_critical: float = 500 * MB
    stale_locks_warning: float = 5
    stale_locks_critical: float = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigurationError(
                    f"threshold {f.name}={value!r} is not a number: give a number "
                    f"(durations in seconds, failed_ratio as a fraction like 0.05, database size in bytes)"
                )
        for name, spec in METRICS.items():
            warn, crit = self.levels(name)
            if spec.direction == "above" and warn > crit:
                raise ConfigurationError(
                    f"threshold {name}: warning {warn} is above critical {crit}; the warning level must be "
                    f"reached first, so give warning <= critical"
                )
            if spec.direction == "below" and warn < crit:
                raise ConfigurationError(
                    f"threshold {name}: warning {warn} is below critical {crit}; for a 'less than' metric "
                    f"give warning >= critical"
                )

    def levels(self, metric: str) -> tuple[float, float]:
        """``(warning, critical)`` for a metric name of :data:`METRICS`."""
        return getattr(self, f"{metric}_warning"), getattr(self, f"{metric}_critical")

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any] | None = None) -> "Thresholds":
        """Defaults with ``overrides`` applied.

        Accepts flat keys (``{"stale_locks_warning": 2}``) or one dict per metric
        (``{"stale_locks": {"warning": 2, "critical": 4}}``). Unknown keys are an error naming the known ones.
        """
        if overrides is None:
            return cls()
        if isinstance(overrides, Thresholds):
            return overrides
        if not isinstance(overrides, Mapping):
            raise ConfigurationError(
                f"thresholds must be a dict like {{'stale_locks_warning': 2}}, got {type(overrides).__name__}"
            )
        known = {f.name for f in fields(cls)}
        flat: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in METRICS and isinstance(value, Mapping):
                for level, level_value in value.items():
                    flat[f"{key}_{level}"] = level_value
            else:
                flat[key] = value
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown threshold(s) {', '.join(unknown)}: known thresholds are {', '.join(sorted(known))}"
            )
        return cls(**{**asdict(cls()), **flat})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Alert:
    """The evaluation of one metric. ``threshold`` is the level crossed (the warning level when ok)."""

    metric: str
    value: float
    level: str
    threshold: float
    action: str
    label: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Alert":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def format_value(metric: str, value: float | None) -> str:
    """A human reading of a metric value: minutes, percent, MB."""
    if value is None:
        return "n/a"
    unit = METRICS[metric].unit if metric in METRICS else "count"
    if unit == "seconds":
        return _format_seconds(value)
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "bytes":
        return f"{value / MB:.1f}MB" if value >= MB / 10 else f"{value / 1024:.0f}KB"
    return f"{value:g}"


def _format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def evaluate(metrics: Mapping[str, Any], thresholds: Thresholds | Mapping[str, Any] | None = None) -> list[Alert]:
    """One :class:`Alert` per known metric present in ``metrics`` (``None`` or missing: not evaluated).

    Alerts come in the runbook's table order; unknown keys in ``metrics`` are ignored.
    """
    th = Thresholds.from_dict(thresholds) if not isinstance(thresholds, Thresholds) else thresholds
    alerts: list[Alert] = []
    for name, spec in METRICS.items():
        value = metrics.get(name)
        if not _is_number(value):
            continue
        warn, crit = th.levels(name)
        if spec.direction == "above":
            level = CRITICAL if value > crit else WARNING if value > warn else OK
            sign = ">"
        else:
            level = CRITICAL if value < crit else WARNING if value < warn else OK
            sign = "<"
        crossed = crit if level == CRITICAL else warn
        if level == OK:
            message = f"{spec.label}: {format_value(name, value)} (warning {sign} {format_value(name, warn)})"
        else:
            message = (
                f"{spec.label} {level}: {format_value(name, value)} {sign} {format_value(name, crossed)}; "
                f"action: {spec.action}"
            )
        alerts.append(
            Alert(metric=name, value=value, level=level, threshold=crossed,
                  action=spec.action if level != OK else "", label=spec.label, message=message)
        )
    return alerts


def worst_level(alerts: Iterable[Alert | Mapping[str, Any]]) -> str:
    """The most severe level among ``alerts`` (dicts accepted); ``ok`` for none."""
    worst = OK
    for alert in alerts:
        level = alert["level"] if isinstance(alert, Mapping) else alert.level
        if _RANK.get(level, 0) > _RANK[worst]:
            worst = level
    return worst


def validate_on_stale(on_stale: str) -> str:
    if on_stale not in ON_STALE_CHOICES:
        raise ConfigurationError(
            f"on_stale={on_stale!r} is not supported: use one of {', '.join(ON_STALE_CHOICES)} "
            f"(reset: put stale shards back to pending; fail: fail the check; warn: only log them)"
        )
    return on_stale


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------

def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch for a datetime, an ISO-8601 / SQLite timestamp string or a number.

    Naive datetimes and strings without an offset are taken as UTC (SQLite's ``CURRENT_TIMESTAMP``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, tuples/sets as lists, dataclasses as dicts: XCom- and
    TriggerEvent-safe."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _status_counts(store: Any, run_id: str | None) -> tuple[dict[str, int], list[dict]]:
    shards = store.list_shards(run_id=run_id)
    counts: dict[str, int] = {}
    for shard in shards:
        counts[shard["status"]] = counts.get(shard["status"], 0) + 1
    return counts, shards


def _db_size_bytes(store: Any) -> int | None:
    for attr in ("db_size_bytes", "size_bytes", "database_size"):
        method = getattr(store, attr, None)
        if callable(method):
            try:
                size = method()
            except Exception:  # noqa: BLE001 - a metric we cannot read is a metric we skip
                return None
            return int(size) if size is not None else None
    path = _sqlite_path(store)
    if path is None:
        return None
    total = 0
    for suffix in ("", "-wal", "-journal"):
        try:
            total += os.path.getsize(f"{path}{suffix}")
        except OSError:
            pass
    return total or None


def _sqlite_path(store: Any) -> str | None:
    for attr in ("path", "db_path", "sqlite_path"):
        value = getattr(store, attr, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            return str(value)
    target = getattr(store, "target", None) or getattr(store, "url", None)
    if isinstance(target, str):
        if target.startswith("sqlite:///"):
            return target[len("sqlite:///") - 1:] if target.startswith("sqlite:////") else target[len("sqlite:///"):]
        if "://" not in target:
            return target
    return None


def _existing_parent(path: Path) -> Path | None:
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _disk_free_pct(path: str | os.PathLike) -> float | None:
    existing = _existing_parent(Path(path))
    if existing is None:
        return None
    usage = shutil.disk_usage(existing)
    if not usage.total:
        return None
    return usage.free / usage.total * 100.0


def _count_worktrees_under(root: str | os.PathLike) -> int:
    """Worktree checkouts (directories holding a ``.git`` file) at most two levels under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return 0
    count = 0
    for first in root.iterdir():
        if not first.is_dir():
            continue
        if (first / ".git").is_file():
            count += 1
            continue
        try:
            count += sum(1 for second in first.iterdir() if second.is_dir() and (second / ".git").is_file())
        except OSError:
            continue
    return count


def _active_worktrees_from_manager(manager: Any) -> int:
    """Shard worktrees of the manager: the ones under its worktree root (``managed``), else every linked
    worktree (all but the main one)."""
    count = 0
    for item in manager.list_worktrees():
        get = item.get if isinstance(item, Mapping) else (lambda k, _i=item: getattr(_i, k, None))
        managed = get("managed")
        if managed is not None:
            count += bool(managed)
        elif not get("is_main"):
            count += 1
    return count


def collect_metrics(
    store: Any = None,
    run_id: str | None = None,
    worktree_root: str | os.PathLike | None = None,
    manager: Any = None,
    stale_after_s: float = 3600,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Gather what is available of the runbook's metrics.

    From the ``store`` (a :class:`~airflow_provider_worktree.core.store.shards.ShardStore`): ``stale_locks``,
    ``failed_ratio`` (with ``failed``/``total`` counts), ``task_duration_s`` (longest running shard; 0 when
    none runs), ``db_size_bytes``. From the ``manager`` (a ``WorktreeManager``) or ``worktree_root``:
    ``active_worktrees`` and ``disk_free_pct``. Metrics that cannot be measured are left out (or ``None``).
    """
    now = time.time() if now is None else now
    metrics: dict[str, Any] = {}
    if store is not None:
        counts, shards = _status_counts(store, run_id)
        total = sum(counts.values())
        failed = counts.get("failed", 0)
        metrics["total"] = total
        metrics["failed"] = failed
        metrics["status_counts"] = counts
        metrics["failed_ratio"] = (failed / total) if total else None
        longest = 0.0
        for shard in shards:
            if shard.get("status") != "running":
                continue
            started = to_epoch(shard.get("started_at"))
            if started is not None:
                longest = max(longest, now - started)
        metrics["task_duration_s"] = longest
        metrics["stale_locks"] = len(store.stale_leases(stale_after_s, run_id=run_id))
        metrics["db_size_bytes"] = _db_size_bytes(store)
    root = worktree_root
    if root is None and manager is not None:
        root = getattr(manager, "worktree_root", None)
    if manager is not None:
        metrics["active_worktrees"] = _active_worktrees_from_manager(manager)
    elif root is not None:
        metrics["active_worktrees"] = _count_worktrees_under(root)
    if root is not None:
        metrics["disk_free_pct"] = _disk_free_pct(root)
    return metrics


#: The outcomes of :meth:`HealthCheck.verdict`.
VERDICT_STATUSES = ("error", "success", "waiting")


@dataclass(frozen=True)
class Verdict:
    """What a waiter (the sensor, its trigger) makes of one :class:`HealthCheck`.

    ``status``: ``error`` (stop and fail, ``message`` says why), ``success`` (every shard is terminal) or
    ``waiting`` (look again later). ``warnings``: lines to log at warning level, in order, whatever the status
    (stale shards reset or only reported, thresholds crossed).
    """

    status: str
    message: str
    warnings: tuple[str, ...] = ()


@dataclass
class HealthCheck:
    """One look at a run: its shards, stale leases (and what was done with them), metrics and alerts."""

    run_id: str | None
    summary: dict[str, Any]
    status_counts: dict[str, int]
    total: int
    stale: list[dict[str, Any]] = field(default_factory=list)
    stale_reset: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    #: The ``stale_after_s`` the stale leases were found with (for messages); None when unknown.
    stale_after_s: float | None = None

    @property
    def all_terminal(self) -> bool:
        """Every shard of the run is completed or failed (and there is at least one shard)."""
        return self.total > 0 and all(status in TERMINAL_STATUSES for status in self.status_counts)

    @property
    def level(self) -> str:
        return worst_level(self.alerts)

    @property
    def problems(self) -> list[Alert]:
        return [a for a in self.alerts if a.level != OK]

    def critical_message(self) -> str:
        crit = [a.message for a in self.alerts if a.level == CRITICAL]
        return f"critical threshold crossed for run {self.run_id or '(all runs)'}: " + "; ".join(crit)

    def status_text(self) -> str:
        """The shard counts by status, e.g. ``"2 completed, 1 running"``."""
        return ", ".join(f"{n} {s}" for s, n in sorted(self.status_counts.items()))

    def verdict(self, on_stale: str, fail_on_critical: bool = True) -> Verdict:
        """Decide what a waiter does after this look, in this order:

        1. stale leases and ``on_stale == "fail"``: ``error`` (naming them and how to reclaim them);
        2. a critical threshold crossed and ``fail_on_critical``: ``error`` (:meth:`critical_message`);
        3. every shard completed or failed: ``success``;
        4. else ``waiting``.

        ``warnings`` holds, whatever the status: the stale shards that were reset (``on_stale="reset"``) or
        only reported (``"warn"``), then each alert above ``ok``.
        """
        validate_on_stale(on_stale)
        run = self.run_id or "(all runs)"
        warnings: list[str] = []
        if self.stale_reset:
            warnings.append(f"Reset {len(self.stale_reset)} stale shard(s) of run {run} to pending: "
                            + ", ".join(s["shard_id"] for s in self.stale_reset))
        stale_ids = ", ".join(s["shard_id"] for s in self.stale)
        if self.stale and on_stale == "warn":
            warnings.append(f"{len(self.stale)} stale lease(s) in run {run}: {stale_ids}")
        warnings.extend(alert.message for alert in self.problems)
        if self.stale and on_stale == "fail":
            heartbeat = f" (no heartbeat for {self.stale_after_s:g}s)" if self.stale_after_s is not None else ""
            hint = f" --run-id {self.run_id}" if self.run_id else ""
            return Verdict("error", f"{len(self.stale)} stale lease(s) in run {run}{heartbeat}: {stale_ids}. "
                                    f"Reset them with `airflow-worktree reset-stale{hint}` or use on_stale='reset'.",
                           tuple(warnings))
        if fail_on_critical and self.level == CRITICAL:
            return Verdict("error", self.critical_message(), tuple(warnings))
        if self.all_terminal:
            return Verdict("success", f"all {self.total} shard(s) of run {run} are terminal: {self.status_text()}",
                           tuple(warnings))
        if self.total == 0:
            return Verdict("waiting", f"No shards registered for run {run} yet.", tuple(warnings))
        return Verdict("waiting", f"Run {run}: {self.status_text()}", tuple(warnings))

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "run_id": self.run_id,
            "summary": self.summary,
            "status_counts": self.status_counts,
            "total": self.total,
            "all_terminal": self.all_terminal,
            "stale": self.stale,
            "stale_reset": self.stale_reset,
            "metrics": {k: v for k, v in self.metrics.items() if k in METRICS},
            "alerts": [a.to_dict() for a in self.alerts],
            "level": self.level,
        })


def _shard_brief(shard: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "shard_id", "status", "worker_id", "started_at", "heartbeat_at", "updated_at", "attempt")
    return jsonable({k: shard[k] for k in keys if k in shard})


def check_health(
    store: Any,
    run_id: str | None = None,
    *,
    stale_after_s: float = 3600,
    on_stale: str = "warn",
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    worktree_root: str | os.PathLike | None = None,
    manager: Any = None,
) -> HealthCheck:
    """Look at a run once: find stale leases, reset them when ``on_stale == "reset"`` (``fail`` and ``warn``
    only report them; the caller decides), then collect the metrics and evaluate the thresholds."""
    validate_on_stale(on_stale)
    th = Thresholds.from_dict(thresholds) if not isinstance(thresholds, Thresholds) else thresholds
    stale = [_shard_brief(s) for s in store.stale_leases(stale_after_s, run_id=run_id)]
    stale_reset: list[dict[str, Any]] = []
    if stale and on_stale == "reset":
        stale_reset = [_shard_brief(s) for s in store.reset_stale(stale_after_s, run_id=run_id)]
    metrics = collect_metrics(store, run_id=run_id, worktree_root=worktree_root, manager=manager,
                              stale_after_s=stale_after_s)
    summary = jsonable(store.summary(run_id=run_id))
    return HealthCheck(
        run_id=run_id,
        summary=summary if isinstance(summary, dict) else {"summary": summary},
        status_counts=dict(metrics.get("status_counts", {})),
        total=int(metrics.get("total", 0)),
        stale=stale,
        stale_reset=stale_reset,
        metrics=metrics,
        alerts=evaluate(metrics, th),
        stale_after_s=float(stale_after_s),
    )
