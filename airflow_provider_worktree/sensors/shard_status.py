"""``ShardStatusSensor``: wait for a run's shards, reclaim stale leases, apply the runbook's thresholds."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.health import ON_STALE_CHOICES, Thresholds, watch_once
from airflow_provider_worktree.triggers.shard_status import ShardStatusTrigger, open_shard_store
from airflow_provider_worktree.version_compat import AirflowException, AirflowSensorTimeout, conf

if TYPE_CHECKING:
    from airflow.sdk import Context

_EVENT_STATUSES = ("success", "error", "timeout")


class ShardStatusSensor(BaseSensorOperator):
    """Wait until every shard of a run is completed or failed.

    Each poke reads the run's shards, handles stale leases (running shards whose worker stopped
    heartbeating for ``stale_after`` seconds) as ``on_stale`` says, and evaluates the runbook's alert
    thresholds (stale locks, failed ratio, task duration, database size; plus active worktrees and disk
    space when ``worktree_root`` is given). Warnings are logged; a critical level fails the task when
    ``fail_on_critical``.

    The XCom value is ``{"summary": ..., "alerts": [...], "stale_reset": [...]}``.

    :param run_id: The run whose shards are watched (templated; default: this DAG run's id).
    :param shard_status_conn_id: Connection of the shard database (``None``: ``shard_status_default`` if it
        exists, else ``$AIRFLOW_HOME/shard_status.db``).
    :param db_path: An SQLite file used instead of the connection (templated).
    :param stale_after: Seconds without a heartbeat after which a running shard is stale (runbook: 1 h).
    :param on_stale: ``reset`` (back to pending, another worker picks it up), ``fail`` (fail the task) or
        ``warn`` (log only).
    :param thresholds: Overrides of the runbook thresholds, e.g. ``{"stale_locks_warning": 2}``.
    :param fail_on_critical: Fail the task when a critical threshold is crossed.
    :param worktree_root: Optional worktree directory, to also evaluate active worktrees and free disk.
    :param deferrable: Wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("run_id", "shard_status_conn_id", "db_path", "worktree_root")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        run_id: str = "{{ run_id }}",
        shard_status_conn_id: str | None = None,
        db_path: str | None = None,
        stale_after: float = 3600,
        on_stale: str = "reset",
        thresholds: dict[str, Any] | None = None,
        fail_on_critical: bool = True,
        worktree_root: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_stale not in ON_STALE_CHOICES:
            raise ConfigurationError(
                f"ShardStatusSensor(task_id={self.task_id!r}): on_stale={on_stale!r} is not supported; use "
                f"one of {', '.join(repr(c) for c in ON_STALE_CHOICES)} (reset: put stale shards back to "
                f"pending; fail: fail the task; warn: only log them)"
            )
        if isinstance(stale_after, timedelta):
            stale_after = stale_after.total_seconds()
        if not isinstance(stale_after, (int, float)) or isinstance(stale_after, bool) or stale_after <= 0:
            raise ConfigurationError(
                f"ShardStatusSensor(task_id={self.task_id!r}): stale_after={stale_after!r} must be a positive "
                f"number of seconds (the runbook uses 3600)"
            )
        self.run_id = run_id
        self.shard_status_conn_id = shard_status_conn_id
        self.db_path = db_path
        self.stale_after = float(stale_after)
        self.on_stale = on_stale
        # Validated here so a typo fails at DAG parse time, not at 3 a.m.
        self.thresholds = Thresholds.from_dict(thresholds).to_dict() if thresholds else None
        self.fail_on_critical = fail_on_critical
        self.worktree_root = worktree_root
        self.deferrable = deferrable
        self._stale_reset: list[dict[str, Any]] = []

    # -- poke mode ---------------------------------------------------------------------------------------

    def poke(self, context: Context) -> PokeReturnValue:
        store = open_shard_store(self.shard_status_conn_id, self.db_path)
        try:
            check, verdict = watch_once(store, self.run_id, stale_after_s=self.stale_after, on_stale=self.on_stale,
                                        thresholds=self.thresholds, worktree_root=self.worktree_root,
                                        fail_on_critical=self.fail_on_critical)
        finally:
            if hasattr(store, "close"):
                store.close()
        self._stale_reset.extend(check.stale_reset)
        for warning in verdict.warnings:
            self.log.warning("%s", warning)
        if verdict.status == "error":
            raise AirflowException(verdict.message)
        self.log.info("%s", verdict.message)
        data = check.to_dict()
        return PokeReturnValue(
            is_done=verdict.status == "success",
            xcom_value={"summary": data["summary"], "alerts": data["alerts"],
                        "stale_reset": list(self._stale_reset)},
        )

    # -- deferrable mode ---------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            timeout = self.timeout if self.timeout is not None else 7 * 24 * 3600
            if isinstance(timeout, timedelta):
                timeout = timeout.total_seconds()
            interval = self.poke_interval
            if isinstance(interval, timedelta):
                interval = interval.total_seconds()
            self.defer(
                timeout=timedelta(seconds=timeout),
                trigger=ShardStatusTrigger(
                    run_id=self.run_id,
                    shard_status_conn_id=self.shard_status_conn_id,
                    db_path=self.db_path,
                    poke_interval=interval,
                    stale_after=self.stale_after,
                    on_stale=self.on_stale,
                    thresholds=self.thresholds,
                    fail_on_critical=self.fail_on_critical,
                    worktree_root=self.worktree_root,
                    end_time=time.time() + timeout,
                ),
                method_name="execute_complete",
            )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if event is None:
            raise AirflowException("ShardStatusTrigger error: the task resumed without an event")
        status = event.get("status")
        if status not in _EVENT_STATUSES:
            raise AirflowException(f"Unexpected ShardStatusTrigger event status {status!r}: {event!r}")
        if status == "timeout":
            raise AirflowSensorTimeout(event.get("message", "ShardStatusSensor timed out"))
        if status == "error":
            raise AirflowException(event.get("message", "ShardStatusTrigger failed"))
        for alert in event.get("alerts") or []:
            if alert.get("level") != "ok":
                self.log.warning("%s", alert.get("message"))
        self.log.info("%s", event.get("message", ""))
        return {
            "summary": event.get("summary") or {},
            "alerts": event.get("alerts") or [],
            "stale_reset": event.get("stale_reset") or [],
        }
