"""What the shard dashboard shows, as JSON-safe dicts: plain Python over the store, no Airflow import.

Thin over the core: the per-run figures come from :func:`core.report.build_report`, the verdicts from
:func:`core.health.check_health` (the same thresholds as ``airflow-worktree check``), the rows from
:class:`core.store.ShardStore`. Every token figure, duration and cost is also given as text (``*_text``,
``figures``), worded by :mod:`core.health.figures` exactly as ``airflow-worktree report`` and the Markdown report
word them: the page prints those texts and formats no figure itself. The api-server app (``ui.app``) adds what
only Airflow knows (the DAG of a run, links to task instances) and the access checks; ``bench/bench_ui.py`` times
these functions.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from airflow_provider_worktree.core.sandbox.proc import truncate_middle
from airflow_provider_worktree.core.health.figures import (
    NO_SHARDS,
    TOKENS_HEADING,
    any_offline,
    format_cost,
    format_duration,
    format_tokens,
    format_tokens_short,
)
from airflow_provider_worktree.core.health.report import build_report
from airflow_provider_worktree.core.store import STATUSES
from airflow_provider_worktree.core.health import METRICS, Thresholds, check_health, format_value, jsonable, \
    to_epoch

__all__ = ["DEFAULT_STALE_AFTER_S", "NO_SHARDS", "runs_view", "run_view", "shard_view", "health_view", "health_summary",
           "run_figures"]

#: A running shard whose heartbeat is older than this is stale: the default of ``airflow-worktree check``.
DEFAULT_STALE_AFTER_S = 3600.0
_ERROR_CHARS = 300  # the error shown in a run's table; the shard page has it whole
_TAIL_CHARS = 4000  # verify output tail on the shard page


class _RowCache:
    """The store with ``list_shards`` remembered per (run, status), so that :func:`build_report` and
    :func:`check_health` read a run's rows once between them. Everything else goes to the store."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._rows: dict[tuple, list[dict[str, Any]]] = {}

    def list_shards(self, run_id: str | None = None, status: Any = None, limit: int | None = None) -> list[dict]:
        key = (run_id, status if status is None or isinstance(status, str) else tuple(status), limit)
        if key not in self._rows:
            self._rows[key] = self._store.list_shards(run_id=run_id, status=status, limit=limit)
        return self._rows[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def health_summary(check: Any) -> dict[str, Any]:
    """A :class:`~core.thresholds.HealthCheck` as the dashboard shows it: level, the alerts above ok with the
    runbook's action, and every alert (with its readable value and levels)."""
    alerts = [{**a.to_dict(), "value_text": format_value(a.metric, a.value)} for a in check.alerts]
    actions = [{"metric": a.metric, "label": a.label, "level": a.level, "action": a.action, "message": a.message}
               for a in check.problems]
    return {"level": check.level, "alerts": alerts, "actions": actions}


def _run_times(rows: list[Mapping[str, Any]], now: float,
               epochs: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, Any]:
    """First start, last end (None while shards are pending or running) and the wall time between them.
    ``epochs``: (started, completed) per shard id when the caller has them already."""
    if epochs is None:
        epochs = {r["shard_id"]: (to_epoch(r.get("started_at")), to_epoch(r.get("completed_at"))) for r in rows}
    starts = [t for t, _ in epochs.values() if t is not None]
    ends = [t for _, t in epochs.values() if t is not None]
    running = any(r.get("status") in ("running", "pending") for r in rows)
    first = min(starts, default=None)
    last = now if running else max(ends, default=None)
    return {"started_at": first, "ended_at": None if running else last,
            "duration_s": round(last - first, 3) if first is not None and last is not None else None}


def run_figures(totals: Mapping[str, Any], duration_s: float | None) -> dict[str, str]:
    """A run's figures as text: tokens (whole and short), cost (marked when offline), wall time, avg and max shard
    duration; the same words as ``airflow-worktree report`` and the Markdown report."""
    return {"tokens": format_tokens(totals), "tokens_short": format_tokens_short(totals),
            "cost": format_cost(totals.get("cost_usd"), bool(totals.get("offline"))),
            "duration": format_duration(duration_s, none=""),
            "avg_duration": format_duration(totals.get("avg_duration_s")),
            "max_duration": format_duration(totals.get("max_duration_s"))}


def runs_view(store: Any, *, stale_after_s: float = DEFAULT_STALE_AFTER_S, thresholds: Any = None,
              now: float | None = None) -> dict[str, Any]:
    """Every run of the database, newest first: shard counts per status, progress, duration, tokens, cost and
    the thresholds' verdict (level and the runbook's actions) of each."""
    now = time.time() if now is None else now
    out = []
    for run in store.runs():
        cached = _RowCache(store)
        check = check_health(cached, run["run_id"], stale_after_s=stale_after_s, on_stale="warn",
                             thresholds=thresholds)
        rows = cached.list_shards(run_id=run["run_id"])
        s = check.summary
        done = run.get("completed", 0) + run.get("failed", 0)
        times = _run_times(rows, now)
        offline = any_offline(rows)
        cost = float(s.get("cost_usd") or 0.0)
        out.append({
            "run_id": run["run_id"],
            "total": run["total"],
            "counts": {st: int(run.get(st, 0)) for st in STATUSES},
            "stale": len(check.stale),
            "progress": round(done / run["total"], 4) if run["total"] else 0.0,
            "created_at": to_epoch(run.get("created_at")),
            "updated_at": to_epoch(run.get("updated_at")),
            **times,
            "input_tokens": s.get("input_tokens", 0) + s.get("cache_read_tokens", 0) + s.get("cache_write_tokens", 0),
            "output_tokens": s.get("output_tokens", 0),
            "cost_usd": cost,
            "offline": offline,
            "figures": run_figures({**s, "cost_usd": cost, "offline": offline}, times["duration_s"]),
            "health": health_summary(check),
        })
    return {"generated_at": now, "stale_after_s": stale_after_s, "stale_after_text": format_duration(stale_after_s),
            "labels": {"tokens": TOKENS_HEADING}, "runs": out}


def run_view(store: Any, run_id: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S, thresholds: Any = None,
             now: float | None = None, known_run: bool = False) -> dict[str, Any] | None:
    """One run: its report totals, verdict, timing and one compact row per shard (``None`` when the run has no
    shard, unless ``known_run``: a run that exists and planned no shard gets a view with no rows whose
    ``message`` says so). Each shard row: status, stale, worker, attempt, started/completed/heartbeat (epoch
    seconds), heartbeat age, duration, planned and changed file counts, branch, commit, tokens, cost, error (cut),
    with the figures also as text (``*_text``)."""
    now = time.time() if now is None else now
    cached = _RowCache(store)
    rows = cached.list_shards(run_id=run_id)
    if not rows and not known_run:
        return None
    report = build_report(cached, run_id)
    check = check_health(cached, run_id, stale_after_s=stale_after_s, on_stale="warn", thresholds=thresholds)
    stale_ids = {s["shard_id"] for s in check.stale}
    by_id = {r["shard_id"]: r for r in rows}
    shards = []
    epochs: dict[str, tuple[float | None, float | None]] = {}
    for entry in report["shards"]:
        row = by_id[entry["shard_id"]]
        started, completed = to_epoch(row.get("started_at")), to_epoch(row.get("completed_at"))
        epochs[entry["shard_id"]] = (started, completed)
        heartbeat = to_epoch(row.get("heartbeat_at"))
        running = entry["status"] == "running"
        error = entry["error_message"]
        shards.append({
            "shard_id": entry["shard_id"],
            "status": entry["status"],
            "stale": entry["shard_id"] in stale_ids,
            "worker_id": entry["worker_id"],
            "attempt": entry["attempt"],
            "started_at": started,
            "completed_at": completed,
            "heartbeat_at": heartbeat,
            "heartbeat_age_s": round(now - heartbeat, 1) if running and heartbeat is not None else None,
            "duration_s": (duration := entry["duration_s"] if not running or started is None
                           else round(now - started, 3)),
            "duration_text": format_duration(duration, none=""),
            "heartbeat_age_text": format_duration(now - heartbeat, none="") if running and heartbeat is not None
            else "",
            "files": len(row.get("files") or []),
            "files_changed": len(entry["files_changed"]),
            "branch": entry["branch"],
            "commit_sha": entry["commit_sha"],
            "input_tokens": entry["input_tokens"] + entry["cache_read_tokens"] + entry["cache_write_tokens"],
            "output_tokens": entry["output_tokens"],
            "cost_usd": entry["cost_usd"],
            "tokens_text": format_tokens_short(entry),
            "tokens_title": format_tokens(entry),
            "cost_text": format_cost(entry["cost_usd"]),
            "error": truncate_middle(error, _ERROR_CHARS) if error else None,
        })
    totals = report["totals"]
    done = totals["by_status"].get("completed", 0) + totals["by_status"].get("failed", 0)
    times = _run_times(rows, now, epochs)
    return {  # shard rows are JSON-safe as built: jsonable() over 2,000 of them would double the time
        "run_id": run_id,
        "generated_at": now,
        "stale_after_s": stale_after_s,
        "stale_after_text": format_duration(stale_after_s),
        "message": None if rows else NO_SHARDS,
        "offline": bool(totals["offline"]),
        "labels": {"tokens": TOKENS_HEADING},
        "figures": run_figures(totals, times["duration_s"]),
        "total": totals["shards"],
        "counts": {st: int(totals["by_status"].get(st, 0)) for st in STATUSES},
        "stale": len(stale_ids),
        "progress": round(done / totals["shards"], 4) if totals["shards"] else 0.0,
        **times,
        "totals": jsonable(totals),
        "health": jsonable(health_summary(check)),
        "shards": shards,
    }


def shard_view(store: Any, run_id: str, shard_id: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S,
               now: float | None = None) -> dict[str, Any]:
    """One shard: its row (files, diffstat, result summary, error), the verify output tail, and every attempt
    when the store keeps them (``attempts`` is None when it does not). Raises ``ShardNotFound``."""
    now = time.time() if now is None else now
    row = dict(store.get_shard(run_id, shard_id))
    summary = row.get("result_summary") if isinstance(row.get("result_summary"), Mapping) else {}
    verify = summary.get("verify") if isinstance(summary.get("verify"), Mapping) else None
    heartbeat = to_epoch(row.get("heartbeat_at"))
    list_attempts = getattr(store, "list_attempts", None)
    attempts = list_attempts(run_id, shard_id) if callable(list_attempts) else None
    if attempts is not None:
        attempts = [{**a, "tokens_text": format_tokens_short(a), "cost_text": format_cost(a.get("cost_usd"))}
                    for a in attempts]
    heartbeat_age = round(now - heartbeat, 1) if heartbeat is not None and row["status"] == "running" else None
    stale = row["status"] == "running" and any(
        s["shard_id"] == shard_id for s in store.stale_leases(stale_after_s, run_id=run_id))
    return jsonable({
        "run_id": run_id,
        "shard_id": shard_id,
        "status": row["status"],
        "stale": stale,
        "stale_after_s": stale_after_s,
        "worker_id": row.get("worker_id"),
        "attempt": row.get("attempt"),
        "task": row.get("task"),
        "started_at": to_epoch(row.get("started_at")),
        "completed_at": to_epoch(row.get("completed_at")),
        "heartbeat_at": heartbeat,
        "heartbeat_age_s": heartbeat_age,
        "heartbeat_age_text": format_duration(heartbeat_age, none=""),
        "files": row.get("files") or [],
        "files_changed": row.get("files_changed") or [],
        "diffstat": row.get("diffstat") or "",
        "branch": row.get("branch"),
        "commit_sha": row.get("commit_sha"),
        "tokens": {k: int(row.get(k) or 0) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                     "cache_write_tokens")},
        "cost_usd": float(row.get("cost_usd") or 0.0),
        "tokens_text": format_tokens(row),
        "labels": {"tokens": TOKENS_HEADING},
        "cost_text": format_cost(row.get("cost_usd"), any_offline([row])),
        "error_message": row.get("error_message"),
        "verify": None if verify is None else {
            "ok": verify.get("ok"), "returncode": verify.get("returncode"),
            "output_tail": truncate_middle(str(verify.get("output_tail") or ""), _TAIL_CHARS)},
        "result_summary": {k: v for k, v in summary.items() if k != "verify"},
        "attempts": attempts,
    })


def health_view(store: Any, *, run_id: str | None = None, worktree_root: str | None = None,
                stale_after_s: float = DEFAULT_STALE_AFTER_S, thresholds: Any = None,
                worktree_root_source: str | None = None) -> dict[str, Any]:
    """The thresholds of ``airflow-worktree check`` over the database (or one run), with active worktrees and
    free disk space when ``worktree_root`` is known (``worktree_root_source``: where it comes from, e.g. the
    setting or the default the tasks use). ``not_measured`` names the metrics left out."""
    check = check_health(store, run_id, stale_after_s=stale_after_s, on_stale="warn", thresholds=thresholds,
                         worktree_root=worktree_root)
    th = Thresholds.from_dict(thresholds)
    measured = {a.metric for a in check.alerts}
    rows = []
    for a in check.alerts:
        spec = METRICS[a.metric]
        warn, crit = th.levels(a.metric)
        sign = ">" if spec.direction == "above" else "<"
        rows.append({"metric": a.metric, "label": spec.label, "value": a.value,
                     "value_text": format_value(a.metric, a.value), "level": a.level,
                     "warning": f"{sign} {format_value(a.metric, warn)}",
                     "critical": f"{sign} {format_value(a.metric, crit)}",
                     "action": spec.action, "message": a.message})
    return jsonable({
        "run_id": run_id,
        "worktree_root": worktree_root,
        "worktree_root_source": worktree_root_source,
        "stale_after_s": stale_after_s,
        "level": check.level,
        "total": check.total,
        "status_counts": check.status_counts,
        "stale": check.stale,
        "metrics": rows,
        "actions": [{"label": r["label"], "level": r["level"], "action": r["action"]}
                    for r in rows if r["level"] != "ok"],
        "not_measured": [{"metric": m, "label": spec.label,
                          "why": "no worktree root configured ([worktree] worktree_root)"
                          if m in ("active_worktrees", "disk_free_pct") else "not measurable here"}
                         for m, spec in METRICS.items() if m not in measured],
    })
