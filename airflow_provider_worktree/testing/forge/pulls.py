"""The pull-request handlers of the offline GitHub (:class:`~.github.OfflineGitHub` mixes them in): create (the
duplicate-head 422, "No commits between"), update, comments, labels, requested reviewers, reviews, merge. TEST
DOUBLE, built to GitHub's OpenAPI description."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_provider_worktree.testing.forge import githttp, objects

DOCS = "https://docs.github.com/rest"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ForgeError(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "documentation_url": DOCS}
        if self.errors:
            out["errors"] = self.errors
        return out


class PullHandlers:
    """Handlers on the state of :class:`~.github.OfflineGitHub` (``repos``, ``_ids``, ``_pr``, ``_bare``, ...)."""

    def _create_pull(self, o: str, r: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        body = body or {}
        missing = [k for k in ("head", "base") if not body.get(k)]
        if missing or not (body.get("title") or body.get("issue")):
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequest", "field": f, "code": "missing_field"}
                                                        for f in (missing or ["title"])])
        head = body["head"].split(":", 1)[-1]
        bare = self._bare(repo)
        head_sha, base_sha = githttp.branch_sha(bare, head), githttp.branch_sha(bare, body["base"])
        if head_sha is None or base_sha is None:
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequest", "field": "head" if head_sha is None
                                                        else "base", "code": "invalid"}])
        if any(p["state"] == "open" and p["head"] == head for p in repo["pulls"].values()):
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom", "message":
                                                        f"A pull request already exists for {repo['owner']}:{head}."}])
        stats = githttp.commits_between(bare, base_sha, head_sha)
        if stats[0] == 0:
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom", "message":
                                                        f"No commits between {body['base']} and {head}"}])
        n = repo["next_number"]
        repo["next_number"] += 1
        pr = {"number": n, "id": next(self._ids), "state": "open", "title": body.get("title", ""),
              "body": body.get("body"), "head": head, "base": body["base"], "head_sha": head_sha,
              "base_sha": base_sha, "draft": bool(body.get("draft")), "user": self.owner, "labels": [],
              "assignees": [], "reviewers": [], "comments": [], "reviews": [], "created_at": now(),
              "updated_at": now(), "closed_at": None, "merged_at": None, "mergeable": True, "stats": stats}
        repo["pulls"][n] = pr
        return 201, self._pull_obj(repo, pr)

    def _graphql_mutation(self, body: Any) -> dict[str, Any]:
        query = str((body or {}).get("query") or "")
        if not re.search(r"\bmutation\b.*\bmarkPullRequestReadyForReview\s*\(", query, re.DOTALL):
            return {"errors": [{"message": "this offline GitHub TEST DOUBLE serves only the "
                                           "markPullRequestReadyForReview mutation", "locations": [],
                                "extensions": {"code": "undefinedField"}}]}
        args = ((body.get("variables") or {}).get("input") or {})
        node = args.get("pullRequestId")
        for repo in self.repos.values():
            for pr in repo["pulls"].values():
                if objects.node_id("pr", pr["id"]) == node:
                    if pr["state"] != "open":
                        return {"data": {"markPullRequestReadyForReview": None}, "errors": [
                            {"type": "UNPROCESSABLE", "path": ["markPullRequestReadyForReview"], "locations": [],
                             "message": "Pull request is closed and cannot be marked ready for review"}]}
                    pr["draft"], pr["updated_at"] = False, now()
                    self._generation += 1
                    return {"data": {"markPullRequestReadyForReview": {
                        "clientMutationId": args.get("clientMutationId"), "pullRequest": {"isDraft": False}}}}
        return {"data": {"markPullRequestReadyForReview": None}, "errors": [
            {"type": "NOT_FOUND", "path": ["markPullRequestReadyForReview"], "locations": [],
             "message": f"Could not resolve to a node with the global id of '{node}'"}]}

    def _get_pull(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        return 200, self._pull_obj(repo, pr)

    def _update_pull(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        body = body or {}
        for key in ("title", "body"):
            if key in body:
                pr[key] = body[key]
        if body.get("state") in ("open", "closed") and pr["merged_at"] is None:
            pr["state"] = body["state"]
            pr["closed_at"] = now() if body["state"] == "closed" else None
        pr["updated_at"] = now()
        return 200, self._pull_obj(repo, pr)

    def _list_comments(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        if int(params.get("page", 1)) > 1:
            return 200, []
        full = f"{repo['owner']}/{repo['name']}"
        return 200, [objects.issue_comment(self.api_url, self.web_url, full, pr["number"], c, self._user(c["login"]))
                     for c in pr["comments"]]

    def _create_comment(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        if not (body or {}).get("body"):
            raise ForgeError(422, "Validation Failed", [{"resource": "IssueComment", "field": "body",
                                                        "code": "missing_field"}])
        c = {"id": next(self._ids), "body": body["body"], "login": self.owner, "created_at": now(),
             "updated_at": now()}
        pr["comments"].append(c)
        full = f"{repo['owner']}/{repo['name']}"
        return 201, objects.issue_comment(self.api_url, self.web_url, full, pr["number"], c, self._user(self.owner))

    def _add_labels(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        names = body.get("labels", []) if isinstance(body, dict) else body if isinstance(body, list) else [body]
        names = [x["name"] if isinstance(x, dict) else str(x) for x in names]
        known = {name for name, _ in pr["labels"]}
        pr["labels"] += [(name, next(self._ids)) for name in names if name not in known]
        full = f"{repo['owner']}/{repo['name']}"
        return 200, [objects.label(self.api_url, full, name, lid) for name, lid in pr["labels"]]

    def _request_reviewers(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        wanted = list((body or {}).get("reviewers") or [])
        if pr["user"] in wanted:
            raise ForgeError(422, "Reviews may only be requested from collaborators. One or more of the users or "
                                  "teams you specified is not a collaborator of the "
                                  f"{repo['owner']}/{repo['name']} repository.")
        pr["reviewers"] += [w for w in wanted if w not in pr["reviewers"]]
        return 201, self._pull_obj(repo, pr, full=False)

    def add_review_comment(self, full_name: str, number: int, path: str, line: int, body: str,
                           login: str = "reviewer") -> int:
        """A review requesting changes with one comment on ``path`` at ``line`` of the head; returns its id."""
        with self._lock:
            pr = self.repos[full_name]["pulls"][number]
            review = {"id": next(self._ids), "body": "", "state": "CHANGES_REQUESTED", "login": login,
                      "commit_id": pr["head_sha"], "submitted_at": now()}
            pr["reviews"].append(review)
            comment = {"id": next(self._ids), "review_id": review["id"], "path": path, "line": int(line),
                       "body": body, "login": login, "commit_id": pr["head_sha"], "created_at": now()}
            pr.setdefault("review_comments", []).append(comment)
            pr["updated_at"] = now()
            self._generation += 1
            return comment["id"]

    def _list_review_comments(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        if int(params.get("page", 1)) > 1:
            return 200, []
        full = f"{repo['owner']}/{repo['name']}"
        return 200, [objects.review_comment(self.api_url, self.web_url, full, pr["number"], c, self._user(c["login"]))
                     for c in pr.get("review_comments", [])]

    def _add_assignees(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        """``POST .../issues/{n}/assignees``: as on GitHub, logins that cannot be assigned are ignored silently."""
        repo, pr = self._pr(o, r, n)
        pr["assignees"] += [a for a in (body or {}).get("assignees") or [] if isinstance(a, str)
                            and a not in pr["assignees"]][:10 - len(pr["assignees"])]
        pr["updated_at"] = now()
        people = {login: self._user(login) for login in pr["assignees"]}
        return 201, objects.issue(self.api_url, self.web_url, f"{repo['owner']}/{repo['name']}", pr,
                                  self._user(pr["user"]), people)

    def _get_review_comment(self, o: str, r: str, cid: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        for pr in repo["pulls"].values():
            for c in pr.get("review_comments", []):
                if c["id"] == int(cid):
                    return 200, objects.review_comment(self.api_url, self.web_url, f"{repo['owner']}/{repo['name']}",
                                                       pr["number"], c, self._user(c["login"]))
        raise ForgeError(404, "Not Found")

    def _reply_review_comment(self, o: str, r: str, n: str, cid: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        parent = next((c for c in pr.get("review_comments", []) if c["id"] == int(cid)), None)
        if parent is None:
            raise ForgeError(404, "Not Found")
        if not (body or {}).get("body"):
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequestReviewComment", "field": "body",
                                                        "code": "missing_field"}])
        c = {**parent, "id": next(self._ids), "body": body["body"], "login": self.owner, "created_at": now(),
             "in_reply_to_id": parent["id"]}
        pr["review_comments"].append(c)
        return 201, objects.review_comment(self.api_url, self.web_url, f"{repo['owner']}/{repo['name']}",
                                           pr["number"], c, self._user(c["login"]))

    def _list_reviews(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        if int(params.get("page", 1)) > 1:
            return 200, []
        full = f"{repo['owner']}/{repo['name']}"
        return 200, [objects.review(self.api_url, self.web_url, full, pr["number"], rv, self._user(rv["login"]))
                     for rv in pr["reviews"]]

    def _merge_pull(self, o: str, r: str, n: str, params: dict, body: Any) -> tuple[int, Any]:
        repo, pr = self._pr(o, r, n)
        body = body or {}
        method = body.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise ForgeError(422, "Validation Failed", [{"resource": "PullRequest", "field": "merge_method",
                                                        "code": "invalid"}])
        allowed = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}
        if not repo.get(allowed[method], True):
            what = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}[method]
            raise ForgeError(405, f"{what} are not allowed on this repository.")
        if pr["state"] != "open" or not pr["mergeable"] or pr["draft"]:
            raise ForgeError(405, "Pull Request is not mergeable")
        check = repo.get("protected", {}).get(pr["base"])
        statuses = {s["context"]: s["state"] for s in repo.get("statuses", []) if s["sha"] == pr["head_sha"]}
        if check and statuses.get(check) != "success":
            raise ForgeError(405, f"Required status check \"{check}\" is expected.")
        if body.get("sha") and body["sha"] != pr["head_sha"]:
            raise ForgeError(409, "Head branch was modified. Review and try the merge again.")
        pr.update(state="closed", merged_at=now(), closed_at=now(), merged_by=self.owner,
                  merge_commit_sha=pr["head_sha"])
        return 200, {"sha": pr["head_sha"], "merged": True, "message": "Pull Request successfully merged"}

    def _list_checks(self, o: str, r: str, ref: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        full = f"{repo['owner']}/{repo['name']}"
        runs = [c for c in repo.get("checks", []) if c["head_sha"] == ref]
        if int(params.get("page", 1)) > 1:
            runs = []
        return 200, {"total_count": len(runs), "check_runs": [
            objects.check_run(self.api_url, self.web_url, full, c, self._user(self.owner)) for c in runs]}

    def _combined_status(self, o: str, r: str, ref: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        latest: dict[str, dict[str, Any]] = {}
        for s in repo.get("statuses", []):
            if s["sha"] == ref:
                latest[s["context"]] = s  # the latest status of each context counts
        return 200, objects.combined_status(self.api_url, f"{repo['owner']}/{repo['name']}", ref,
                                            list(latest.values()), self._repo_obj(repo))

    def _get_commit(self, o: str, r: str, ref: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        info = githttp.commit_info(self._bare(repo), ref)
        if info is None:
            raise ForgeError(422, f"No commit found for SHA: {ref}")
        return 200, objects.commit(self.api_url, self.web_url, f"{repo['owner']}/{repo['name']}", info)
