"""The runbook's alert thresholds and their evaluation (levels, :class:`Thresholds`, :func:`evaluate`).

One place for these rules: the sensor, its trigger, the ``airflow-worktree`` command and the health DAG
all call :func:`evaluate` (or :func:`~airflow_provider_worktree.core.health.check.check_health`, which
collects the metrics (``metrics.py``), applies the stale-lock policy and evaluates in one go). Plain Python:
no Airflow import.

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
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from airflow_provider_worktree.core.errors import ConfigurationError

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
