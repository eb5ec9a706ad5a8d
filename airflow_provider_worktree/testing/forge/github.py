"""An offline GitHub on loopback: a stateful TEST DOUBLE of the GitHub REST API (the part pull requests use) and of
git over smart HTTP, for tests, the smoke run and users without a forge. Driven by the real PyGithub client.

REST, under ``/api/v3`` (GitHub Enterprise's layout: ``Github(base_url=forge.api_url)``):
``GET /repos/{o}/{r}``; ``GET|POST /repos/{o}/{r}/pulls`` (``state``, ``head``, ``base`` filters; a second open pull
request for one head is GitHub's ``422 Validation Failed``, "A pull request already exists for o:branch."); ``GET|
PATCH /repos/{o}/{r}/pulls/{n}``; ``GET|POST /repos/{o}/{r}/issues/{n}/comments``; ``POST
/repos/{o}/{r}/issues/{n}/labels``; ``POST /repos/{o}/{r}/pulls/{n}/requested_reviewers``; ``GET
/repos/{o}/{r}/pulls/{n}/reviews``; ``PUT /repos/{o}/{r}/pulls/{n}/merge`` (merge, squash, rebase; 405 when
not mergeable, 409 when ``sha`` is not the head). Responses are built to GitHub's OpenAPI description
(:mod:`.objects`). Every ``GET`` has an ``ETag``; ``If-None-Match`` with it is ``304`` and costs no rate limit.
Every response carries the primary limit's ``x-ratelimit-{limit,remaining,used,reset,resource}``; content-creating
requests (POST, PATCH, PUT, DELETE) past ``content_per_minute`` are the secondary limit's ``403`` with
``retry-after``. Authentication: ``Authorization: token|Bearer <token>``, else ``401 Bad credentials``.

Git, at ``/{o}/{r}.git``: ``git http-backend`` (:mod:`.githttp`), anonymous fetch, push with the token as the
HTTP Basic password.

``request_log``: every API request and response, one JSON object a line (method, path, query, status, request
body, response body), for checking the traffic against GitHub's published contract.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_worktree.testing.forge import githttp, objects
from airflow_provider_worktree.testing.forge.loopback import LoopbackForge
from airflow_provider_worktree.testing.forge.pulls import DOCS, ForgeError, PullHandlers, now
from airflow_provider_worktree.testing.forge.search import SearchHandlers

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [(m, re.compile("^/api/v3" + p + "$"), h) for m, p, h in (
    ("GET", r"/search/repositories", "search_repos"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)", "get_repo"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls", "list_pulls"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls", "create_pull"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)", "get_pull"),
    ("PATCH", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)", "update_pull"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments", "list_comments"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments", "create_comment"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/labels", "add_labels"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/assignees", "add_assignees"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/requested_reviewers", "request_reviewers"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/reviews", "list_reviews"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/comments", "list_review_comments"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/comments/(?P<cid>\d+)", "get_review_comment"),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/comments/(?P<cid>\d+)/replies",
     "reply_review_comment"),
    ("PUT", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/merge", "merge_pull"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<ref>[^/]+)", "get_commit"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<ref>[^/]+)/check-runs", "list_checks"),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<ref>[^/]+)/status", "combined_status"),
)]
_WRITES = ("POST", "PATCH", "PUT", "DELETE")


class OfflineGitHub(LoopbackForge, PullHandlers, SearchHandlers):
    """The offline GitHub. ``token``: the one token it accepts; ``owner``: the login that token belongs to.

    Test helpers (Python, not HTTP): :meth:`create_repo`, :meth:`add_review`, :meth:`pulls`, :meth:`fail_next`.
    """

    def __init__(self, root: str | Path, *, token: str = "ghp_offline_test_token", owner: str = "octo-org",
                 host: str = "127.0.0.1", port: int = 0, request_log: str | Path | None = None,
                 content_per_minute: int = 80, primary_limit: int = 5000) -> None:
        self.root = Path(root)
        self.token, self.owner = token, owner
        self.host, self.port = host, port
        self.request_log = Path(request_log) if request_log else None
        self.content_per_minute, self.primary_limit = content_per_minute, primary_limit
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._users: dict[str, int] = {}
        self.repos: dict[str, dict[str, Any]] = {}
        self._writes: list[float] = []
        self._generation = 0  # bumped by every change: part of every ETag, so no change is hidden by a 304
        self._used = 0
        self._reset = int(time.time()) + 3600
        self._faults: list[tuple[str, re.Pattern[str], int, str]] = []

    # -- life ------------------------------------------------------------------------------------------------------
    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.web_url}/api/v3"

    def git_url(self, full_name: str, *, with_token: bool = False) -> str:
        auth = f"x-access-token:{self.token}@" if with_token else ""
        return f"http://{auth}{self.host}:{self.port}/{full_name}.git"

    def _listening(self) -> str:
        return f"offline GitHub TEST DOUBLE listening on {self.web_url} (API {self.api_url})"

    # -- test helpers ----------------------------------------------------------------------------------------------
    def create_repo(self, name: str, source: str | Path | None = None, *, owner: str | None = None,
                    default_branch: str = "main") -> str:
        """A repository (a bare mirror of ``source``); returns its full name ``owner/name``."""
        owner = owner or self.owner
        githttp.init_bare(self.root, owner, name, source, default_branch)
        with self._lock:
            self.repos[f"{owner}/{name}"] = {"id": next(self._ids), "name": name, "owner": owner,
                                             "default_branch": default_branch, "created_at": now(),
                                             "updated_at": now(), "pushed_at": now(), "pulls": {},
                                             "next_number": 1, "language": "Python"}
        return f"{owner}/{name}"

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self.repos[full_name]["pulls"].values()]

    def add_review(self, full_name: str, number: int, state: str, body: str = "", login: str = "reviewer") -> None:
        """A review (``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``) by ``login`` on the head commit."""
        with self._lock:
            pr = self.repos[full_name]["pulls"][number]
            pr["reviews"].append({"id": next(self._ids), "body": body, "state": state, "login": login,
                                  "commit_id": pr["head_sha"], "submitted_at": now()})
            pr["updated_at"] = now()
            self._generation += 1

    def add_check(self, full_name: str, sha: str, name: str, status: str = "completed",
                  conclusion: str | None = "success", summary: str = "", text: str = "") -> None:
        """A check run on ``sha`` (``status`` queued/in_progress/completed; ``conclusion`` success, failure, ...)."""
        with self._lock:
            self.repos[full_name].setdefault("checks", []).append(
                {"id": next(self._ids), "head_sha": sha, "name": name, "status": status,
                 "conclusion": conclusion if status == "completed" else None, "started_at": now(),
                 "completed_at": now() if status == "completed" else None, "title": name, "summary": summary,
                 "text": text})
            self._generation += 1

    def add_status(self, full_name: str, sha: str, context: str, state: str, description: str = "") -> None:
        """A commit status (``pending``, ``success``, ``failure``, ``error``) of ``context`` on ``sha``."""
        with self._lock:
            self.repos[full_name].setdefault("statuses", []).append(
                {"id": next(self._ids), "sha": sha, "context": context, "state": state, "description": description,
                 "target_url": None, "created_at": now()})
            self._generation += 1

    def fail_next(self, method: str, path_regex: str, status: int, message: str = "Server Error", *,
                  headers: Mapping[str, str] | None = None, after: bool = False) -> None:
        """The next API request matching answers ``status`` (5xx, 401, a secondary limit's 403/429 with
        ``headers={"retry-after": "1"}``) with ``message``. ``after``: the request is carried out first and only
        its response is lost (a POST that landed although the client saw an error)."""
        with self._lock:
            self._faults.append((method, re.compile(path_regex), status, message, dict(headers or {}), after))

    def set_merge_methods(self, full_name: str, *, merge: bool = True, squash: bool = True,
                          rebase: bool = True) -> None:
        """The repository's allowed merge methods (``allow_merge_commit``, ``allow_squash_merge``, ...)."""
        with self._lock:
            self.repos[full_name].update(allow_merge_commit=merge, allow_squash_merge=squash,
                                         allow_rebase_merge=rebase)
            self._generation += 1

    def protect_branch(self, full_name: str, branch: str, required_check: str = "ci") -> None:
        """``branch`` requires the status check ``required_check`` (a merge answers GitHub's 405)."""
        with self._lock:
            self.repos[full_name].setdefault("protected", {})[branch] = required_check

    def set_mergeable(self, full_name: str, number: int, mergeable: bool) -> None:
        """``False``: the pull request has a merge conflict (``mergeable_state`` dirty; a merge answers 405)."""
        with self._lock:
            self.repos[full_name]["pulls"][number]["mergeable"] = mergeable
            self._generation += 1

    # -- HTTP ------------------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes,
               ) -> tuple[int, dict[str, str], Any]:
        if path != "/api/graphql" and not path.startswith("/api/v3/"):
            return self._git(method, path, query, headers, raw)
        body: Any = None
        try:
            body = json.loads(raw) if raw else None
            call = self._graphql if path == "/api/graphql" else self._api
            status, out_headers, payload = call(method, path, query, headers, body)
        except ForgeError as exc:
            status, out_headers, payload = exc.status, exc.headers, exc.body()
        except ValueError:
            status, out_headers, payload = 400, {}, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        self._log_exchange(method, path, query, status, body, payload)
        return status, out_headers, payload

    def _graphql(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Any,
                 ) -> tuple[int, dict[str, str], Any]:
        """``POST /api/graphql`` (GitHub Enterprise's GraphQL endpoint), for exactly one mutation:
        ``markPullRequestReadyForReview`` (what PyGithub's ``mark_ready_for_review`` sends). GraphQL's contract:
        ``200`` with ``{"data": ...}``, or ``{"data": null|{...}, "errors": [{"type", "message", "path"}]}``; a
        bad token is REST's ``401 Bad credentials``. Gated like REST writes (faults, the secondary limit)."""
        if method != "POST":
            raise ForgeError(404, "Not Found")
        with self._lock:
            lost = self._gate("POST", path, headers)
            payload = self._graphql_mutation(body or {})
            if lost is not None:
                raise lost
        return 200, self._rate_headers(), payload

    def _git(self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes,
             ) -> tuple[int, dict[str, str], Any]:
        if githttp.is_push(path, query) and githttp.basic_password(headers) != self.token:
            return 401, {"WWW-Authenticate": 'Basic realm="offline GitHub"'}, b"Authentication required\n"
        status, out, payload = githttp.serve(self.root, method, path, query, headers, raw)
        if githttp.is_push(path, query) and method == "POST":
            full = path.split(".git/", 1)[0].lstrip("/")
            with self._lock:
                if full in self.repos:
                    self.repos[full]["pushed_at"] = now()
                    self._generation += 1
                    self._refresh_heads(full)
        return status, out, payload

    def _rate_headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.primary_limit), "x-ratelimit-remaining":
                str(max(0, self.primary_limit - self._used)), "x-ratelimit-used": str(self._used),
                "x-ratelimit-reset": str(self._reset), "x-ratelimit-resource": "core"}

    def _api(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Any,
             ) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            lost = self._gate(method, path, headers)
            status, extra, payload = self._route(method, path, query, headers, body)
            if lost is not None:
                raise lost
            return status, extra, payload

    def _gate(self, method: str, path: str, headers: Mapping[str, str]) -> ForgeError | None:
        """Authentication, injected faults, the primary and secondary limits; a fault whose request is carried
        out first (``after``) is returned to be raised once it is."""
        auth = (headers.get("authorization") or "").split(None, 1)
        if len(auth) != 2 or auth[0].lower() not in ("token", "bearer") or auth[1] != self.token:
            raise ForgeError(401, "Bad credentials")
        with self._lock:
            for i, (m, rx, status, message, extra, after) in enumerate(self._faults):
                if m == method and rx.search(path):
                    del self._faults[i]
                    fault = ForgeError(status, message, headers={**self._rate_headers(), **extra})
                    if after:
                        return fault
                    raise fault
            if self._used >= self.primary_limit:
                raise ForgeError(403, "API rate limit exceeded for user ID 1.", headers=self._rate_headers())
            if method in _WRITES:
                now = time.monotonic()
                self._writes = [t for t in self._writes if now - t < 60.0]
                if len(self._writes) >= self.content_per_minute:
                    wait = int(60 - (now - self._writes[0])) + 1
                    raise ForgeError(403, "You have exceeded a secondary rate limit. Please wait a few minutes "
                                          "before you try again.", headers={**self._rate_headers(),
                                                                            "retry-after": str(wait)})
                self._writes.append(now)
        return None

    def _route(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Any,
               ) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            for m, rx, handler in _ROUTES:
                match = rx.match(path)
                if m == method and match:
                    params = {k: v[-1] for k, v in parse_qs(query).items()}
                    status, payload = getattr(self, "_" + handler)(**match.groupdict(), params=params, body=body)
                    break
            else:
                raise ForgeError(404, "Not Found")
            if method in _WRITES:
                self._generation += 1
            seen = json.dumps([payload, self._generation], sort_keys=True).encode()
            etag = 'W/"' + hashlib.sha1(seen).hexdigest() + '"'
            if method == "GET" and headers.get("if-none-match") == etag:
                return 304, {**self._rate_headers(), "ETag": etag}, None   # conditional: costs no rate limit
            self._used += 1
            extra = {**self._rate_headers(), **({"ETag": etag} if method == "GET" else {})}
            return status, extra, payload

    # -- objects ---------------------------------------------------------------------------------------------------
    def _user(self, login: str) -> dict[str, Any]:
        uid = self._users.setdefault(login, next(self._ids))
        return objects.user(self.api_url, self.web_url, login, uid, "Organization" if login == self.owner else "User")

    def _repo(self, o: str, r: str) -> dict[str, Any]:
        repo = self.repos.get(f"{o}/{r}")
        if repo is None:
            raise ForgeError(404, "Not Found")
        return repo

    def _repo_obj(self, repo: dict[str, Any], full: bool = False) -> dict[str, Any]:
        repo = {**repo, "open": sum(1 for p in repo["pulls"].values() if p["state"] == "open")}
        return objects.repository(self.api_url, self.web_url, repo, self._user(repo["owner"]), full)

    def _pull_obj(self, repo: dict[str, Any], pr: dict[str, Any], full: bool = True) -> dict[str, Any]:
        people = {login: self._user(login) for login in {*pr["assignees"], *pr["reviewers"], pr.get("merged_by") or ""}
                  if login}
        return objects.pull(self.api_url, self.web_url, f"{repo['owner']}/{repo['name']}", pr, self._repo_obj(repo),
                            self._user(pr["user"]), people, full)

    def _pr(self, o: str, r: str, n: str) -> tuple[dict[str, Any], dict[str, Any]]:
        repo = self._repo(o, r)
        pr = repo["pulls"].get(int(n))
        if pr is None:
            raise ForgeError(404, "Not Found")
        return repo, pr

    def _bare(self, repo: dict[str, Any]) -> Path:
        return self.root / repo["owner"] / f"{repo['name']}.git"

    def _refresh_heads(self, full: str) -> None:
        repo = self.repos[full]
        for pr in repo["pulls"].values():
            if pr["state"] == "open":
                sha = githttp.branch_sha(self._bare(repo), pr["head"])
                if sha and sha != pr["head_sha"]:
                    pr["head_sha"], pr["updated_at"] = sha, now()
                    pr["stats"] = githttp.commits_between(self._bare(repo), pr["base_sha"], sha)

    # -- handlers --------------------------------------------------------------------------------------------------
    def _get_repo(self, o: str, r: str, params: dict, body: Any) -> tuple[int, Any]:
        return 200, self._repo_obj(self._repo(o, r), full=True)

    def _list_pulls(self, o: str, r: str, params: dict, body: Any) -> tuple[int, Any]:
        repo = self._repo(o, r)
        state, head, base = params.get("state", "open"), params.get("head"), params.get("base")
        if int(params.get("page", 1)) > 1:
            return 200, []
        out = []
        for pr in sorted(repo["pulls"].values(), key=lambda p: -p["number"]):
            if state != "all" and pr["state"] != state:
                continue
            if head and f"{repo['owner']}:{pr['head']}" != head and pr["head"] != head:
                continue
            if base and pr["base"] != base:
                continue
            out.append(self._pull_obj(repo, pr, full=False))
        return 200, out
