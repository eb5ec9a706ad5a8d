"""One look at a run for whoever waits on it (the sensor, its trigger, the CLI, the UI):
:func:`check_health` collects the metrics, applies the stale-lock policy, evaluates the thresholds and
returns a :class:`HealthCheck`, whose :meth:`~HealthCheck.verdict` says error, success or waiting.

Imports ``thresholds`` and ``metrics``. Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from airflow_provider_worktree.core.health.metrics import collect_metrics, jsonable
from airflow_provider_worktree.core.health.thresholds import (
    CRITICAL,
    METRICS,
    OK,
    TERMINAL_STATUSES,
    Alert,
    Thresholds,
    evaluate,
    validate_on_stale,
    worst_level,
)

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


def watch_once(store: Any, run_id: str | None, *, stale_after_s: float, on_stale: str,
               thresholds: Thresholds | Mapping[str, Any] | None, worktree_root: str | os.PathLike | None,
               fail_on_critical: bool) -> tuple[HealthCheck, Verdict]:
    """One poll of a waiter (the sensor in poke mode, its trigger when deferred): the same look and the same
    verdict in both places, so a run is judged alike whichever mode watches it."""
    check = check_health(store, run_id, stale_after_s=stale_after_s, on_stale=on_stale, thresholds=thresholds,
                         worktree_root=worktree_root)
    return check, check.verdict(on_stale, fail_on_critical)
