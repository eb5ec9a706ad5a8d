"""One campaign run over many repositories: each repository's shards carry its prefix (so the shards of every
repository map in one DAG run without two sharing an id), the plan's shard budget is split so the run fits
``[core] max_map_length``, and the run's outcome per repository is summed up with the campaign's totals, including
the cost per merged change."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_worktree.core.campaigns.types import Target


def repo_prefix(repository: str) -> str:
    """``<slug>-<hash>--``: a shard id prefix naming the repository (unique: the hash of its full name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")[:32] or "repo"
    return f"{slug}-{hashlib.sha1(repository.encode()).hexdigest()[:6]}--"


def shard_budget(max_map_length: int, targets: int) -> int:
    """Most shards per repository so that every repository's shards map in one run."""
    return max(1, int(max_map_length) // max(1, int(targets)))


def prefixed(shards: Iterable[Mapping[str, Any]], target: Target) -> list[dict[str, Any]]:
    """The repository's shards with ids prefixed by :func:`repo_prefix`."""
    prefix = repo_prefix(target.repository)
    return [{**s, "shard_id": prefix + s["shard_id"]} for s in shards]


def summarize(campaign: str, rows: Iterable[Mapping[str, Any]], changesets: Iterable[Mapping[str, Any]],
              reports: Mapping[str, Mapping[str, Any]], head: str) -> dict[str, Any]:
    """The campaign run's table: per repository its outcome, shards completed and failed, pull request and cost
    (``reports``: each repository's run report, by repository), and the totals with the cost per merged change
    (every recorded cost of the campaign's repositories over its merged pull requests)."""
    merged = {c["repository"] for c in changesets if c["head"] == head and c["external_state"] == "merged"}
    out, cost = [], 0.0
    for r in rows:
        rep = reports.get(r["repository"]) or {}
        by = (rep.get("totals") or {}).get("by_status") or {}
        c = float((rep.get("totals") or {}).get("cost_usd") or 0.0)
        cost += c
        out.append({"repository": r["repository"], "outcome": r["outcome"], "reason": r.get("reason"),
                    "url": r.get("url"), "completed": by.get("completed", 0), "failed": by.get("failed", 0),
                    "cost_usd": round(c, 6), "merged": r["repository"] in merged})
    failed = [x for x in out if x["outcome"] in ("failed", "rate-limited")]
    return {"campaign": campaign, "repositories": out, "totals": {
        "repositories": len(out), "failed": len(failed), "merged": len(merged),
        "cost_usd": round(cost, 6), "cost_per_merged_usd": round(cost / len(merged), 6) if merged else None}}


def markdown(summary: Mapping[str, Any], run_id: str) -> str:
    t = summary["totals"]
    per = f"${t['cost_per_merged_usd']:.4f}" if t["cost_per_merged_usd"] is not None else "none merged yet"
    lines = [f"# Campaign `{summary['campaign']}`, run `{run_id}`", "",
             f"- Repositories: {t['repositories']} ({t['failed']} failed); merged: {t['merged']}",
             f"- Cost: ${t['cost_usd']:.4f}; cost per merged change: {per}", "",
             "| repository | outcome | shards ok | shards failed | pull request | cost | why |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["repositories"]:
        lines.append(f"| {r['repository']} | {r['outcome']} | {r['completed']} | {r['failed']} | {r['url'] or '-'} "
                     f"| ${r['cost_usd']:.4f} | {(r['reason'] or '').replace('|', '/')[:200]} |")
    return "\n".join(lines) + "\n"


def sync_open(store: Any, forge_of: Any, head: str) -> list[tuple[dict[str, Any], Any, str | None]]:
    """The open changesets of ``head``, each synced from its forge now and recorded: ``(row, changeset, None)``, or
    ``(row, None, error)`` when the sync failed (the failure is recorded on the row)."""
    from airflow_provider_worktree.core.forge.types import ForgeError

    out = []
    for row in store.changesets():
        if row["head"] != head or row["external_state"] != "open" or not row["number"]:
            continue
        try:
            synced = forge_of(row["forge"]).sync(row["repository"], row["number"], row["head"])
        except ForgeError as exc:
            store.record_changeset_failure(row["forge"], row["repository"], row["head"], str(exc))
            out.append((row, None, str(exc)))
            continue
        store.record_changeset(synced.to_dict())
        out.append((row, synced, None))
    return out


def auto_merge(store: Any, forge_of: Any, campaign: str, head: str, *, run_id: str | None = None,
               require_approval: bool = True, method: str | None = None) -> list[dict[str, Any]]:
    """Merge the campaign's pull requests whose checks pass and whose review allows it (approved; or, without
    ``require_approval``, anything but changes requested), each synced from the forge first; drafts are never
    merged. Each merge tries the methods in turn (:func:`~airflow_provider_worktree.core.forge.actions.run_bulk`).
    Merged repositories get the outcome ``merged``; one that fails keeps its outcome, with the reason logged in the
    result. Returns one result per changeset considered."""
    from airflow_provider_worktree.core.forge.actions import run_bulk

    results, ready = [], []
    for row, synced, error in sync_open(store, forge_of, head):
        if synced is None:
            results.append({"repository": row["repository"], "result": "failed", "reason": f"not synced: {error}"})
            continue
        synced = synced.to_dict()
        review_ok = synced["review"] == "approved" or (not require_approval and synced["review"] != "changes_requested")
        why = ("a draft" if synced["publication"] == "draft" else f"checks {synced['checks']}"
               if synced["checks"] != "passing" else f"review {synced['review']}" if not review_ok else "")
        if why:
            results.append({"repository": row["repository"], "result": "waiting", "reason": why})
        else:
            ready.append(synced)
    for res in run_bulk("merge", ready, forge_of, store, method=method):
        results.append({"repository": res.repository, "result": res.result, "reason": res.reason, "url": res.url})
        if res.result == "ok":
            store.record_campaign_outcome(campaign, res.repository, "merged", reason=res.reason, run_id=run_id,
                                          url=res.url)
    return results
