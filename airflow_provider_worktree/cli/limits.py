"""``limits``: the shared rate limiter's state (each scope's limits, what is left, a 429's block, the spend cap,
calls in flight) and each run's figures; ``limits clear SCOPE`` forgets a scope's state (after the spend limit
was raised in the Anthropic Console, or to drop learnt limits)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from airflow_provider_worktree.cli.common import EXIT_OK, CliError
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import _close, open_store
from airflow_provider_worktree.core.health.report import rate_limit_line
from airflow_provider_worktree.core.ratelimit import run_figures


def cmd_limits(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    if args.action == "clear":
        return _clear(args, out)
    if args.scope:
        raise CliError(f"`limits {args.scope}`: give `limits` to show every scope, or `limits clear {args.scope}`")
    store, desc = open_store(args)
    try:
        scopes = store.rate_scopes()
        runs = store.rate_runs(args.run_id)
    finally:
        _close(store)
    states = {s["scope"]: s["state"] for s in scopes}
    now = time.time()
    data = {"database": desc, "scopes": [_scope_view(s, now) for s in scopes],
            "runs": [{"run_id": r["run_id"], **run_figures(r, states.get(r["scope"]))} for r in runs]}
    if not scopes and not runs:
        return data, (f"No shared rate limit recorded in {desc}: no run used one yet (runner_options "
                      "rate_limit='shared' is the default for the api runner with a shard database)."), EXIT_OK
    lines: list[str] = []
    for view in data["scopes"]:
        head = out.style(view["scope"], "bold")
        if view["spend_cap"]:
            head += " " + out.style(f"STOPPED: spend limit reached ({view['spend_cap']})", "red")
        elif view["blocked_for_s"]:
            head += " " + out.style(f"blocked {view['blocked_for_s']:.0f}s more by a 429", "yellow")
        lines.append(head)
        lines.append(f"  in flight: {view['in_flight']} call(s), {view['sessions']} session(s), "
                     f"{view['waiting']} waiting; concurrency {view['concurrency']:g} of {view['max_concurrency']}")
        rows = [[b["bucket"], f"{b['limit']:,.0f}", f"{b['period_s']:g}s", f"{max(0, b['level']):,.0f}",
                 b["source"]] for b in view["buckets"]]
        if rows:
            lines.append(out.table(["BUCKET", "LIMIT", "PER", "LEFT", "FROM"], rows, right=(1, 3)))
        lines.append("")
    if data["runs"]:
        lines.append(out.style("Runs", "bold"))
        lines += [f"  {r['run_id']}  {rate_limit_line(r)}" for r in data["runs"][:20]]
    return data, "\n".join(lines).rstrip(), EXIT_OK


def _scope_view(scope: dict[str, Any], now: float) -> dict[str, Any]:
    st = scope["state"] or {}
    inflight = (st.get("inflight") or {}).values()
    buckets = [{"bucket": name, "limit": b["limit"], "period_s": b["period"], "level": b["level"],
                "source": " and ".join(k for k in ("configured", "learnt") if b.get(k)) or "-"}
               for name, b in sorted((st.get("buckets") or {}).items())]
    return {"scope": scope["scope"], "updated_at": scope["updated_at"], "buckets": buckets,
            "in_flight": sum(1 for e in inflight if e.get("kind", "call") == "call"),
            "sessions": sum(1 for e in inflight if e.get("kind") == "session"),
            "waiting": len(st.get("queue") or {}), "concurrency": round(float(st.get("concurrency") or 0), 2),
            "max_concurrency": st.get("max_concurrency"),
            "blocked_for_s": max(0.0, float(st.get("block_until") or 0) - now),
            "spend_cap": (st.get("spend_cap") or {}).get("message")}


def _clear(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    if not args.scope:
        raise CliError("`limits clear` needs the scope to clear, e.g. `limits clear anthropic:anthropic_default` "
                       "(`limits` lists them)")
    store, desc = open_store(args, write=True)
    try:
        known = [s["scope"] for s in store.rate_scopes()]
        if args.scope not in known:
            raise CliError(f"no shared rate limit named {args.scope!r} in {desc}; known: {', '.join(known) or 'none'}")
        store.rate_clear(args.scope)
    finally:
        _close(store)
    return ({"database": desc, "cleared": args.scope},
            f"Cleared {args.scope}: its block, spend cap and learnt limits are gone; the next call learns them again.",
            EXIT_OK)
