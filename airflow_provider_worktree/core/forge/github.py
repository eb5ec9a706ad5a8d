""":class:`GitHubForge`: changesets on GitHub and GitHub Enterprise through the official PyGithub client.

Publishing is idempotent. A changeset is identified by (repository, head branch). The open pull request of that
head is looked up first and updated in place (title, body; a draft is marked ready when the spec is not a draft,
a ready pull request never goes back to draft). When none is open, one is
created; GitHub's ``422 "A pull request already exists"`` (another worker created it between the lookup and the
create) is read again as "already exists" and updated. A second pull request is never opened. Labels and
reviewers and
assignees are added, never removed.

Pacing: every write (create, edit, comment, labels, reviewers, merge) first takes a place from the shared limiter
(GitHub's documented secondary limits, :data:`~airflow_provider_worktree.core.ratelimit.state.GITHUB_CONTENT_LIMITS`:
80 content-creating requests a minute and 500 an hour, shared by every worker through the shard database). The
response's ``x-ratelimit-*``/``retry-after`` then block every worker when GitHub says so. The client is used
without its own retries of 403/429, so the shared limiter, not a sleeping worker, does the waiting.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_worktree.core.forge.types import Changeset, ChangesetSpec, ForgeError
from airflow_provider_worktree.core.ratelimit.headers import github_observation
from airflow_provider_worktree.core.ratelimit.limiter import LimitWaitTooLong, SpendCapReached

WRITE_NEED = {"content_minute": 1, "content_hour": 1}
_FIXES = {
    401: "the token is invalid or expired: update the password of the GitHub connection",
    403: "the token lacks a scope or the repository forbids it (a protected branch, an archived repository): give "
         "the token `repo` (classic) or pull-requests:write and contents:write (fine-grained)",
    404: "the repository does not exist or the token cannot see it: check the repository name and the token's access",
    422: "GitHub refused the request's content",
}


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


class GitHubForge:
    """Changesets on one GitHub (``client``: a ``github.Github``, e.g. ``GithubHook(...).get_conn()``)."""

    name = "github"

    def __init__(self, client: Any, *, limiter: Any = None, logger: logging.Logger | None = None) -> None:
        self.client = client
        self.limiter = limiter
        self.log = logger or logging.getLogger(__name__)
        self._seen: dict[tuple[str, int], tuple[Any, Any, Changeset]] = {}  # (repo, number) -> (repo, pr, states)

    # -- pacing ----------------------------------------------------------------------------------------------------
    def _write(self, what: str, call: Any) -> Any:
        """Run one content-creating request under the shared limit; GitHub's answer updates the shared view."""
        ticket = None
        if self.limiter is not None:
            try:
                ticket = self.limiter.acquire(WRITE_NEED)
            except (LimitWaitTooLong, SpendCapReached) as exc:
                raise ForgeError(f"{what}: not sent, GitHub's write limit is reached ({exc})", retryable=True) from None
        try:
            result = call()
        except Exception as exc:
            if ticket is not None:
                headers = getattr(exc, "headers", None) or {}
                obs = github_observation(headers, _status(exc))
                if obs.block_s is not None and self._error(what, exc).retryable:  # a rate limit, not a scope's 403
                    self.limiter.throttled(ticket, obs)
                else:
                    self.limiter.release(ticket)
            raise self._error(what, exc) from None
        if ticket is not None:
            self.limiter.settle(ticket, dict(WRITE_NEED))
        return result

    def _error(self, what: str, exc: BaseException) -> ForgeError:
        import github

        if isinstance(exc, ForgeError):
            return exc
        status = _status(exc)
        if status is None and not isinstance(exc, github.GithubException):
            return ForgeError(f"{what}: GitHub could not be reached ({type(exc).__name__}: {exc}); the next run or "
                              "`changesets sync` resumes", retryable=True)
        data = getattr(exc, "data", None) or {}
        message = data.get("message") if isinstance(data, dict) else str(data)
        details = "; ".join(e.get("message") or f"{e.get('field')} {e.get('code')}"
                            for e in (data.get("errors") or []) if isinstance(e, dict)) if isinstance(data, dict) else ""
        headers = getattr(exc, "headers", None) or {}
        limited = status == 429 or (status == 403 and (github_observation(headers, status).block_s is not None
                                                       and "rate limit" in (message or "").lower()))
        retryable = limited or (status or 0) >= 500
        fix = ("GitHub's rate limit: the shared limiter now holds every worker back; retry later" if limited
               else "a GitHub server error: retry later" if (status or 0) >= 500 else _FIXES.get(status or 0, ""))
        return ForgeError(f"{what}: GitHub answered {status} {message}" + (f" ({details})" if details else "")
                          + (f": {fix}" if fix else ""), status=status, retryable=retryable)

    # -- reading ---------------------------------------------------------------------------------------------------
    def _repo(self, spec_repo: str) -> Any:
        try:
            return self.client.get_repo(spec_repo)
        except Exception as exc:  # noqa: BLE001 - reworded with the fix
            raise self._error(f"repository {spec_repo}", exc) from None

    def clone_url(self, repository: str) -> str:
        """Where the repository's branches are pushed (HTTPS; credentials go through git's environment)."""
        return self._repo(repository).clone_url

    def find_open(self, repo: Any, head: str) -> Any | None:
        """The open pull request of ``head`` (this repository's branch), or None."""
        owner = repo.owner.login
        try:
            pulls = list(repo.get_pulls(state="open", head=f"{owner}:{head}"))
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"list pull requests of {repo.full_name}", exc) from None
        return pulls[0] if pulls else None

    def changeset(self, repo: Any, pr: Any, spec_head: str, action: str = "", *, checks: bool = False) -> Changeset:
        merged = bool(pr.merged)
        c = Changeset(
            forge=self.name, repository=repo.full_name, head=spec_head, base=pr.base.ref, number=pr.number,
            url=pr.html_url, title=pr.title, publication="draft" if pr.draft else "published",
            external_state="merged" if merged else pr.state, review=self._review(pr), head_sha=pr.head.sha,
            action=action)
        if checks:
            c.checks, failing = self._checks(repo, pr.head.sha)
            c.extra["failing_checks"] = failing
        return c

    @staticmethod
    def _checks(repo: Any, sha: str) -> tuple[str, list[dict[str, Any]]]:
        """The head commit's checks: ``failing`` (with each failing check's name, summary and text), ``pending``,
        ``passing``, or ``unknown`` when nothing reports on it. Check runs and commit statuses both count."""
        commit = repo.get_commit(sha)
        runs = list(commit.get_check_runs())
        combined = commit.get_combined_status()
        failing = [{"name": r.name, "summary": (r.output.summary if r.output else None) or "",
                    "text": (r.output.text if r.output else None) or ""} for r in runs
                   if r.status == "completed" and r.conclusion in ("failure", "timed_out", "cancelled",
                                                                    "action_required", "startup_failure")]
        failing += [{"name": s.context, "summary": s.description or "", "text": ""} for s in combined.statuses
                    if s.state in ("failure", "error")]
        if failing:
            return "failing", failing
        if any(r.status != "completed" for r in runs) or any(s.state == "pending" for s in combined.statuses):
            return "pending", []
        return ("passing", []) if runs or combined.statuses else ("unknown", [])

    @staticmethod
    def _review(pr: Any) -> str:
        latest: dict[str, str] = {}
        for review in pr.get_reviews():
            if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                latest[review.user.login if review.user else "?"] = review.state
        states = set(latest.values())
        return "changes_requested" if "CHANGES_REQUESTED" in states else "approved" if "APPROVED" in states \
            else "pending"

    # -- writing ---------------------------------------------------------------------------------------------------
    def publish(self, spec: ChangesetSpec) -> Changeset:
        """Create the changeset's pull request, or update the open one in place (never a second one)."""
        repo = self._repo(spec.repository)
        pr = self.find_open(repo, spec.head)
        action = "unchanged"
        if pr is None:
            try:
                pr = self._write(f"create the pull request {spec.repository} {spec.head} -> {spec.base}",
                                 lambda: repo.create_pull(base=spec.base, head=spec.head, title=spec.title,
                                                          body=spec.body, draft=spec.draft))
                action = "created"
            except ForgeError as exc:
                if exc.status != 422 or "already exists" not in str(exc):
                    raise
                pr = self.find_open(repo, spec.head)  # created meanwhile by another worker: update that one
                if pr is None:
                    raise
        if action != "created" and (pr.title != spec.title or (pr.body or "") != spec.body):
            self._write(f"update pull request #{pr.number}", lambda: pr.edit(title=spec.title, body=spec.body))
            action = "updated"
        if not spec.draft and pr.draft:  # publish="ready": the draft becomes ready for review (GraphQL mutation)
            self._write(f"mark pull request #{pr.number} ready for review", pr.mark_ready_for_review)
            pr = repo.get_pull(pr.number)
            action = "readied" if action == "unchanged" else action
        have = {label.name for label in pr.labels}
        if set(spec.labels) - have:
            self._write(f"label pull request #{pr.number}",
                        lambda: pr.add_to_labels(*[x for x in spec.labels if x not in have]))
        asked = {u.login for u in pr.requested_reviewers}
        wanted = [r for r in spec.reviewers if r not in asked]
        if wanted:
            self._write(f"request reviewers on #{pr.number}", lambda: pr.create_review_request(reviewers=wanted))
        assigned = {u.login for u in pr.assignees}
        missing = [a for a in spec.assignees if a not in assigned]
        if missing:
            self._write(f"assign #{pr.number}", lambda: pr.add_to_assignees(*missing))
        self.log.info("changeset %s %s: pull request #%s %s", spec.repository, spec.head, pr.number, action)
        return self.changeset(repo, pr, spec.head, action)

    def close(self, repository: str, head: str, comment: str) -> Changeset | None:
        """Close the open pull request of ``head`` with ``comment`` (its diff disappeared); None when none is open."""
        repo = self._repo(repository)
        pr = self.find_open(repo, head)
        if pr is None:
            return None
        self._write(f"comment on #{pr.number}", lambda: pr.create_issue_comment(comment))
        self._write(f"close #{pr.number}", lambda: pr.edit(state="closed"))
        return self.changeset(repo, pr, head, "closed")

    def sync(self, repository: str, number: int, head: str) -> Changeset:
        """The pull request's states now. Polling again is a conditional request (``If-None-Match`` with the ETag
        GitHub gave): an unchanged pull request answers ``304``, costs no rate limit and is not read further."""
        key = (repository, int(number))
        try:
            if key in self._seen:
                repo, pr, last = self._seen[key]
                if not pr.update():  # 304 Not Modified; checks change without changing the pull request
                    if last.external_state != "open" or last.checks in ("passing", "failing"):
                        return Changeset(**{**last.to_dict(), "action": "unchanged"})
                    state, failing = self._checks(repo, pr.head.sha)
                    if state == last.checks:
                        return Changeset(**{**last.to_dict(), "action": "unchanged"})
                    return self._remember(key, repo, pr, Changeset(**{**last.to_dict(), "checks": state,
                                                                       "extra": {"failing_checks": failing},
                                                                       "action": "synced"}))
            else:
                repo = self._repo(repository)
                pr = repo.get_pull(number)
            changeset = self.changeset(repo, pr, head, "synced", checks=pr.state == "open")
        except ForgeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"read pull request #{number} of {repository}", exc) from None
        return self._remember(key, repo, pr, changeset)

    def review_comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """The pull request's review comments (``id``, ``path``, ``line``, ``body``, ``user``, ``in_reply_to``)."""
        try:
            pr = self._repo(repository).get_pull(number)
            return [{"id": c.id, "path": c.path, "line": c.line or c.original_line, "body": c.body or "",
                     "user": c.user.login if c.user else None,
                     "in_reply_to": c.in_reply_to_id} for c in pr.get_review_comments()]
        except ForgeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"read the review comments of #{number} of {repository}", exc) from None

    def reply(self, repository: str, number: int, comment_id: int, body: str) -> None:
        """Answer one review comment in its thread (a paced write)."""
        try:
            pr = self._repo(repository).get_pull(number)
        except ForgeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"read pull request #{number} of {repository}", exc) from None
        self._write(f"reply to review comment {comment_id} on #{number}",
                    lambda: pr.create_review_comment_reply(comment_id, body))

    def _remember(self, key: tuple[str, int], repo: Any, pr: Any, changeset: Changeset) -> Changeset:
        self._seen[key] = (repo, pr, changeset)
        return changeset
