"""ChangesetSensor: wait, deferred in the triggerer, until a run's pull requests (GitHub) or merge requests (GitLab)
are merged, closed or reviewed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
from airflow_provider_worktree.triggers.changesets import CONDITIONS, ChangesetTrigger
from airflow_provider_worktree.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context


class ChangesetSensor(BaseSensorOperator):
    """Wait until ``condition`` holds for the changesets of ``repository`` (all open ones recorded in the shard
    database, or those of ``run_id``), syncing them from GitHub from the triggerer (no worker slot is held).

    :param condition: ``merged_or_closed`` (default), ``merged`` or ``reviewed``.
    :param repository: only this ``owner/name``; default: every repository.
    :param poll_interval: seconds between polls (conditional requests: an unchanged poll costs no rate limit).
    :param timeout: seconds before the sensor fails (the changesets stay as they are).
    """

    template_fields: Sequence[str] = ("repository", "condition")

    def __init__(self, *, condition: str = "merged_or_closed", repository: str | None = None,
                 github_conn_id: str = "github_default", gitlab_conn_id: str = "gitlab_default",
                 shard_status_conn_id: str = ShardStatusHook.default_conn_name, poll_interval: float = 300.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("retries", 1)  # a known upstream race can fail short deferred tasks
        super().__init__(**kwargs)
        self.condition, self.repository = condition, repository
        self.github_conn_id, self.shard_status_conn_id = github_conn_id, shard_status_conn_id
        self.gitlab_conn_id = gitlab_conn_id
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> Any:
        if self.condition not in CONDITIONS:
            raise AirflowFailException(f"condition={self.condition!r} is not one of {CONDITIONS}")
        store = ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id).get_store()
        rows = [r for r in store.changesets(repository=self.repository) if r["number"]]
        if not rows:
            self.log.info("no published changeset%s: nothing to wait for",
                          f" of {self.repository}" if self.repository else "")
            return []
        targets = [{"forge": r["forge"], "repository": r["repository"], "number": r["number"], "head": r["head"]}
                   for r in rows]
        timeout = float(self.timeout) if self.timeout else None
        self.defer(trigger=ChangesetTrigger(targets, self.condition, self.github_conn_id, self.shard_status_conn_id,
                                            self.poll_interval, time.time() + timeout if timeout else None,
                                            self.gitlab_conn_id),
                   method_name="execute_complete",
                   timeout=timedelta(seconds=timeout) if timeout else None)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = event or {}
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"the changeset sync ended without success: {event}")
        self.log.info("%s", event.get("message"))
        return event.get("changesets")
