"""What a campaign run would do per repository, before any write (like ``terraform plan``).

Read from what is recorded, never from the forge: the selection, the campaign's last outcome per repository and the
changesets of its head branch in the shard database.

=========  ==========================================================================================
create     selected, no open pull request of the campaign's head (none yet, or the last one was closed)
update     selected, its pull request is open: a run with a diff updates it in place, one without closes it
close      no longer selected (or now skipped) while its pull request is still open
keep       its pull request was merged: nothing to do
skip       left out by the selection, with the reason
=========  ==========================================================================================

With ``only`` (``retry-failed``), repositories outside it are ``keep`` with the reason "not retried".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_worktree.core.campaigns.types import CampaignSpec, Selection

ACTIONS = ("create", "update", "close", "keep", "skip")


@dataclass(frozen=True)
class PlanEntry:
    repository: str
    action: str
    reason: str
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_campaign(spec: CampaignSpec, selection: Selection, changesets: Iterable[Mapping[str, Any]],
                  outcomes: Mapping[str, Mapping[str, Any]] | None = None, *,
                  only: Iterable[str] | None = None) -> list[PlanEntry]:
    """One entry per repository that is selected, skipped, or was in the campaign before (``outcomes``: the last
    outcome per repository, as the store keeps them). ``changesets``: the store's rows (any head; only the
    campaign's head counts)."""
    mine = {c["repository"]: c for c in changesets if c["head"] == spec.head}
    outcomes = dict(outcomes or {})
    wanted = None if only is None else set(only)
    out: list[PlanEntry] = []
    selected = {t.repository for t in selection.targets}
    for t in selection.targets:
        cs = mine.get(t.repository)
        if wanted is not None and t.repository not in wanted:
            out.append(PlanEntry(t.repository, "keep", "not retried (its last outcome did not fail)",
                                 cs and cs.get("url")))
        elif cs is None or cs["external_state"] == "closed" or not cs.get("number"):
            last = outcomes.get(t.repository, {}).get("outcome")
            why = "no pull request yet" if cs is None or not cs.get("number") else "its last pull request was closed"
            out.append(PlanEntry(t.repository, "create", why + (f" (last outcome: {last})" if last else ""),
                                 cs and cs.get("url")))
        elif cs["external_state"] == "merged":
            out.append(PlanEntry(t.repository, "keep", "its pull request was merged", cs.get("url")))
        else:
            out.append(PlanEntry(t.repository, "update", f"#{cs['number']} is open: updated in place, or closed "
                                 "if the run finds no diff", cs.get("url")))
    for s in selection.skipped:
        cs = mine.get(s.repository)
        if cs is not None and cs["external_state"] == "open" and cs.get("number"):
            out.append(PlanEntry(s.repository, "close", f"now skipped ({s.reason}) but #{cs['number']} is open",
                                 cs.get("url")))
        else:
            out.append(PlanEntry(s.repository, "skip", s.reason))
    gone = sorted((set(outcomes) | set(mine)) - selected - {s.repository for s in selection.skipped})
    for repo in gone:
        cs = mine.get(repo)
        if cs is not None and cs["external_state"] == "open" and cs.get("number"):
            out.append(PlanEntry(repo, "close", f"no longer selected but #{cs['number']} is open", cs.get("url")))
        else:
            out.append(PlanEntry(repo, "keep", "no longer selected; nothing open", cs and cs.get("url")))
    return out


def summary(entries: Iterable[PlanEntry]) -> dict[str, int]:
    counts = {a: 0 for a in ACTIONS}
    for e in entries:
        counts[e.action] += 1
    return counts
