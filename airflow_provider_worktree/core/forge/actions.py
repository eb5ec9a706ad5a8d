"""Bulk actions on recorded changesets: ``ready``, ``comment``, ``close``, ``merge``, one changeset at a time, each
with its own result (one failure stops none of the rest), the shard database updated after each.

Every write goes through the forge's ``_write`` (the shared limiter; on GitHub also PyGithub's one second between
content-creating requests, kept by :func:`client_without_retries`). Each action reads the pull request's state
first, so a re-run after a partial failure does only what is left: a comment carrying the changeset's marker that
already landed is not posted again, a merged pull request is reported as merged.

``merge`` tries the methods in order (default squash, then merge, then rebase) and moves to the next only when the
forge refuses that method for the repository (GitHub: 405 "... are not allowed on this repository"; GitLab: 405 or
406). Plain Python, no Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_worktree.core.forge.types import Changeset, ForgeError

ACTIONS = ("ready", "comment", "close", "merge")
MERGE_METHODS = ("squash", "merge", "rebase")
_GITHUB_METHOD_REFUSED = re.compile(r"not allowed on this repository|merge method not allowed", re.IGNORECASE)
_DRAFT_PREFIX = re.compile(r"^\s*(?:\[draft\]|\(draft\)|draft:|draft\b)\s*", re.IGNORECASE)


@dataclass
class ActionResult:
    """One changeset's outcome: ``result`` ``ok`` or ``failed``, with the reason."""

    forge: str
    repository: str
    number: int | None
    url: str | None
    head: str
    action: str
    result: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def method_order(first: str | None) -> tuple[str, ...]:
    """The merge methods to try, ``first`` first (default squash, merge, rebase)."""
    if first is not None and first not in MERGE_METHODS:
        raise ValueError(f"merge method {first!r} is not one of {MERGE_METHODS}")
    return tuple([first] if first else []) + tuple(m for m in MERGE_METHODS if m != first)


def comment_text(body: str, marker: str) -> str:
    return body.rstrip() + "\n\n" + marker + "\n"


def run_bulk(action: str, rows: list[Mapping[str, Any]], forge_of: Callable[[str], Any], store: Any, *,
             body: str | None = None, method: str | None = None) -> list[ActionResult]:
    """``action`` on each row of the store's changesets; ``forge_of(name)`` gives the forge (it may raise: that
    forge's rows fail with the reason). Each success is recorded with :meth:`record_changeset`, each failure with
    :meth:`record_changeset_failure` (failure count, last error)."""
    from airflow_provider_worktree.core.forge.body import changeset_marker

    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {ACTIONS}")
    if action == "comment" and not (body or "").strip():
        raise ValueError("comment needs a text: pass --body TEXT or --body-file FILE")
    methods = method_order(method)
    forges: dict[str, Any] = {}
    out: list[ActionResult] = []
    for r in rows:
        res = ActionResult(r["forge"], r["repository"], r["number"], r.get("url"), r["head"], action, "failed", "")
        out.append(res)
        if not r["number"]:
            res.reason = "never published (no pull request yet): run the publish task again first"
            continue
        try:
            if r["forge"] not in forges:
                forges[r["forge"]] = forge_of(r["forge"])
            forge = forges[r["forge"]]
            marker = changeset_marker(r["repository"], r["head"])
            changeset, res.reason = _act(forge, action, r, marker, body, methods)
        except ForgeError as exc:
            res.reason = str(exc)
            store.record_changeset_failure(r["forge"], r["repository"], r["head"], str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a missing provider or connection: named, the rest go on
            res.reason = f"{type(exc).__name__}: {exc}"
            continue
        res.result, res.url = "ok", changeset.url or res.url
        store.record_changeset(changeset.to_dict())
    return out


def _act(forge: Any, action: str, r: Mapping[str, Any], marker: str, body: str | None,
         methods: tuple[str, ...]) -> tuple[Changeset, str]:
    repo, number, head = r["repository"], int(r["number"]), r["head"]
    impl = _GITHUB if forge.name == "github" else _GITLAB
    if action == "merge":
        return impl["merge"](forge, repo, number, head, methods, r.get("head_sha"))
    if action == "comment":
        return impl["comment"](forge, repo, number, head, comment_text(body or "", marker), marker)
    if action == "close":
        text = comment_text(body, marker) if (body or "").strip() else None
        return impl["close"](forge, repo, number, head, text, marker)
    return impl["ready"](forge, repo, number, head)


# -- GitHub (PyGithub) -------------------------------------------------------------------------------------------

def client_without_retries(client: Any) -> Any:
    """A copy of a PyGithub client (same auth, host, timeouts) that retries nothing on its own and keeps at least
    one second between content-creating requests (GitHub's rule). A client's own retry of a POST whose response
    was lost would post it twice; here the shared limiter waits and the next invocation resumes instead."""
    import github

    kwargs = dict(client.requester.kwargs)
    kwargs.update(retry=None, seconds_between_writes=max(1.0, float(kwargs.get("seconds_between_writes") or 0.0)))
    return github.Github(**kwargs)


def _gh_pull(forge: Any, repository: str, number: int) -> tuple[Any, Any]:
    repo = forge._repo(repository)
    try:
        return repo, repo.get_pull(number)
    except Exception as exc:  # noqa: BLE001
        raise forge._error(f"read pull request #{number} of {repository}", exc) from None


def _gh_state(forge: Any, repo: Any, pr: Any, head: str, action: str) -> Changeset:
    return forge.changeset(repo, pr, head, action)


def _gh_ready(forge: Any, repository: str, number: int, head: str) -> tuple[Changeset, str]:
    repo, pr = _gh_pull(forge, repository, number)
    if pr.state != "open":
        raise ForgeError(f"#{number} is {'merged' if pr.merged else 'closed'}: nothing to mark ready; reopen it first")
    if not pr.draft:
        return _gh_state(forge, repo, pr, head, "unchanged"), "already ready for review"
    forge._write(f"mark #{number} ready for review", pr.mark_ready_for_review)
    return _gh_state(forge, repo, repo.get_pull(number), head, "readied"), "marked ready for review"


def _gh_comment_once(forge: Any, pr: Any, text: str, marker: str) -> bool:
    """Post ``text`` unless a comment with ``marker`` and the same text is there (a retried POST that landed)."""
    try:
        seen = [c.body or "" for c in pr.get_issue_comments()]
    except Exception as exc:  # noqa: BLE001
        raise forge._error(f"list the comments of #{pr.number}", exc) from None
    if any(marker in b and b.strip() == text.strip() for b in seen):
        return False
    forge._write(f"comment on #{pr.number}", lambda: pr.create_issue_comment(text))
    return True


def _gh_comment(forge: Any, repository: str, number: int, head: str, text: str,
                marker: str) -> tuple[Changeset, str]:
    repo, pr = _gh_pull(forge, repository, number)
    posted = _gh_comment_once(forge, pr, text, marker)
    return (_gh_state(forge, repo, pr, head, "commented" if posted else "unchanged"),
            "comment posted" if posted else "the comment is already there (not posted twice)")


def _gh_close(forge: Any, repository: str, number: int, head: str, text: str | None,
              marker: str) -> tuple[Changeset, str]:
    repo, pr = _gh_pull(forge, repository, number)
    if pr.state != "open":
        return _gh_state(forge, repo, pr, head, "unchanged"), f"already {'merged' if pr.merged else 'closed'}"
    if text:
        _gh_comment_once(forge, pr, text, marker)
    forge._write(f"close #{number}", lambda: pr.edit(state="closed"))
    return _gh_state(forge, repo, pr, head, "closed"), "closed" + (" with a comment" if text else "")


def _gh_merge(forge: Any, repository: str, number: int, head: str, methods: tuple[str, ...],
              synced_sha: str | None) -> tuple[Changeset, str]:
    repo, pr = _gh_pull(forge, repository, number)
    if pr.merged:
        return _gh_state(forge, repo, pr, head, "unchanged"), "already merged"
    if pr.state != "open":
        raise ForgeError(f"#{number} is closed: reopen it before merging")
    refused: list[str] = []
    for m in methods:
        try:
            # the sha last synced: a head pushed since then is not merged unseen (GitHub answers 409)
            forge._write(f"merge #{number} ({m})", lambda m=m: pr.merge(merge_method=m, sha=synced_sha or pr.head.sha))
        except ForgeError as exc:
            if exc.status == 405 and _GITHUB_METHOD_REFUSED.search(str(exc)):
                refused.append(m)
                continue
            raise _merge_fix(exc, number) from None
        merged = _gh_state(forge, repo, repo.get_pull(number), head, "merged")
        merged.extra["merge_method"] = m
        return merged, f"merged ({m}" + (f"; {', '.join(refused)} not allowed here)" if refused else ")")
    raise ForgeError(f"#{number}: the repository allows none of the merge methods tried ({', '.join(methods)}): "
                     "enable one in its settings or pass --method", status=405)


def _merge_fix(exc: ForgeError, number: int) -> ForgeError:
    if exc.status == 409:
        hint = "the head moved since the last sync: run `changesets sync`, review the new commits, then merge again"
    elif exc.status == 405:
        hint = ("not mergeable now (a merge conflict, a draft, or the protected base branch's rules: required "
                "reviews or checks): resolve it on the forge, then merge again")
    else:
        return exc
    return ForgeError(f"{exc}; {hint}", status=exc.status, retryable=exc.retryable)


# -- GitLab (python-gitlab) --------------------------------------------------------------------------------------

def _gl_mr(forge: Any, repository: str, number: int) -> tuple[Any, Any]:
    project = forge._project(repository)
    try:
        return project, project.mergerequests.get(number)
    except Exception as exc:  # noqa: BLE001
        raise forge._error(f"read merge request !{number} of {repository}", exc) from None


def _gl_ready(forge: Any, repository: str, number: int, head: str) -> tuple[Changeset, str]:
    project, mr = _gl_mr(forge, repository, number)
    if mr.state not in ("opened", "locked"):
        raise ForgeError(f"!{number} is {mr.state}: nothing to mark ready; reopen it first")
    title = _DRAFT_PREFIX.sub("", mr.title, count=1)
    if title == mr.title:
        return forge.changeset(project, mr, head, "unchanged"), "already ready for review"
    mr.title = title or mr.title
    forge._write(f"mark !{number} ready (remove the Draft: prefix)", mr.save)
    return forge.changeset(project, project.mergerequests.get(number), head, "readied"), "marked ready for review"


def _gl_comment_once(forge: Any, mr: Any, text: str, marker: str) -> bool:
    try:
        seen = [n.body or "" for n in mr.notes.list(get_all=True)]
    except Exception as exc:  # noqa: BLE001
        raise forge._error(f"list the notes of !{mr.iid}", exc) from None
    if any(marker in b and b.strip() == text.strip() for b in seen):
        return False
    forge._write(f"comment on !{mr.iid}", lambda: mr.notes.create({"body": text}))
    return True


def _gl_comment(forge: Any, repository: str, number: int, head: str, text: str,
                marker: str) -> tuple[Changeset, str]:
    project, mr = _gl_mr(forge, repository, number)
    posted = _gl_comment_once(forge, mr, text, marker)
    return (forge.changeset(project, mr, head, "commented" if posted else "unchanged"),
            "comment posted" if posted else "the comment is already there (not posted twice)")


def _gl_close(forge: Any, repository: str, number: int, head: str, text: str | None,
              marker: str) -> tuple[Changeset, str]:
    project, mr = _gl_mr(forge, repository, number)
    if mr.state not in ("opened", "locked"):
        return forge.changeset(project, mr, head, "unchanged"), f"already {mr.state}"
    if text:
        _gl_comment_once(forge, mr, text, marker)
    mr.state_event = "close"
    forge._write(f"close !{number}", mr.save)
    return forge.changeset(project, project.mergerequests.get(number), head, "closed"), \
        "closed" + (" with a comment" if text else "")


def _gl_merge(forge: Any, repository: str, number: int, head: str, methods: tuple[str, ...],
              synced_sha: str | None) -> tuple[Changeset, str]:
    project, mr = _gl_mr(forge, repository, number)
    if mr.state == "merged":
        return forge.changeset(project, mr, head, "unchanged"), "already merged"
    if mr.state != "opened":
        raise ForgeError(f"!{number} is {mr.state}: reopen it before merging")
    refused: list[str] = []
    last: ForgeError | None = None
    for m in methods:
        try:
            if m == "rebase":
                forge._write(f"rebase !{number}", mr.rebase)
                mr = project.mergerequests.get(number, include_rebase_in_progress=True)
            sha = mr.sha if m == "rebase" else (synced_sha or mr.sha)
            forge._write(f"merge !{number} ({m})", lambda m=m, sha=sha, mr=mr: mr.merge(squash=m == "squash", sha=sha))
        except ForgeError as exc:
            if exc.status in (405, 406):
                refused.append(m)
                last = exc
                continue
            raise _merge_fix(exc, number) from None
        merged = forge.changeset(project, project.mergerequests.get(number), head, "merged")
        merged.extra["merge_method"] = m
        return merged, f"merged ({m}" + (f"; {', '.join(refused)} refused)" if refused else ")")
    raise ForgeError(f"!{number}: every merge method was refused ({', '.join(methods)}); last: {last}; resolve it "
                     "on GitLab (a conflict, a draft, a pipeline or an approval rule), then merge again",
                     status=last.status if last else None)


_GITHUB = {"ready": _gh_ready, "comment": _gh_comment, "close": _gh_close, "merge": _gh_merge}
_GITLAB = {"ready": _gl_ready, "comment": _gl_comment, "close": _gl_close, "merge": _gl_merge}
