""":class:`GitLabForge`: changesets as merge requests on gitlab.com or a self-managed GitLab, through python-gitlab.

The same contract as :class:`~.github.GitHubForge`. A changeset is identified by (project, source branch). The
open merge request of that branch is looked up first and updated in place. GitLab's ``409 "Another open merge
request already exists for this source branch"`` is read again as "already exists". A draft is a title starting
``Draft:``, the way GitLab marks it. The review state comes from the approvals (``approved``, else ``pending``),
and the checks from the head pipeline's status. Writes are paced by the shared limiter when one is given.
GitLab's limits are per instance (``docs/rate-limits.md``), so the limiter is configured by the caller.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_worktree.core.forge.types import Changeset, ChangesetSpec, ForgeError
from airflow_provider_worktree.core.ratelimit.headers import github_observation
from airflow_provider_worktree.core.ratelimit.limiter import LimitWaitTooLong, SpendCapReached

DRAFT = "Draft: "
_PIPELINE = {"success": "passing", "failed": "failing", "canceled": "failing", "running": "pending",
             "pending": "pending", "created": "pending", "waiting_for_resource": "pending", "preparing": "pending",
             "scheduled": "pending", "manual": "pending", "skipped": "passing"}
_FIXES = {401: "the token is invalid or expired: update the password of the GitLab connection",
          403: "the token lacks the api scope or the project forbids it (a protected branch): give it `api`",
          404: "the project does not exist or the token cannot see it: check the path and the token's access"}


class GitLabForge:
    """Merge requests on one GitLab (``client``: a ``gitlab.Gitlab``, e.g. ``GitLabHook(...).get_conn()``)."""

    name = "gitlab"

    def __init__(self, client: Any, *, limiter: Any = None, logger: logging.Logger | None = None) -> None:
        self.client = client
        self.limiter = limiter
        self.log = logger or logging.getLogger(__name__)

    def _error(self, what: str, exc: BaseException) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        status = getattr(exc, "response_code", None)
        message = getattr(exc, "error_message", None) or str(exc)
        if status is None:
            return ForgeError(f"{what}: GitLab could not be reached ({type(exc).__name__}: {exc}); the next run or "
                              "`changesets sync` resumes", retryable=True)
        retryable = status == 429 or status >= 500
        fix = ("GitLab's rate limit or a server error: retry later" if retryable else _FIXES.get(status, ""))
        return ForgeError(f"{what}: GitLab answered {status} {message}" + (f": {fix}" if fix else ""), status=status,
                          retryable=retryable)

    def _write(self, what: str, call: Any) -> Any:
        ticket = None
        if self.limiter is not None:
            try:
                ticket = self.limiter.acquire({"content_minute": 1})
            except (LimitWaitTooLong, SpendCapReached) as exc:
                raise ForgeError(f"{what}: not sent, the write limit is reached ({exc})", retryable=True) from None
        try:
            result = call()
        except Exception as exc:
            if ticket is not None:
                headers = getattr(getattr(exc, "response", None), "headers", None) or {}
                obs = github_observation(headers, getattr(exc, "response_code", None))  # retry-after: the same rule
                if getattr(exc, "response_code", None) == 429:
                    self.limiter.throttled(ticket, obs)
                else:
                    self.limiter.release(ticket)
            raise self._error(what, exc) from None
        if ticket is not None:
            self.limiter.settle(ticket, {"content_minute": 1})
        return result

    def _project(self, path: str) -> Any:
        try:
            return self.client.projects.get(path)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"project {path}", exc) from None

    def _user_ids(self, usernames: tuple[str, ...]) -> list[int]:
        """GitLab's user ids of ``usernames``; one GitLab does not know is left out with a warning."""
        ids = []
        for name in usernames:
            try:
                found = self.client.users.list(username=name, get_all=False)
            except Exception as exc:  # noqa: BLE001
                raise self._error(f"look up the user {name}", exc) from None
            if found:
                ids.append(found[0].id)
            else:
                self.log.warning("GitLab knows no user %r: not added as reviewer or assignee", name)
        return ids

    def clone_url(self, repository: str) -> str:
        return self._project(repository).http_url_to_repo

    def find_open(self, project: Any, head: str) -> Any | None:
        try:
            mrs = project.mergerequests.list(source_branch=head, state="opened", get_all=True)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"list merge requests of {project.path_with_namespace}", exc) from None
        return mrs[0] if mrs else None

    def changeset(self, project: Any, mr: Any, head: str, action: str = "") -> Changeset:
        try:
            approved = mr.approvals.get().approved if mr.state == "opened" else False
        except Exception:  # noqa: BLE001 - approvals are a paid feature on some instances: unknown is pending
            approved = False
        pipeline = (getattr(mr, "head_pipeline", None) or {}).get("status")
        return Changeset(forge=self.name, repository=project.path_with_namespace, head=head, base=mr.target_branch,
                         number=mr.iid, url=mr.web_url, title=mr.title,
                         publication="draft" if mr.title.startswith("Draft:") else "published",
                         external_state={"opened": "open", "locked": "open"}.get(mr.state, mr.state),
                         review="approved" if approved else "pending", checks=_PIPELINE.get(pipeline, "unknown"),
                         head_sha=mr.sha, action=action)

    def publish(self, spec: ChangesetSpec) -> Changeset:
        project = self._project(spec.repository)
        mr = self.find_open(project, spec.head)
        # a draft is marked ready when the spec is not a draft; a ready merge request never goes back to draft
        draft = spec.draft and (mr is None or str(mr.title).startswith("Draft:"))
        title = (DRAFT + spec.title) if draft and not spec.title.startswith("Draft:") else spec.title
        action = "unchanged"
        reviewers, assignees = self._user_ids(spec.reviewers), self._user_ids(spec.assignees)
        if mr is None:
            data = {"source_branch": spec.head, "target_branch": spec.base, "title": title,
                    "description": spec.body, "labels": ",".join(spec.labels)}
            data.update({k: v for k, v in (("reviewer_ids", reviewers), ("assignee_ids", assignees)) if v})
            try:
                mr = self._write(f"create the merge request {spec.repository} {spec.head} -> {spec.base}",
                                 lambda: project.mergerequests.create(data))
                action = "created"
            except ForgeError as exc:
                if exc.status != 409 or "already exists" not in str(exc):
                    raise
                mr = self.find_open(project, spec.head)
                if mr is None:
                    raise
        changed = action != "created" and (mr.title != title or (mr.description or "") != spec.body)
        missing = [x for x in spec.labels if x not in (mr.labels or [])]
        people = {}  # reviewers and assignees are added, never removed
        for key, attr, ids in (("reviewer_ids", "reviewers", reviewers), ("assignee_ids", "assignees", assignees)):
            have = [u["id"] for u in (getattr(mr, attr, None) or [])]
            if action != "created" and set(ids) - set(have):
                people[key] = have + [i for i in ids if i not in have]
        if changed or missing or people:
            mr.title, mr.description = title, spec.body
            if missing:
                mr.add_labels = ",".join(missing)
            for key, ids in people.items():
                setattr(mr, key, ids)
            self._write(f"update merge request !{mr.iid}", mr.save)
            action = "updated" if changed else action
        self.log.info("changeset %s %s: merge request !%s %s", spec.repository, spec.head, mr.iid, action)
        return self.changeset(project, mr, spec.head, action)

    def close(self, repository: str, head: str, comment: str) -> Changeset | None:
        project = self._project(repository)
        mr = self.find_open(project, head)
        if mr is None:
            return None
        self._write(f"comment on !{mr.iid}", lambda: mr.notes.create({"body": comment}))
        mr.state_event = "close"
        self._write(f"close !{mr.iid}", mr.save)
        return self.changeset(project, project.mergerequests.get(mr.iid), head, "closed")

    def sync(self, repository: str, number: int, head: str) -> Changeset:
        project = self._project(repository)
        try:
            mr = project.mergerequests.get(number)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"read merge request !{number} of {repository}", exc) from None
        return self.changeset(project, mr, head, "synced")
