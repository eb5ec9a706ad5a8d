"""The shard commands: ``status``, ``stale``, ``reset-stale``, ``report``, ``batches``, ``check``,
``thresholds`` and ``prune``. Each returns ``(data, text, exit code)``: the data for ``-o json|yaml``, the
text for ``-o table|plain`` (built with the :class:`~.render.Render` of the chosen format)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from airflow_provider_worktree.cli.common import (
    EXIT_CRITICAL,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_WARNING,
    PROG,
    RECENT_FAILURES,
    CliError,
    _age,
    _short,
    _ts,
)
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import (
    _close,
    _manager,
    _thresholds,
    open_store,
)
from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.health import (
    CRITICAL,
    METRICS,
    OK,
    WARNING,
    collect_metrics,
    evaluate,
    format_value,
    jsonable,
    to_epoch,
    worst_level,
)
from airflow_provider_worktree.core.health.figures import format_duration


def _shard_age(shard: dict, key: str, now: float) -> float | None:
    epoch = to_epoch(shard.get(key))
    return None if epoch is None else now - epoch



def _heartbeat(shard: dict) -> Any:
    for key in ("heartbeat_at", "last_heartbeat", "heartbeat"):
        if shard.get(key):
            return shard[key]
    return None



def _alerts_block(alerts: list, out: Render) -> list[str]:
    problems = [a for a in alerts if a.level != OK]
    if not problems:
        return []
    lines = ["", out.style("Alerts", "bold")]
    for a in problems:
        lines.append(f"  {out.level(a.level.upper())} {a.message}")
    return lines



def cmd_status(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        shards = store.list_shards(run_id=args.run_id)
        metrics = collect_metrics(store, run_id=args.run_id, stale_after_s=args.stale_after)
    finally:
        _close(store)
    now = time.time()
    order = ["pending", "running", "completed", "failed"]
    counts: dict[str, int] = {s: 0 for s in order}
    durations: dict[str, list[float]] = {}
    for s in shards:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
        start, end = to_epoch(s.get("started_at")), to_epoch(s.get("completed_at"))
        if start is not None and end is not None:
            durations.setdefault(s["status"], []).append(end - start)
    running = sorted((s for s in shards if s["status"] == "running"), key=lambda s: str(s.get("started_at")))
    failed = sorted((s for s in shards if s["status"] == "failed"), key=lambda s: str(s.get("updated_at")),
                    reverse=True)[:RECENT_FAILURES]
    alerts = evaluate(metrics, _thresholds(args))
    level = worst_level(alerts)
    data = {
        "database": desc,
        "run_id": args.run_id,
        "total": len(shards),
        "counts": counts,
        "avg_duration_s": {k: sum(v) / len(v) for k, v in durations.items()},
        "running": [
            {"run_id": s.get("run_id"), "shard_id": s["shard_id"], "worker_id": s.get("worker_id"),
             "started_at": s.get("started_at"), "age_s": _shard_age(s, "started_at", now),
             "heartbeat_age_s": (now - to_epoch(_heartbeat(s))) if _heartbeat(s) else None}
            for s in running
        ],
        "recent_failures": [
            {"run_id": s.get("run_id"), "shard_id": s["shard_id"], "updated_at": s.get("updated_at"),
             "error_message": s.get("error_message")}
            for s in failed
        ],
        "alerts": [a.to_dict() for a in alerts],
        "level": level,
    }
    lines = [f"{out.style('Shard database', 'bold')}: {desc}" + (f"  (run {args.run_id})" if args.run_id else "")]
    rows = []
    for status, n in counts.items():
        avg = data["avg_duration_s"].get(status)
        rows.append([out.status_cell(status), str(n), format_duration(avg, none="")])  # as the report and the UI
    rows.append([("total", "bold"), str(len(shards)), ""])
    lines += ["", out.table(["STATUS", "COUNT", "AVG DURATION"], rows, right=(1,))]
    if running:
        lines += ["", out.style(f"Running shards ({len(running)})", "bold")]
        lines.append(out.table(
            ["RUN", "SHARD", "WORKER", "STARTED (UTC)", "AGE", "HEARTBEAT"],
            [[r["run_id"] or "-", r["shard_id"], r["worker_id"] or "-", _ts(r["started_at"]), _age(r["age_s"]),
              _age(r["heartbeat_age_s"]) + (" ago" if r["heartbeat_age_s"] is not None else "")]
             for r in data["running"]],
            right=(4,),
        ))
    if failed:
        lines += ["", out.style(f"Recent failures ({len(failed)} of {counts.get('failed', 0)})", "bold")]
        lines.append(out.table(
            ["RUN", "SHARD", "UPDATED (UTC)", "ERROR"],
            [[f["run_id"] or "-", (f["shard_id"], "red"), _ts(f["updated_at"]),
              _short(f["error_message"])] for f in data["recent_failures"]],
        ))
    lines += _alerts_block(alerts, out)
    return data, "\n".join(lines), EXIT_CRITICAL if level == CRITICAL else EXIT_OK



def _stale_rows(stale: list[dict], now: float) -> list[list[str]]:
    return [[s.get("run_id") or "-", s["shard_id"], s.get("worker_id") or "-", _ts(s.get("started_at")),
             _age(_shard_age(s, "started_at", now)),
             _age(now - to_epoch(_heartbeat(s))) + " ago" if _heartbeat(s) else "-"] for s in stale]



_STALE_HEADERS = ["RUN", "SHARD", "WORKER", "STARTED (UTC)", "AGE", "HEARTBEAT"]



def cmd_stale(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        stale = store.stale_leases(args.older_than, run_id=args.run_id)
    finally:
        _close(store)
    alerts = evaluate({"stale_locks": len(stale)}, _thresholds(args))
    level = worst_level(alerts)
    data = {"database": desc, "run_id": args.run_id, "older_than_s": args.older_than, "count": len(stale),
            "stale": stale, "alerts": [a.to_dict() for a in alerts], "level": level}
    if not stale:
        text = f"No stale locks (running shards without a heartbeat for {_age(args.older_than)}) in {desc}."
    else:
        text = "\n".join([
            out.style(f"{len(stale)} stale lock(s)", "bold") + f" (no heartbeat for {_age(args.older_than)}) in {desc}",
            "",
            out.table(_STALE_HEADERS, _stale_rows(stale, time.time()), right=(4,)),
            "",
            f"Put them back to pending with: {PROG} reset-stale --older-than {_age(args.older_than)}"
            + (f" --run-id {args.run_id}" if args.run_id else ""),
        ] + _alerts_block(alerts, out))
    return data, text, EXIT_CRITICAL if level == CRITICAL else EXIT_OK



def cmd_reset_stale(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    store, desc = open_store(args, write=not args.dry_run)
    try:
        if args.dry_run:
            shards = store.stale_leases(args.older_than, run_id=args.run_id)
        else:
            shards = store.reset_stale(args.older_than, run_id=args.run_id)
    finally:
        _close(store)
    data = {"database": desc, "run_id": args.run_id, "older_than_s": args.older_than, "dry_run": args.dry_run,
            "count": len(shards), "reset": shards}
    verb = "Would reset" if args.dry_run else "Reset"
    if not shards:
        text = f"No stale locks older than {_age(args.older_than)} in {desc}; nothing to reset."
    else:
        text = "\n".join([
            f"{verb} {len(shards)} stale shard(s) to pending in {desc}"
            + (out.style(" (dry run: nothing changed)", "yellow") if args.dry_run else ""),
            "",
            out.table(_STALE_HEADERS, _stale_rows(shards, time.time()), right=(4,)),
        ])
    return data, text, EXIT_OK



def _run_ids(store: Any) -> list[str]:
    """Run ids, newest run first."""
    return [r["run_id"] for r in store.runs()]



def cmd_report(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    import airflow_provider_worktree.core.health.figures as fig
    from airflow_provider_worktree.core.health.report import build_report

    store, desc = open_store(args)
    try:
        runs = [args.run_id] if args.run_id else _run_ids(store)
        reports = [build_report(store, run) for run in runs]
    finally:
        _close(store)
    data = {"database": desc, "runs": reports}
    if not reports:
        return data, f"No runs in {desc}.", EXIT_OK
    lines: list[str] = []
    for rep in reports:
        t = rep["totals"]
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(t["by_status"].items())) or fig.NO_SHARDS
        dur = ""
        if t.get("avg_duration_s") is not None:
            dur = (f"; duration avg {fig.format_duration(t['avg_duration_s'])}, "
                   f"max {fig.format_duration(t['max_duration_s'])}")
        lines += [
            out.style(f"Run {rep['run_id']}", "bold") + (f" ({fig.OFFLINE_MARK})" if t.get("offline") else ""),
            f"  shards: {t['shards']} ({by_status}){dur}",
            f"  tokens: {fig.format_tokens(t)}",
            f"  cost {fig.format_cost(t['cost_usd'], t.get('offline'))}; files changed {t['files_changed']}",
            "",
        ]
        rows = [[s["shard_id"], out.status_cell(s["status"]), s["branch"] or "-", (s["commit_sha"] or "-")[:10],
                 fig.format_duration(s["duration_s"]), fig.format_tokens_short(s), fig.format_cost(s["cost_usd"])]
                for s in rep["shards"]]
        if rows:
            lines.append(out.table(["SHARD", "STATUS", "BRANCH", "COMMIT", "DURATION", fig.TOKENS_HEADING.upper(),
                                    "COST"], rows, right=(4, 5, 6)))
        for f in rep["failed"]:
            room = (out.width or 10**6) - len(f"  failed {f['shard_id']}: ")
            lines.append(f"  {out.style('failed', 'red')} {f['shard_id']}: {_short(f['error'], max(20, room))}")
        for u in rep.get("unfinished") or []:  # neither completed nor failed: the work is not done
            room = (out.width or 10**6) - len(f"  not done {u['shard_id']} ({u['status']}): ")
            lines.append(f"  {out.style('not done', 'yellow')} {u['shard_id']} ({u['status']}): "
                         f"{_short(u['error'], max(20, room))}")
        lines.append("")
    return data, "\n".join(lines).rstrip(), EXIT_OK



def cmd_batches(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        runs = [args.run_id] if args.run_id else _run_ids(store)
        states = [st for st in (store.batch_state(run) for run in runs) if st["parts"] or st["entries"]]
    finally:
        _close(store)
    data = {"database": desc, "runs": states}
    if not states:
        return data, f"No batch-mode run in {desc}" + (f" for run {args.run_id}." if args.run_id else "."), EXIT_OK
    lines: list[str] = []
    for st in states:
        entries = ", ".join(f"{n} {s}" for s, n in sorted(st["entries"].items()))
        lines += [out.style(f"Run {st['run_id']}", "bold") + ("" if st["collected"] else " (waiting for the batch)"),
                  f"  entries: {entries}; batch cost ${st['cost_usd']:.4f}"]
        for key, what in (("interactive", "run interactively"), ("over_budget", "not sent, over the budget")):
            if st[key]:
                lines.append(f"  {what}: {', '.join(st[key][:10])}" + (" ..." if len(st[key]) > 10 else ""))
        rows = [[str(p["part"]), p["batch_id"] or "(not recorded)", p["status"], str(p["requests"]),
                 " ".join(f"{k}={v}" for k, v in p["request_counts"].items() if v) or "-"] for p in st["parts"]]
        if rows:
            lines.append(out.table(["PART", "BATCH", "STATUS", "REQUESTS", "COUNTS"], rows, right=(0, 3)))
        lines.append("")
    return data, "\n".join(lines).rstrip(), EXIT_OK



def cmd_prune(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    manager = _manager(args.repo, args.worktree_root)
    try:
        report = manager.prune(older_than=args.older_than, dry_run=args.dry_run)
    except WorktreeProviderError as exc:
        raise CliError(f"prune failed: {exc}") from None
    data = {"repo": manager.repo, "worktree_root": manager.worktree_root, "older_than_s": args.older_than,
            **jsonable(report.to_dict())}
    data["dry_run"] = args.dry_run
    lines = [f"{out.style('Prune', 'bold')} {manager.repo}: worktrees under {manager.worktree_root} older than "
             f"{_age(args.older_than)}" + (out.style(" (dry run: nothing changed)", "yellow") if args.dry_run else "")]
    actions = data.get("actions") or []
    if actions:
        lines += [""] + [f"  {'would ' if args.dry_run else ''}{a}" for a in actions]
    else:
        lines += ["", "  nothing to prune"]
    for s in data.get("salvaged") or []:
        lines.append(f"  {out.style('salvaged', 'yellow')} uncommitted work of {s.get('path')} to branch {s.get('branch')}")
    for s in data.get("skipped") or []:
        lines.append(f"  {out.style('skipped', 'dim')} {s.get('path')}: {s.get('reason')}")
    for e in data.get("errors") or []:
        lines.append(f"  {out.style('error', 'red')} {e.get('path')}: {e.get('error')}")
    lines += ["", f"removed {len(data.get('removed') or [])}, orphans removed "
                  f"{len(data.get('orphans_removed') or [])}, salvaged {len(data.get('salvaged') or [])}, "
                  f"skipped {len(data.get('skipped') or [])}, errors {len(data.get('errors') or [])}"]
    return data, "\n".join(lines), EXIT_ERROR if data.get("errors") else EXIT_OK



def cmd_check(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    thresholds = _thresholds(args)
    store, desc = open_store(args)
    manager = _manager(args.repo, args.worktree_root) if args.repo else None
    try:
        metrics = collect_metrics(store, run_id=args.run_id, worktree_root=args.worktree_root, manager=manager,
                                  stale_after_s=args.stale_after)
    finally:
        _close(store)
    alerts = evaluate(metrics, thresholds)
    level = worst_level(alerts)
    data = {"database": desc, "run_id": args.run_id, "level": level,
            "metrics": {k: v for k, v in metrics.items() if k in METRICS},
            "alerts": [a.to_dict() for a in alerts]}
    rows = []
    for a in alerts:
        spec = METRICS[a.metric]
        warn, crit = thresholds.levels(a.metric)
        sign = ">" if spec.direction == "above" else "<"
        rows.append([spec.label, format_value(a.metric, a.value), f"{sign} {format_value(a.metric, warn)}",
                     f"{sign} {format_value(a.metric, crit)}", out.level_cell(a.level), a.action or "-"])
    skipped = [METRICS[m].label for m in METRICS if m not in {a.metric for a in alerts}]
    lines = [f"{out.style('Health check', 'bold')}: {desc}" + (f"  (run {args.run_id})" if args.run_id else ""), "",
             out.table(["METRIC", "VALUE", "WARNING", "CRITICAL", "LEVEL", "ACTION"], rows, right=(1,))]
    if skipped:
        lines += ["", out.style(f"Not measured: {', '.join(skipped)}"
                                + (" (pass --repo or --worktree-root)" if not (args.repo or args.worktree_root)
                                   else ""), "dim")]
    lines += ["", f"Overall: {out.level(level.upper())}"]
    code = {OK: EXIT_OK, WARNING: EXIT_WARNING, CRITICAL: EXIT_CRITICAL}[level]
    if args.quiet and level == OK:  # cron mails whatever a job prints: nothing when all is well
        return data, None, code
    return data, "\n".join(lines), code



def cmd_thresholds(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    thresholds = _thresholds(args)
    data = {"thresholds": thresholds.to_dict(), "metrics": {
        name: {"label": spec.label, "direction": spec.direction, "unit": spec.unit, "action": spec.action,
               "warning": thresholds.levels(name)[0], "critical": thresholds.levels(name)[1]}
        for name, spec in METRICS.items()}}
    rows = []
    for name, spec in METRICS.items():
        warn, crit = thresholds.levels(name)
        sign = ">" if spec.direction == "above" else "<"
        rows.append([spec.label, name, f"{sign} {format_value(name, warn)}", f"{sign} {format_value(name, crit)}",
                     spec.action])
    text = out.table(["METRIC", "KEY", "WARNING", "CRITICAL", "ACTION"], rows)
    return data, text, EXIT_OK
