"""Rollout pacing: at most K new pull requests per window, and none while more than M of the campaign's open pull
requests have checks pending, so an organisation's CI is not flooded. Decided from the changesets the shard
database records for the campaign's head (their ``created_at`` and ``checks``), so every worker and every run of
the campaign sees the same count."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_provider_worktree.core.campaigns.types import Pacing


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def may_open(pacing: Pacing, changesets: Iterable[Mapping[str, Any]], head: str, now: float,
             ) -> tuple[bool, str, float | None]:
    """(allowed, reason, seconds until a place frees up when known) for opening one more pull request of ``head``.
    ``changesets``: the store's rows (only ``head``'s count)."""
    rows = [c for c in changesets if c["head"] == head and c.get("number")]
    if pacing.max_pending_checks is not None:
        pending = sum(1 for c in rows if c["external_state"] == "open" and c["checks"] == "pending")
        if pending > pacing.max_pending_checks:
            return False, (f"{pending} of the campaign's pull requests have checks pending (the limit is "
                           f"{pacing.max_pending_checks}): no new one until CI catches up"), None
    if pacing.max_new_prs is not None:
        since = now - pacing.window_s
        recent = sorted(t for t in (_epoch(c.get("created_at")) for c in rows) if t is not None and t > since)
        if len(recent) >= pacing.max_new_prs:
            wait = (recent[len(recent) - pacing.max_new_prs] + pacing.window_s) - now if pacing.max_new_prs else None
            return False, (f"{len(recent)} new pull requests in the last {pacing.window_s:g}s (the limit is "
                           f"{pacing.max_new_prs})"), wait
    return True, "", None


def gate(store: Any, campaign: str, forge: str, repository: str, head: str, now: float) -> tuple[bool, str]:
    """May this run publish ``repository`` for ``campaign``? An update of an open pull request always may; a new
    one only within the campaign's pacing (its recorded spec; a campaign not recorded has the default pacing)."""
    from airflow_provider_worktree.core.campaigns.types import CampaignSpec

    rows = store.changesets()
    mine = [r for r in rows if r["forge"] == forge and r["head"] == head]
    if any(r["repository"] == repository and r["external_state"] == "open" and r.get("number") for r in mine):
        return True, ""
    record = store.campaign(campaign)
    pacing = CampaignSpec.from_dict(record["spec"]).pacing if record else Pacing()
    allowed, reason, wait = may_open(pacing, mine, head, now)
    if not allowed and wait is not None:
        reason += f"; a place frees up in {max(0.0, wait):.0f}s"
    return allowed, reason
