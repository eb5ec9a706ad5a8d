"""worktree_health: the runbook's monitoring and janitor work, on a schedule.

prune_worktrees (leftover worktrees older than a day whose owner is gone; uncommitted work saved on a
salvage branch first) -> archive_database (only when the ``archive_older_than_days`` Param is set and the
database is past its Database Size warning threshold: shards of finished runs older than that move to the
archive, then the file is vacuumed) -> check_health (stale locks reclaimed, the runbook's alert metrics
logged and sent through Airflow's metrics as ``worktree.<metric>``; fails when a critical threshold is
crossed).

Parsing does no git or database work. ``WORKTREE_HEALTH_SCHEDULE`` (default ``@hourly``) and
``WORKTREE_REPO`` (the default of the ``repo`` Param) are read at parse time. Every Param may stay empty in
the trigger form: without a repository (and no ``git_worktree_default`` connection) the worktree parts are
skipped and the database checks still run.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="worktree_health",
    description="Stale shard locks, leftover worktrees and the runbook's alert thresholds",
    schedule=os.environ.get("WORKTREE_HEALTH_SCHEDULE", "@hourly"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["worktree", "health"],
    params={
        # type null|string: the trigger form must not mark it required (an empty repo skips the worktree parts)
        "repo": Param(os.environ.get("WORKTREE_REPO") or None, type=["null", "string"],
                      description="Repository whose worktrees to prune; empty: the git_worktree_default "
                                  "connection, or skip the worktree checks"),
        "worktree_root": Param(None, type=["null", "string"], pattern="^$|^/",
                               description="An absolute directory; empty: [worktree] worktree_root, else "
                                           "$AIRFLOW_HOME/worktrees (where the maintain tasks put them)"),
        "prune_older_than_hours": Param(24, type="number", minimum=0),
        "dry_run": Param(False, type="boolean"),
        "stale_after_s": Param(3600, type="number", minimum=1),
        "on_stale": Param("reset", type="string", enum=["reset", "warn", "fail"]),
        "thresholds": Param({}, type="object", description="Overrides, e.g. {\"stale_locks_warning\": 2}"),
        "archive_older_than_days": Param(
            None, type=["null", "number"], minimum=0,
            description="Empty: never archive. A number: when the shard database is past its Database Size "
                        "warning threshold, move shards of finished runs older than this many days to the "
                        "archive and vacuum (airflow-worktree db archive --vacuum)"),
    },
    doc_md=__doc__,
) as dag:

    def _manager(params: dict):
        """The repository's WorktreeManager, or None when no repository is configured."""
        from airflow_provider_worktree.core.errors import ConfigurationError
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook

        hook = GitWorktreeHook(repo=params.get("repo") or None, worktree_root=params.get("worktree_root") or None)
        try:
            return hook.get_manager()
        except ConfigurationError as exc:
            if params.get("repo"):
                raise
            print(f"No repository configured, worktrees not checked: {exc}")
            return None

    @task
    def prune_worktrees(params: dict | None = None) -> dict:
        """The runbook's "Safe Cleanup Procedures" in one call (dry run lists without changing anything)."""
        from airflow_provider_worktree.version_compat import AirflowSkipException

        manager = _manager(params)
        if manager is None:
            raise AirflowSkipException("no repository configured (Param repo or connection git_worktree_default)")
        report = manager.prune(older_than=params["prune_older_than_hours"] * 3600, dry_run=params["dry_run"])
        for action in report.actions:
            print(action)
        return {k: v for k, v in report.to_dict().items() if k != "actions"}

    @task(trigger_rule="all_done")
    def archive_database(params: dict | None = None) -> dict:
        """The runbook's "Database Size > 100MB: Archive old records", when the DAG author asked for it."""
        from airflow_provider_worktree.core.health import Thresholds, format_value
        from airflow_provider_worktree.core.store import maintenance as dbmaint
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
        from airflow_provider_worktree.version_compat import AirflowSkipException

        days = params.get("archive_older_than_days")
        if days is None or days == "":
            raise AirflowSkipException("archive_older_than_days is not set: archiving is off")
        hook = ShardStatusHook()
        size = hook.get_store().db_size_bytes()
        warning = Thresholds.from_dict(params.get("thresholds") or None).levels("db_size_bytes")[0]
        if size < warning:
            raise AirflowSkipException(f"database size {format_value('db_size_bytes', size)} is below the "
                                       f"warning threshold {format_value('db_size_bytes', warning)}: nothing to do")
        result = dbmaint.archive(hook.target, float(days) * 86400)
        result["vacuum"] = dbmaint.vacuum(hook.target) if result["rows"] else None
        print(f"Archived {result['rows']} shard row(s) of {len(result['runs'])} run(s) to {result['archive']}")
        return result

    @task(trigger_rule="all_done")
    def check_health(params: dict | None = None) -> dict:
        """Reclaim stale locks, evaluate the runbook's thresholds, emit metrics, fail on critical."""
        from airflow_provider_worktree.core.health import CRITICAL, METRICS, check_health
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
        from airflow_provider_worktree.version_compat import Stats

        manager = _manager(params)
        hc = check_health(
            ShardStatusHook().get_store(), None, stale_after_s=params["stale_after_s"],
            on_stale=params["on_stale"], thresholds=params["thresholds"] or None, manager=manager,
            worktree_root=params.get("worktree_root") or None,
        )
        for name, value in hc.metrics.items():
            if name in METRICS and isinstance(value, (int, float)):
                Stats.gauge(f"worktree.{name}", value)
        for alert in hc.alerts:
            print(f"[{alert.level.upper()}] {alert.message}")
        result = hc.to_dict()
        if hc.level == CRITICAL or (params["on_stale"] == "fail" and hc.stale):
            raise RuntimeError(hc.critical_message() if hc.level == CRITICAL else
                               f"{len(hc.stale)} stale lock(s) and on_stale=fail: {hc.stale[:5]}")
        return result

    prune_worktrees() >> archive_database() >> check_health()
