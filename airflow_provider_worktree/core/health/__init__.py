"""Run health and reporting: alert thresholds, the metrics they read, the health check the sensor, the
trigger, the CLI and the UI share, and the run report.

May import: ``core.errors``, ``core.sandbox``, ``core.git`` and ``core.store``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Alert": "airflow_provider_worktree.core.health.thresholds",
    "CRITICAL": "airflow_provider_worktree.core.health.thresholds",
    "HealthCheck": "airflow_provider_worktree.core.health.thresholds",
    "LEVELS": "airflow_provider_worktree.core.health.thresholds",
    "METRICS": "airflow_provider_worktree.core.health.thresholds",
    "MetricSpec": "airflow_provider_worktree.core.health.thresholds",
    "OK": "airflow_provider_worktree.core.health.thresholds",
    "ON_STALE_CHOICES": "airflow_provider_worktree.core.health.thresholds",
    "Thresholds": "airflow_provider_worktree.core.health.thresholds",
    "VERDICT_STATUSES": "airflow_provider_worktree.core.health.thresholds",
    "Verdict": "airflow_provider_worktree.core.health.thresholds",
    "WARNING": "airflow_provider_worktree.core.health.thresholds",
    "build_report": "airflow_provider_worktree.core.health.report",
    "check_health": "airflow_provider_worktree.core.health.thresholds",
    "collect_metrics": "airflow_provider_worktree.core.health.thresholds",
    "evaluate": "airflow_provider_worktree.core.health.thresholds",
    "format_value": "airflow_provider_worktree.core.health.thresholds",
    "jsonable": "airflow_provider_worktree.core.health.thresholds",
    "merge_branches": "airflow_provider_worktree.core.health.report",
    "render_markdown": "airflow_provider_worktree.core.health.report",
    "to_epoch": "airflow_provider_worktree.core.health.thresholds",
    "validate_on_stale": "airflow_provider_worktree.core.health.thresholds",
    "worst_level": "airflow_provider_worktree.core.health.thresholds",
    "write_report": "airflow_provider_worktree.core.health.report",
})
