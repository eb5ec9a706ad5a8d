"""Deferrable wait of :class:`~airflow_provider_worktree.sensors.changesets.ChangesetSensor`: sync a run's pull
requests from the triggerer until a condition holds.

Each poll syncs every changeset not yet final through :class:`~airflow_provider_worktree.core.forge.GitHubForge`
(in a thread, like the official providers' triggers), records it in the shard database, and checks the condition.
Polling again is a conditional request per pull request (``If-None-Match``), so an unchanged pull request costs no
rate limit. Transient failures are tolerated up to ``MAX_CONSECUTIVE_POLL_FAILURES`` in a row (the official
Anthropic provider's constant). The deadline is wall clock, so it survives a triggerer restart.

Conditions: ``merged_or_closed`` (every changeset merged or closed), ``merged`` (every one merged), ``reviewed``
(every open one approved or with changes requested).

One event: ``{"status": "success", "changesets": [...]}``, ``{"status": "error", "message"}``, or
``{"status": "timeout", "message", "changesets"}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.anthropic.hooks.anthropic import MAX_CONSECUTIVE_POLL_FAILURES
from airflow.triggers.base import BaseTrigger, TriggerEvent

CONDITIONS = ("merged_or_closed", "merged", "reviewed")


def condition_holds(condition: str, changesets: list[dict[str, Any]]) -> bool:
    if condition == "merged":
        return all(c["external_state"] == "merged" for c in changesets)
    if condition == "reviewed":
        return all(c["external_state"] != "open" or c["review"] in ("approved", "changes_requested")
                   for c in changesets)
    return all(c["external_state"] in ("merged", "closed") for c in changesets)


class ChangesetTrigger(BaseTrigger):
    """Sync ``changesets`` (``[{forge, repository, number, head}]``) until ``condition`` holds for all of them.

    :param github_conn_id: the GitHub connection (resolved in the triggerer: no token travels in the kwargs).
    :param gitlab_conn_id: the GitLab connection, likewise.
    :param shard_status_conn_id: where the synced states are recorded.
    :param poll_interval: seconds between polls. :param end_time: wall-clock deadline (epoch seconds) or None.
    """

    def __init__(self, changesets: list[dict[str, Any]], condition: str = "merged_or_closed",
                 github_conn_id: str = "github_default", shard_status_conn_id: str | None = None,
                 poll_interval: float = 300.0, end_time: float | None = None,
                 gitlab_conn_id: str = "gitlab_default") -> None:
        super().__init__()
        self.changesets = [dict(c) for c in changesets]
        self.condition = condition
        self.github_conn_id = github_conn_id
        self.gitlab_conn_id = gitlab_conn_id
        self.shard_status_conn_id = shard_status_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self._forges: dict[str, Any] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"changesets": self.changesets, "condition": self.condition, "github_conn_id": self.github_conn_id,
                 "shard_status_conn_id": self.shard_status_conn_id, "poll_interval": self.poll_interval,
                 "end_time": self.end_time, "gitlab_conn_id": self.gitlab_conn_id})

    def _sync_all(self) -> list[dict[str, Any]]:
        from airflow_provider_worktree.hooks.forges import forge_for
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        store = (ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id).get_store()
                 if self.shard_status_conn_id else None)
        out = []
        for c in self.changesets:
            name = c.get("forge", "github")
            if name not in self._forges:  # kept across polls: its pull requests carry the ETags of the conditional requests
                self._forges[name] = forge_for(name, self.github_conn_id if name == "github" else self.gitlab_conn_id,
                                               logger=self.log)
            synced = self._forges[name].sync(c["repository"], int(c["number"]), c["head"]).to_dict()
            if store is not None and synced["action"] != "unchanged":
                store.record_changeset(synced)
            out.append(synced)
        return out

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failures = 0
        while True:
            try:
                states = await asyncio.to_thread(self._sync_all)
            except Exception as exc:  # noqa: BLE001 - transient polling errors are tolerated a few times
                failures += 1
                if failures >= MAX_CONSECUTIVE_POLL_FAILURES:
                    yield TriggerEvent({"status": "error", "message": f"syncing {len(self.changesets)} changeset(s) "
                                        f"failed {failures} times in a row: {type(exc).__name__}: {exc}"})
                    return
                self.log.warning("syncing changesets failed (%s); retrying", exc)
            else:
                failures = 0
                if condition_holds(self.condition, states):
                    yield TriggerEvent({"status": "success", "changesets": states,
                                        "message": f"{self.condition}: every changeset"})
                    return
                waiting = [f"{c['repository']}#{c['number']} ({c['external_state']}, review {c['review']})"
                           for c in states if not condition_holds(self.condition, [c])]
                self.log.info("waiting for %s: %s", self.condition, ", ".join(waiting))
            if self.end_time is not None and time.time() > self.end_time:
                yield TriggerEvent({"status": "timeout", "changesets": states if failures == 0 else [],
                                    "message": f"the changesets did not reach {self.condition} before the deadline"})
                return
            await asyncio.sleep(self.poll_interval)
