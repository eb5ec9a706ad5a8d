"""Deferrable face of :class:`~airflow_provider_worktree.sensors.shard_status.ShardStatusSensor`.

The trigger polls the shard status database from the triggerer, with every blocking store call run in a
thread (``asyncio.to_thread``) so one poll never stalls the other triggers of the event loop. It yields
exactly one event:

- ``{"status": "success", ...}`` once every shard of the run is completed or failed;
- ``{"status": "error", ...}`` when ``on_stale="fail"`` finds a stale lease, when a critical threshold is
  crossed and ``fail_on_critical`` is set, or when the database cannot be read several polls in a row;
- ``{"status": "timeout", ...}`` past ``end_time`` (wall clock, so it survives a triggerer restart).

Each event carries ``summary``, ``alerts`` (dicts), ``stale_reset`` (shards put back to pending) and
``message``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.anthropic.hooks.anthropic import MAX_CONSECUTIVE_POLL_FAILURES  # the same tolerance as its triggers
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_worktree.core.health import Thresholds, validate_on_stale, watch_once

#: Consecutive failed polls (database unreachable, locked...) tolerated before an error event.


def open_shard_store(shard_status_conn_id: str | None = None, db_path: str | None = None):
    """Open the shard store: ``db_path`` (an SQLite file or store URL) when given, else the connection as
    the hook resolves it (``shard_status_default`` if it exists, else ``$AIRFLOW_HOME/shard_status.db``)."""
    from airflow_provider_worktree.core.store import ShardStore

    if db_path:
        return ShardStore.open(db_path)
    from airflow_provider_worktree.hooks.shard_status import resolve_store_target

    return ShardStore.open(resolve_store_target(conn_id=shard_status_conn_id, db_path=None))


class ShardStatusTrigger(BaseTrigger):
    """Wait until every shard of ``run_id`` is terminal, watching stale leases and the runbook thresholds.

    :param run_id: The run whose shards are watched.
    :param shard_status_conn_id: Connection of the shard database (resolved in the triggerer, so no
        credentials travel in the trigger's kwargs). ``None``: the hook's default resolution.
    :param db_path: An SQLite file (or store URL) used instead of the connection.
    :param poke_interval: Seconds between polls.
    :param stale_after: Seconds after which a running shard's lease is stale.
    :param on_stale: ``reset`` | ``fail`` | ``warn``.
    :param thresholds: Threshold overrides (see :class:`~airflow_provider_worktree.core.health.Thresholds`).
    :param fail_on_critical: Yield an error event when a critical threshold is crossed.
    :param end_time: Wall-clock deadline (``time.time()`` epoch seconds); ``None``: no deadline.
    :param worktree_root: Worktree directory whose active worktrees and free disk are also checked (the
        sensor's ``worktree_root``, evaluated in the triggerer the same way as in poke mode).
    """

    def __init__(
        self,
        run_id: str,
        shard_status_conn_id: str | None = None,
        db_path: str | None = None,
        poke_interval: float = 60.0,
        stale_after: float = 3600.0,
        on_stale: str = "reset",
        thresholds: dict[str, Any] | None = None,
        fail_on_critical: bool = True,
        end_time: float | None = None,
        worktree_root: str | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.shard_status_conn_id = shard_status_conn_id
        self.db_path = db_path
        self.poke_interval = float(poke_interval)
        self.stale_after = float(stale_after)
        self.on_stale = validate_on_stale(on_stale)
        # Validate now (in the worker, where the DAG author sees the error), ship as a plain dict.
        self.thresholds = Thresholds.from_dict(thresholds).to_dict() if thresholds else None
        self.fail_on_critical = bool(fail_on_critical)
        self.end_time = end_time
        self.worktree_root = worktree_root

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_worktree.triggers.shard_status.ShardStatusTrigger",
            {
                "run_id": self.run_id,
                "shard_status_conn_id": self.shard_status_conn_id,
                "db_path": self.db_path,
                "poke_interval": self.poke_interval,
                "stale_after": self.stale_after,
                "on_stale": self.on_stale,
                "thresholds": self.thresholds,
                "fail_on_critical": self.fail_on_critical,
                "end_time": self.end_time,
                "worktree_root": self.worktree_root,
            },
        )

    def _event(self, status: str, message: str, check=None, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "run_id": self.run_id, "message": message}
        if check is not None:
            data = check.to_dict()
            payload.update(summary=data["summary"], alerts=data["alerts"], stale_reset=data["stale_reset"],
                           stale=data["stale"], level=data["level"])
        else:
            payload.update(summary={}, alerts=[], stale_reset=[], stale=[], level="ok")
        payload.update(extra)
        return TriggerEvent(payload)

    def _poll(self, store) -> Any:
        return watch_once(store, self.run_id, stale_after_s=self.stale_after, on_stale=self.on_stale,
                          thresholds=self.thresholds, worktree_root=self.worktree_root,
                          fail_on_critical=self.fail_on_critical)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = None
        failures = 0
        stale_reset: list[dict[str, Any]] = []
        try:
            while True:
                try:
                    if store is None:
                        store = await asyncio.to_thread(
                            open_shard_store, self.shard_status_conn_id, self.db_path
                        )
                    check, verdict = await asyncio.to_thread(self._poll, store)
                except Exception as exc:  # noqa: BLE001 - tolerate transient database errors
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_POLL_FAILURES or self._past_deadline():
                        yield self._event(
                            "error",
                            f"could not read the shard database for run {self.run_id} "
                            f"({failures} attempts): {exc}",
                        )
                        return
                    self.log.warning("Polling shard database failed (%s); retrying.", exc)
                    await asyncio.sleep(self.poke_interval)
                    continue
                failures = 0
                stale_reset.extend(check.stale_reset)
                check.stale_reset = stale_reset
                for warning in verdict.warnings:
                    self.log.warning("%s", warning)
                if verdict.status != "waiting":
                    yield self._event(verdict.status, verdict.message, check)
                    return
                if self._past_deadline():
                    yield self._event(
                        "timeout",
                        f"shards of run {self.run_id} were not all terminal before the timeout: "
                        + check.status_text(),
                        check,
                    )
                    return
                await asyncio.sleep(self.poke_interval)
        finally:
            if store is not None and hasattr(store, "close"):
                try:
                    store.close()
                except Exception:  # noqa: BLE001
                    pass

    def _past_deadline(self) -> bool:
        return self.end_time is not None and time.time() > self.end_time
