"""What the shard dashboard shows, as JSON-safe dicts: plain Python over the store, no Airflow import.

Thin over the core: the per-run figures come from :func:`core.report.build_report`, the verdicts from
:func:`core.health.check_health` (the same thresholds as ``airflow-worktree check``), the rows from
:class:`core.store.ShardStore`. Every token figure, duration and cost is also given as text (``*_text``,
``figures``), worded by :mod:`core.health.figures` exactly as ``airflow-worktree report`` and the Markdown report
word them: the page prints those texts and formats no figure itself. The Changesets page reads
:meth:`ShardStore.changesets` with each one's run cost (:func:`changesets_view`) and a burndown derived from the
rows (:func:`burndown`). A run in batch mode has its Message Batches and their entries' spend
(:func:`batches_view`, what ``airflow-worktree batches`` prints). The api-server app (``ui.app``) adds what only
Airflow knows (the DAG of a run, links to task instances) and the access checks; ``bench/bench_ui.py`` times these
functions.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Iterable, Mapping

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
from airflow_provider_worktree.core.campaigns.run import repo_prefix
from airflow_provider_worktree.core.health.report import build_report
from airflow_provider_worktree.core.store import STATUSES
from airflow_provider_worktree.core.health import METRICS, Thresholds, check_health, format_value, jsonable, \
    to_epoch

__all__ = ["DEFAULT_STALE_AFTER_S", "NO_SHARDS", "NO_CHANGESETS", "BURNDOWN_SERIES", "BURNDOWN_MAX_DAYS", "runs_view",
           "run_view", "shard_view", "health_view", "health_summary", "run_figures", "changeset_stage",
           "changesets_view", "changesets_summary", "burndown", "batches_view"]

#: A running shard whose heartbeat is older than this is stale: the default of ``airflow-worktree check``.
DEFAULT_STALE_AFTER_S = 3600.0
_ERROR_CHARS = 300  # the error shown in a run's table; the shard page has it whole
_TAIL_CHARS = 4000  # verify output tail on the shard page
#: What the Changesets page says when the database records no changeset.
NO_CHANGESETS = "No run published a pull request yet: set the publish Param to draft"
#: The burndown's series, bottom of the stack first; a changeset's stage (:func:`changeset_stage`) names it.
BURNDOWN_SERIES = ("merged", "closed", "open", "draft")
#: The most days the burndown covers (the last ones, today included).
BURNDOWN_MAX_DAYS = 90
#: The head branch of a campaign's changesets: ``campaign/<name>`` (``core.campaigns.types.CampaignSpec.head``).
CAMPAIGN_HEAD = "campaign/"
#: The ``shard_attempts`` attempt number holding a shard's batch spend (``core.store.batches.BATCH_ATTEMPT``).
_BATCH_ATTEMPT = 0


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
    when the store keeps them (``attempts`` is None when it does not; attempt 0, status ``batch``, is the spend of
    the shard's Message Batches entry: ``batch`` true and its ``batch_id``), and ``batch``: the shard's batch entry
    (state, part, batch id) or None when the shard was not in batch mode. Raises ``ShardNotFound``."""
    now = time.time() if now is None else now
    row = dict(store.get_shard(run_id, shard_id))
    summary = row.get("result_summary") if isinstance(row.get("result_summary"), Mapping) else {}
    verify = summary.get("verify") if isinstance(summary.get("verify"), Mapping) else None
    heartbeat = to_epoch(row.get("heartbeat_at"))
    list_attempts = getattr(store, "list_attempts", None)
    attempts = list_attempts(run_id, shard_id) if callable(list_attempts) else None
    batch = _shard_batch(store, run_id, shard_id)
    if attempts is not None:
        # the fencing token stays in the database: a reader of the dashboard has no use for it
        attempts = [{**{k: v for k, v in a.items() if k != "lease_token"},
                     "started_at": to_epoch(a.get("started_at")), "ended_at": to_epoch(a.get("ended_at")),
                     "tokens_text": format_tokens_short(a), "cost_text": format_cost(a.get("cost_usd")),
                     "batch": a.get("attempt") == _BATCH_ATTEMPT and a.get("status") == "batch",
                     "batch_id": batch["batch_id"] if batch and a.get("attempt") == _BATCH_ATTEMPT else None}
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
        "batch": batch,
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


# ------------------------------------------------------------------------------------------- changesets
def changeset_stage(row: Mapping[str, Any]) -> str:
    """Where a changeset is, in one word: ``merged`` or ``closed`` (its external state), else ``draft`` (a draft
    pull request), ``open`` (published, ready for review) or ``unpublished`` (nothing on the forge yet)."""
    if row.get("external_state") in ("merged", "closed"):
        return str(row["external_state"])
    publication = row.get("publication")
    return {"draft": "draft", "published": "open"}.get(publication, "unpublished")


def _utc_day(value: Any) -> _dt.date | None:
    epoch = to_epoch(value)
    return None if epoch is None else _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).date()


def changesets_view(store: Any, *, repository: str | None = None, state: str | None = None,
                    run_id: str | None = None) -> dict[str, Any]:
    """The recorded changesets (optionally of one repository, one external state, one run), by repository and head
    branch: their states, stage (:func:`changeset_stage`), url, failures and last error, and the cost of the run
    that last published each (the sum of that run's shard costs, as on the Runs page: ``cost_usd``, ``cost_text``
    and ``cost_title``, the latter marked when the run used the offline test double, also said by ``offline``;
    None and "" when the run has no shard in this database). ``message``: what to say when
    there is none."""
    rows = store.changesets(repository=repository, state=state)
    if run_id:
        rows = [r for r in rows if r.get("run_id") == run_id]
    runs = {r["run_id"]: float(r.get("cost_usd") or 0.0) for r in store.runs()} if rows else {}
    shards = {run: store.list_shards(run_id=run) for run in {r.get("run_id") for r in rows} if run in runs}
    offline = {run: any_offline(rows_) for run, rows_ in shards.items()}
    out = []
    for r in rows:
        run = r.get("run_id")
        cost = runs.get(run) if run else None
        campaign = r["head"][len(CAMPAIGN_HEAD):] if str(r["head"]).startswith(CAMPAIGN_HEAD) else None
        if campaign and run in shards:  # a campaign run spans repositories: this one's shards only
            prefix = repo_prefix(r["repository"])
            cost = round(sum(float(x.get("cost_usd") or 0.0) for x in shards[run]
                             if str(x["shard_id"]).startswith(prefix)), 6)
        out.append({**{k: r.get(k) for k in ("forge", "repository", "head", "base", "number", "url", "title",
                                             "publication", "external_state", "review", "checks", "head_sha",
                                             "run_id", "last_action", "last_error")},
                    "failures": int(r.get("failures") or 0),
                    "stage": changeset_stage(r),
                    "created_at": to_epoch(r.get("created_at")),
                    "updated_at": to_epoch(r.get("updated_at")),
                    "synced_at": to_epoch(r.get("synced_at")),
                    "cost_usd": cost,
                    "cost_text": format_cost(cost) if cost is not None else "",
                    "cost_title": format_cost(cost, offline.get(run, False)) if cost is not None else "",
                    "offline": offline.get(run, False), "campaign": campaign})
    return {"changesets": out, **changesets_summary(out)}


def changesets_summary(changesets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Of the changesets of a view: ``total``, ``counts`` per stage, the ``repositories`` and the ``message``
    when there is none."""
    changesets = list(changesets)
    counts = dict.fromkeys(("draft", "open", "merged", "closed", "unpublished"), 0)
    for c in changesets:
        counts[c["stage"]] += 1
    return {"total": len(changesets), "counts": counts, "repositories": sorted({c["repository"] for c in changesets}),
            "campaigns": campaigns_summary(changesets), "message": None if changesets else NO_CHANGESETS}


def campaigns_summary(changesets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per campaign (the changesets of a ``campaign/<name>`` head): counts per stage, the cost of its
    repositories' shards in the runs that last published them, and the cost per merged change."""
    by: dict[str, dict[str, Any]] = {}
    for c in changesets:
        if not c.get("campaign"):
            continue
        g = by.setdefault(c["campaign"], {"campaign": c["campaign"], "total": 0, "cost_usd": 0.0,
                                          "counts": dict.fromkeys(("draft", "open", "merged", "closed",
                                                                   "unpublished"), 0)})
        g["total"] += 1
        g["counts"][c["stage"]] += 1
        g["cost_usd"] = round(g["cost_usd"] + float(c.get("cost_usd") or 0.0), 6)
    for g in by.values():
        merged = g["counts"]["merged"]
        g["cost_per_merged_usd"] = round(g["cost_usd"] / merged, 6) if merged else None
        g["cost_text"] = format_cost(g["cost_usd"])
        g["cost_per_merged_text"] = format_cost(g["cost_per_merged_usd"]) if merged else "none merged yet"
    return [by[k] for k in sorted(by)]


def burndown(rows: Iterable[Mapping[str, Any]], *, today: _dt.date | None = None,
             max_days: int = BURNDOWN_MAX_DAYS) -> dict[str, Any]:
    """Per UTC day, how many changesets were draft, open, merged and closed at the end of that day.

    The changesets table keeps each changeset's current state and two timestamps (``created_at``: first
    recorded; ``updated_at``: last recorded change), not its history, so the series is derived from those:

    - a changeset counts from the day of its ``created_at`` on (not before);
    - one whose external state is ``merged`` or ``closed`` counts as such from the day of its ``updated_at``
      (the merge or close, or a later sync or failure of it: so that day may be later than the merge, never
      earlier), and before that day as its publication says: ``draft``, or ``open`` when published;
    - an open one counts as ``draft`` or ``open`` (published) by its current publication on every day since it
      was created (a draft later marked ready counts as open from its first day: the table does not keep when
      it was marked);
    - an unpublished one (nothing on the forge) counts in no series before it is merged or closed
      (``uncounted``: how many are in no series today), nor does one without ``created_at``.

    Days run from the first ``created_at`` day to ``today`` (UTC today by default), at most the last
    ``max_days`` (capped at :data:`BURNDOWN_MAX_DAYS`; ``truncated`` says so; changesets created before the first
    day shown count in it). Returns ``{"series", "days": [{"date", "draft", "open", "merged", "closed"}], "from",
    "to", "truncated", "total", "uncounted", "message"}``.
    """
    today = today or _dt.datetime.now(_dt.timezone.utc).date()
    max_days = max(1, min(int(max_days), BURNDOWN_MAX_DAYS))
    spans = []  # (created day, terminal day or None, stage before it or None, terminal stage or None)
    total = 0
    for r in rows:
        total += 1
        created = _utc_day(r.get("created_at"))
        if created is None:
            continue
        stage = changeset_stage(r)
        before = {"draft": "draft", "published": "open"}.get(r.get("publication"))
        if stage in ("merged", "closed"):
            spans.append((created, max(created, _utc_day(r.get("updated_at")) or created), before, stage))
        else:
            spans.append((created, None, before, None))
    days: list[dict[str, Any]] = []
    first = min((s[0] for s in spans), default=None)
    truncated = False
    if first is not None and first <= today:
        start = today - _dt.timedelta(days=max_days - 1)
        truncated = first < start
        day = max(first, start)
        while day <= today:
            counts = dict.fromkeys(BURNDOWN_SERIES, 0)
            for created, end, before, terminal in spans:
                if created > day:
                    continue
                stage = terminal if end is not None and end <= day else before
                if stage:
                    counts[stage] += 1
            days.append({"date": day.isoformat(), **counts})
            day += _dt.timedelta(days=1)
    uncounted = total - (sum(days[-1][s] for s in BURNDOWN_SERIES) if days else 0)
    return {"series": list(BURNDOWN_SERIES), "days": days, "from": days[0]["date"] if days else None,
            "to": days[-1]["date"] if days else None, "truncated": truncated, "total": total,
            "uncounted": uncounted, "message": None if total else NO_CHANGESETS}


# ------------------------------------------------------------------------------------------- batches
def _shard_batch(store: Any, run_id: str, shard_id: str) -> dict[str, Any] | None:
    """The shard's batch entry as the shard page shows it, or None (not in batch mode, or a store without
    batch records)."""
    entry_of = getattr(store, "batch_entry", None)
    entry = entry_of(run_id, shard_id) if callable(entry_of) else None
    if not entry:
        return None
    batch_id = None
    if entry.get("part") is not None:
        batch_id = next((p["batch_id"] for p in store.batch_parts(run_id) if p["part"] == entry["part"]), None)
    return {"status": entry["status"], "part": entry.get("part"), "batch_id": batch_id,
            "custom_id": entry.get("custom_id"), "reason": entry.get("reason"),
            "cost_usd": float(entry.get("cost_usd") or 0.0), "cost_text": format_cost(entry.get("cost_usd"))}


def _counts_text(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {int(v):,}" for k, v in counts.items() if v) or "-"


def batches_view(store: Any, run_id: str) -> dict[str, Any]:
    """A run's Message Batches (the store's ``shard_batches``) and what became of its shards' entries
    (``batch_entries``): what ``airflow-worktree batches --run-id`` prints, JSON-safe.

    ``parts``: one per batch, by part: ``part, batch_id, status, requests, model, request_counts`` (what the API
    last said) with ``request_counts_text``, ``created_at`` (submitted), ``ended_at``, ``collected_at`` (epoch
    seconds), ``entries`` (state -> count of the part's entries) and their spend at batch prices (``cost_usd``,
    ``cost_text``, ``tokens_text``). Then the run's ``entries`` (state -> count) with ``entries_text``,
    ``interactive`` and ``over_budget`` (shard ids: not sent), ``collected`` (nothing left to wait for), the
    entries' total ``cost_usd``/``cost_text`` and ``batch_mode`` (whether the run used batch mode at all)."""
    parts_of = getattr(store, "batch_parts", None)
    parts = parts_of(run_id) if callable(parts_of) else []
    entries = store.batch_entries(run_id) if callable(parts_of) else []
    counts: dict[str, int] = {}
    by_part: dict[Any, list[dict[str, Any]]] = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
        by_part.setdefault(e.get("part"), []).append(e)
    out_parts = []
    for p in parts:
        mine = by_part.get(p["part"], [])
        part_counts: dict[str, int] = {}
        for e in mine:
            part_counts[e["status"]] = part_counts.get(e["status"], 0) + 1
        cost = round(sum(float(e.get("cost_usd") or 0.0) for e in mine), 6)
        usage = {k: sum(int(e.get(k) or 0) for e in mine)
                 for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}
        request_counts = dict(p.get("request_counts") or {})
        out_parts.append({
            "part": p["part"], "batch_id": p.get("batch_id"), "status": p.get("status"),
            "requests": int(p.get("requests") or 0), "model": p.get("model"),
            "request_counts": request_counts, "request_counts_text": _counts_text(request_counts),
            "created_at": to_epoch(p.get("created_at")), "ended_at": to_epoch(p.get("ended_at")),
            "collected_at": to_epoch(p.get("collected_at")),
            "entries": part_counts, "entries_text": _counts_text(part_counts),
            "cost_usd": cost, "cost_text": format_cost(cost), "tokens_text": format_tokens_short(usage),
            "tokens_title": format_tokens(usage)})
    cost = round(sum(float(e.get("cost_usd") or 0.0) for e in entries), 6)
    return {
        "run_id": run_id,
        "batch_mode": bool(parts or entries),
        "collected": all(p["status"] == "collected" for p in parts) if parts else bool(entries),
        "parts": out_parts,
        "entries": counts,
        "entries_text": _counts_text(counts),
        "interactive": sorted(e["shard_id"] for e in entries if e["status"] == "interactive"),
        "over_budget": sorted(e["shard_id"] for e in entries if e["status"] == "over_budget"),
        "cost_usd": cost,
        "cost_text": format_cost(cost),
    }
