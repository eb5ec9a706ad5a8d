"""Run health and reporting, bottom up: ``thresholds`` (levels, the runbook's limits, evaluation), ``metrics``
(what they are evaluated on), ``check`` (the one health check the sensor, its trigger, the CLI and the UI
share) and ``report`` (the run report).

May import: ``core.errors``, ``core.sandbox``, ``core.git``, ``core.store`` and ``core.ratelimit``. Plain Python,
no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Alert": "airflow_provider_worktree.core.health.thresholds",
    "CRITICAL": "airflow_provider_worktree.core.health.thresholds",
    "HealthCheck": "airflow_provider_worktree.core.health.check",
    "LEVELS": "airflow_provider_worktree.core.health.thresholds",
    "METRICS": "airflow_provider_worktree.core.health.thresholds",
    "MetricSpec": "airflow_provider_worktree.core.health.thresholds",
    "OK": "airflow_provider_worktree.core.health.thresholds",
    "ON_STALE_CHOICES": "airflow_provider_worktree.core.health.thresholds",
    "Thresholds": "airflow_provider_worktree.core.health.thresholds",
    "VERDICT_STATUSES": "airflow_provider_worktree.core.health.check",
    "Verdict": "airflow_provider_worktree.core.health.check",
    "WARNING": "airflow_provider_worktree.core.health.thresholds",
    "build_report": "airflow_provider_worktree.core.health.report",
    "check_health": "airflow_provider_worktree.core.health.check",
    "collect_metrics": "airflow_provider_worktree.core.health.metrics",
    "evaluate": "airflow_provider_worktree.core.health.thresholds",
    "format_value": "airflow_provider_worktree.core.health.thresholds",
    "jsonable": "airflow_provider_worktree.core.health.metrics",
    "merge_branches": "airflow_provider_worktree.core.health.report",
    "render_markdown": "airflow_provider_worktree.core.health.report",
    "to_epoch": "airflow_provider_worktree.core.health.metrics",
    "validate_on_stale": "airflow_provider_worktree.core.health.thresholds",
    "watch_once": "airflow_provider_worktree.core.health.check",
    "worst_level": "airflow_provider_worktree.core.health.thresholds",
    "write_report": "airflow_provider_worktree.core.health.report",
})
