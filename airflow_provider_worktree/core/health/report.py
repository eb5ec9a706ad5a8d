"""A run's report: per shard status, branch, commit, diffstat, tokens, cost, duration; totals; failures.

Tokens and cost are every attempt's, summed (the shard row's cumulative columns; each attempt is listed
too); a shard's Message Batches entry is its attempt 0 (status ``batch``), so batch and interactive cost are
shown apart. Input tokens are shown whole: uncached plus cache reads plus cache writes. A run against the offline
test double is labelled as such: its cost is what the model's prices would have been, nothing was billed. The
figures are worded by :mod:`.figures`, as the CLI and the dashboard word them.

Plain Python (no Airflow import); the example DAG's aggregate step and ``airflow-worktree report`` both
build it here. :func:`merge_branches` makes the optional integration branch, listing conflicts instead of
failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_provider_worktree.core.git.command import run_git
from airflow_provider_worktree.core.health.figures import (
    NO_SHARDS,
    TOKENS_HEADING,
    format_cost,
    format_duration,
    format_tokens,
    format_tokens_short,
    input_total,
    is_offline,
)
from airflow_provider_worktree.core.health.metrics import to_epoch
from airflow_provider_worktree.core.ratelimit.limiter import run_figures

_TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _duration_s(row: dict) -> float | None:
    start, end = to_epoch(row.get("started_at")), to_epoch(row.get("completed_at"))
    return round(end - start, 3) if start is not None and end is not None else None


_ATTEMPT_KEYS = ("attempt", "status", "worker_id", "started_at", "ended_at", "isolation", "commit_sha",
                 "error_message", *_TOKEN_KEYS, "cost_usd")


def build_report(store: Any, run_id: str, *, shard_prefix: str | None = None) -> dict:
    """Collect the run's shards (and each shard's attempts) from the store into a JSON-safe report; with
    ``shard_prefix``, only the shards whose id starts with it (one repository of a campaign run)."""
    rows = store.list_shards(run_id=run_id)
    if shard_prefix:
        rows = [r for r in rows if r["shard_id"].startswith(shard_prefix)]
    attempts: dict[str, list[dict]] = {}
    for a in (store.list_attempts(run_id) if hasattr(store, "list_attempts") else []):
        attempts.setdefault(a["shard_id"], []).append({k: a.get(k) for k in _ATTEMPT_KEYS})
    shards = []
    totals: dict[str, Any] = {k: 0 for k in _TOKEN_KEYS}
    totals.update(cost_usd=0.0, shards=len(rows), by_status={}, files_changed=0, input_total=0, attempts=0,
                  offline=False, isolation=[], batch_cost_usd=0.0, interactive_cost_usd=0.0, batch_shards=0)
    for row in sorted(rows, key=lambda r: r["shard_id"]):
        summary = row.get("result_summary") or {}
        entry = {
            "shard_id": row["shard_id"],
            "status": row["status"],
            "attempt": row.get("attempt"),
            "worker_id": row.get("worker_id"),
            "branch": row.get("branch"),
            "commit_sha": row.get("commit_sha"),
            "diffstat": row.get("diffstat") or "",
            "files_changed": row.get("files_changed") or [],
            "duration_s": _duration_s(row),
            "cost_usd": float(row.get("cost_usd") or 0.0),
            "error_message": row.get("error_message"),
            **{k: int(row.get(k) or 0) for k in _TOKEN_KEYS},
            "input_total": input_total(row),
            "isolation": row.get("isolation"),
            "model": summary.get("model") if isinstance(summary, dict) else None,
            "offline": is_offline(row),
            "excluded_files": (summary.get("excluded_files") if isinstance(summary, dict) else None) or [],
            "verify_output": _verify_output(row, summary),
            "attempts": attempts.get(row["shard_id"], []),
        }
        entry["batch_cost_usd"] = round(sum(float(a.get("cost_usd") or 0) for a in entry["attempts"]
                                            if a["status"] == "batch"), 6)
        entry["mode"] = "batch" if any(a["status"] == "batch" for a in entry["attempts"]) else "interactive"
        shards.append(entry)
        totals["batch_shards"] += entry["mode"] == "batch"
        totals["batch_cost_usd"] = round(totals["batch_cost_usd"] + entry["batch_cost_usd"], 6)
        totals["interactive_cost_usd"] = round(totals["interactive_cost_usd"] + entry["cost_usd"]
                                               - entry["batch_cost_usd"], 6)
        for k in (*_TOKEN_KEYS, "input_total"):
            totals[k] += entry[k]
        totals["attempts"] += int(entry["attempt"] or 0)
        totals["offline"] = totals["offline"] or entry["offline"]
        if entry["isolation"] and entry["isolation"] not in totals["isolation"]:
            totals["isolation"].append(entry["isolation"])
        totals["cost_usd"] = round(totals["cost_usd"] + entry["cost_usd"], 6)
        totals["files_changed"] += len(entry["files_changed"])
        totals["by_status"][entry["status"]] = totals["by_status"].get(entry["status"], 0) + 1
    durations = [s["duration_s"] for s in shards if s["duration_s"] is not None]
    totals["max_duration_s"] = max(durations, default=None)
    totals["avg_duration_s"] = round(sum(durations) / len(durations), 3) if durations else None
    failed = [{"shard_id": s["shard_id"], "error": s["error_message"]} for s in shards if s["status"] == "failed"]
    unfinished = [{"shard_id": s["shard_id"], "status": s["status"], "error": _why_unfinished(s)}
                  for s in shards if s["status"] not in ("completed", "failed")]
    accepted = sum(1 for s in shards if s["status"] == "completed" and s["commit_sha"])
    totals["accepted"] = accepted
    totals["cost_per_accepted_usd"] = round(totals["cost_usd"] / accepted, 6) if accepted else None
    return {"run_id": run_id, "totals": totals, "failed": failed, "unfinished": unfinished, "shards": shards,
            "integration": None, "rate_limits": rate_limit_figures(store, run_id)}


def rate_limit_figures(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's figures under each shared rate limit it used (empty without the shared limiter)."""
    if not hasattr(store, "rate_runs"):
        return []
    try:
        rows = store.rate_runs(run_id)
        states = {s["scope"]: s["state"] for s in store.rate_scopes()} if rows else {}
    except Exception:  # noqa: BLE001 - a database older than schema 5 read as it is: no figures, no failure
        return []
    return [run_figures(r, states.get(r["scope"])) for r in rows]


def rate_limit_line(f: dict[str, Any]) -> str:
    """One scope's figures in one line (the report, the CLI)."""
    tpm = (f"{f['input_tpm']:,} input tokens/min" + (f" of the {f['input_tpm_limit']:,} limit ({f['of_limit']:.0%})"
                                                     if f.get("of_limit") is not None else "")
           if f.get("input_tpm") is not None else "no call settled")
    return (f"{f['scope']}: {f['calls']} calls, {f['throttled']} answered 429 ({f['throttled_share']:.1%}), "
            f"{f['wait_s']:g}s waiting over {f['waits']} waits; {tpm}")


#: Characters of a failed verify's output the report shows (the end, where the cause usually is).
VERIFY_EXCERPT_CHARS = 1500


def _verify_output(row: dict, summary: Any) -> str | None:
    """The end of a failed shard's verify output, marked when cut (the lifecycle keeps its last 2,000
    characters; the task log has all of it)."""
    verify = summary.get("verify") if isinstance(summary, dict) else None
    if row.get("status") != "failed" or not isinstance(verify, dict) or verify.get("ok"):
        return None
    tail = str(verify.get("output_tail") or "")
    if len(tail) > VERIFY_EXCERPT_CHARS or len(tail) >= 2000:
        tail = "[... earlier output cut: the task log has all of it]\n" + tail[-VERIFY_EXCERPT_CHARS:]
    return tail or None


def _why_unfinished(shard: dict) -> str:
    """Why a shard is neither completed nor failed when the report is written: the work is not done."""
    tries = [a for a in shard.get("attempts") or [] if a.get("status") != "batch"]
    last = next((a.get("error_message") for a in reversed(tries) if a.get("error_message")), None)
    if shard["status"] == "running":
        return (f"still running (lease held by {shard.get('worker_id') or 'an unknown worker'}) when the report was "
                "written: its task ended without releasing it, or a worker died; `airflow-worktree stale` lists it")
    if not tries:
        return ("never claimed: its maintain task ended before claiming it (a configuration error, an upstream "
                "failure or a cancelled run); read that task's log")
    return (f"back to pending after {len(tries)} attempt(s) (a lease reset or released) and not tried again"
            + (f"; last error: {last}" if last else ""))


def render_markdown(report: dict) -> str:
    """The report as a Markdown page."""
    t = report["totals"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(t["by_status"].items())) or "none"
    if t.get("offline"):
        cost = (f"- Cost: {format_cost(t['cost_usd'], True)}: this run used the OFFLINE TEST DOUBLE, not Claude; "
                "the figure is what the model's list prices would have been")
    else:
        cost = f"- Cost: {format_cost(t['cost_usd'])} (every attempt, summed)"
    if t.get("batch_shards"):
        cost += (f"; Message Batches ${t['batch_cost_usd']:.4f} at batch prices ({t['batch_shards']} shard(s)), "
                 f"interactive ${t['interactive_cost_usd']:.4f}")
    lines = [
        f"# Maintenance run `{report['run_id']}`",
        "",
        f"- Shards: {t['shards']} ({statuses}); attempts: {t.get('attempts', 0)}",
        f"- Tokens: {format_tokens(t)}",
        cost,
        f"- Duration: avg {format_duration(t.get('avg_duration_s'))}, max {format_duration(t.get('max_duration_s'))}",
        "- Cost per accepted change: " + (f"${t['cost_per_accepted_usd']:.4f} ({t['accepted']} shard(s) verified and "
                                           "committed)" if t.get("cost_per_accepted_usd") is not None
                                           else "none accepted"),
        *(f"- Rate limit {rate_limit_line(f)}" for f in report.get("rate_limits") or []),
        f"- Isolation: {', '.join(t.get('isolation') or []) or 'not recorded'}",
        f"- Files changed: {t['files_changed']}",
        "",
        "| shard | status | attempts | branch | commit | diffstat | tokens | cost | isolation | duration |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not report["shards"]:  # a plan that matched no file: said plainly, not an empty table
        lines[-3:] = ["", NO_SHARDS[0].upper() + NO_SHARDS[1:] + "."]
    for s in report["shards"]:
        commit = (s["commit_sha"] or "")[:10]
        stat = (s["diffstat"].strip().splitlines() or [""])[-1].strip()
        dur = format_duration(s["duration_s"], none="")
        lines.append(
            f"| {s['shard_id']} | {s['status']} | {s['attempt'] or 0} | {s['branch'] or ''} | {commit} | {stat} | "
            f"{format_tokens(s)} | {format_cost(s['cost_usd'], s.get('offline'))} | {s.get('isolation') or ''} | "
            f"{dur} |"
        )
    retried = [s for s in report["shards"] if len([a for a in s.get("attempts") or [] if a["status"] != "batch"]) > 1]
    if retried:
        lines += ["", "## Attempts", "", f"| shard | attempt | status | worker | {TOKENS_HEADING} | cost | error |",
                  "|---|---|---|---|---|---|---|"]
        for s in retried:
            for a in s["attempts"]:
                err = (a.get("error_message") or "").splitlines()[0][:120] if a.get("error_message") else ""
                lines.append(f"| {s['shard_id']} | {a['attempt']} | {a['status']} | {a.get('worker_id') or ''} | "
                             f"{format_tokens_short(a)} | {format_cost(a.get('cost_usd'))} | {err} |")
    excluded = [s for s in report["shards"] if s.get("excluded_files")]
    if excluded:
        lines += ["", "## Files written outside a shard (not committed)", ""]
        lines += [f"- `{s['shard_id']}`: {', '.join(s['excluded_files'][:20])}" for s in excluded]
    if report["failed"]:
        lines += ["", "## Failed shards", ""]
        outputs = {s["shard_id"]: s.get("verify_output") for s in report["shards"]}
        for f in report["failed"]:
            lines.append(f"- `{f['shard_id']}`: {f['error']}")
            if outputs.get(f["shard_id"]):
                fence = "~~~~" if "```" in outputs[f["shard_id"]] else "```"
                lines += ["", "  <details><summary>verify output (its end)</summary>", "", f"  {fence}text",
                          *("  " + ln for ln in outputs[f["shard_id"]].splitlines()), f"  {fence}",
                          "  </details>", ""]
    if report.get("unfinished"):
        lines += ["", "## Shards not done", ""]
        lines += [f"- `{u['shard_id']}` ({u['status']}): {u['error']}" for u in report["unfinished"]]
    integ = report.get("integration")
    if integ:
        lines += ["", "## Integration branch", "", f"- Branch: `{integ['branch']}` at {integ.get('head') or '-'}",
                  f"- Merged: {len(integ['merged'])}"]
        for c in integ["conflicts"]:
            lines.append(f"- Conflict: `{c['branch']}` in {', '.join(c['files']) or 'unknown files'}")
    return "\n".join(lines) + "\n"


def write_report(report: dict, directory: str | Path) -> dict[str, str]:
    """Write ``<run>.md`` and ``<run>.json`` under ``directory/reports``; return their paths."""
    out = Path(directory) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in report["run_id"])
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report, indent=2, default=str))
    return {"markdown": str(md), "json": str(js)}


def merge_branches(manager: Any, branches: list[str], target: str, *, run_id: str, base_ref: str = "HEAD",
                   push: bool | None = None) -> dict:
    """Merge ``branches`` one by one into ``target``, made fresh from ``base_ref``.

    Works in a worktree of the manager's repository (the user's checkout is untouched; for a remote, the
    worker's clone cache, fetched first, with the shard branches read from ``origin``). A branch that
    conflicts is aborted and listed with its conflicting files; the others are merged. ``push`` (default:
    when the repository is remote) pushes ``target`` to ``origin``.
    """
    remote = manager.remote_url is not None
    if remote:
        manager.fetch()
    wt = manager.create_worktree(run_id, "integration", base_ref=base_ref, branch=target)
    merged: list[str] = []
    conflicts: list[dict] = []
    try:
        for branch in branches:
            ref = f"refs/remotes/origin/{branch}" if remote else f"refs/heads/{branch}"
            proc = run_git(["merge", "--no-ff", "--no-edit", "-q", ref], cwd=wt.path, check=False,
                           env=manager.author_env())
            if proc.returncode == 0:
                merged.append(branch)
                continue
            files = run_git(["diff", "--name-only", "--diff-filter=U"], cwd=wt.path, check=False).stdout.split()
            run_git(["merge", "--abort"], cwd=wt.path, check=False)
            conflicts.append({"branch": branch, "files": files,
                              "error": "" if files else (proc.stderr or proc.stdout).strip()[-500:]})
        head = run_git(["rev-parse", "HEAD"], cwd=wt.path).stdout.strip()
    finally:
        manager.remove_worktree(wt.path, force=True, keep_branch=True)
    pushed = bool(push if push is not None else remote) and bool(merged)
    if pushed:  # the branch is rebuilt from the base each time, so it replaces what an earlier run pushed
        manager.push(target, force=True)
    return {"branch": target, "head": head, "merged": merged, "conflicts": conflicts, "pushed": pushed}
