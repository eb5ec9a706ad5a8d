"""An offline GitLab on loopback: a stateful TEST DOUBLE of the merge-request subset of the GitLab REST API (v4) that
python-gitlab uses, and of git over smart HTTP. Driven by the real python-gitlab client.

REST, under ``/api/v4``: ``GET /projects/:id`` (numeric id or URL-encoded path); ``GET /users?username=``;
``GET|POST /projects/:id/merge_requests`` (``source_branch``, ``state`` filters; a second open merge request for one
source branch is GitLab's ``409 Conflict``, "Another open merge request already exists for this source branch:
!N"); ``GET|PUT /projects/:id/merge_requests/:iid`` (``title``, ``description``, ``state_event`` close/reopen,
``add_labels``, ``reviewer_ids``); ``GET|POST .../notes``; ``GET .../approvals``; ``PUT .../merge`` (405 when
not mergeable). A draft is a title starting ``Draft:``, as GitLab marks it. Authentication: ``PRIVATE-TOKEN`` or
``Authorization: Bearer``, else ``401 Unauthorized``. Git at ``/{group}/{name}.git`` (:mod:`.githttp`).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from airflow_provider_worktree.testing.forge import githttp
from airflow_provider_worktree.testing.forge.loopback import LoopbackForge
from airflow_provider_worktree.testing.forge.pulls import now

_P = r"/api/v4/projects/(?P<pid>[^/]+)"
_ROUTES = [(m, re.compile("^" + p + "$"), h) for m, p, h in (
    ("GET", r"/api/v4/users", "users"),
    ("GET", r"/api/v4/groups/(?P<gid>[^/]+)", "get_group"),
    ("GET", r"/api/v4/groups/(?P<gid>[^/]+)/projects", "group_projects"),
    ("GET", _P, "get_project"),
    ("GET", _P + r"/merge_requests", "list_mrs"),
    ("POST", _P + r"/merge_requests", "create_mr"),
    ("GET", _P + r"/merge_requests/(?P<iid>\d+)", "get_mr"),
    ("PUT", _P + r"/merge_requests/(?P<iid>\d+)", "update_mr"),
    ("GET", _P + r"/merge_requests/(?P<iid>\d+)/notes", "list_notes"),
    ("POST", _P + r"/merge_requests/(?P<iid>\d+)/notes", "create_note"),
    ("GET", _P + r"/merge_requests/(?P<iid>\d+)/approvals", "approvals"),
    ("PUT", _P + r"/merge_requests/(?P<iid>\d+)/merge", "merge_mr"),
    ("PUT", _P + r"/merge_requests/(?P<iid>\d+)/rebase", "rebase_mr"),
)]


class GitLabError(Exception):
    def __init__(self, status: int, message: Any) -> None:
        super().__init__(str(message))
        self.status, self.message = status, message


class OfflineGitLab(LoopbackForge):
    """The offline GitLab. ``token``: the one token it accepts (the user ``owner``'s)."""

    def __init__(self, root: str | Path, *, token: str = "glpat-offline-test-token", owner: str = "octo-group",
                 host: str = "127.0.0.1", port: int = 0, request_log: str | Path | None = None) -> None:
        self.root, self.token, self.owner, self.host, self.port = Path(root), token, owner, host, port
        self.request_log = Path(request_log) if request_log else None
        self._lock = threading.RLock()
        self._ids = itertools.count(100)
        self.projects: dict[str, dict[str, Any]] = {}
        self.users: dict[str, int] = {owner: 1}
        self._faults: list[tuple[str, re.Pattern[str], int, str, bool]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def git_url(self, path: str, *, with_token: bool = False) -> str:
        auth = f"oauth2:{self.token}@" if with_token else ""
        return f"http://{auth}{self.host}:{self.port}/{path}.git"

    def _listening(self) -> str:
        return f"offline GitLab TEST DOUBLE listening on {self.url}"

    # -- test helpers ----------------------------------------------------------------------------------------------
    def create_project(self, name: str, source: str | Path | None = None, *, group: str | None = None,
                       default_branch: str = "main") -> str:
        group = group or self.owner
        githttp.init_bare(self.root, group, name, source, default_branch)
        with self._lock:
            self.projects[f"{group}/{name}"] = {"id": next(self._ids), "name": name, "group": group,
                                                "default_branch": default_branch, "mrs": {}, "next_iid": 1}
        return f"{group}/{name}"

    def set_project(self, path: str, *, archived: bool | None = None, empty: bool | None = None,
                    forked: bool | None = None, topics: list[str] | None = None) -> None:
        """What a group's project list reports of ``path``: archived, empty (``empty_repo``), a fork, topics."""
        with self._lock:
            for key, value in (("archived", archived), ("empty", empty), ("forked", forked), ("topics", topics)):
                if value is not None:
                    self.projects[path][key] = value

    def add_user(self, username: str) -> int:
        with self._lock:
            return self.users.setdefault(username, next(self._ids))

    def approve(self, path: str, iid: int, username: str) -> None:
        with self._lock:
            self.projects[path]["mrs"][iid]["approved_by"].append(self.add_user(username))

    def set_pipeline(self, path: str, iid: int, status: str) -> None:
        """The merge request's head pipeline status (``running``, ``success``, ``failed``, ...)."""
        with self._lock:
            self.projects[path]["mrs"][iid]["pipeline"] = status

    def fail_next(self, method: str, path_regex: str, status: int, message: str = "500 Internal Server Error", *,
                  after: bool = False) -> None:
        """The next API request matching answers ``status`` with ``message``; ``after``: carried out first, only
        its response lost."""
        with self._lock:
            self._faults.append((method, re.compile(path_regex), status, message, after))

    def set_merge_method(self, path: str, method: str) -> None:
        """The project's merge method: ``merge`` (default), ``rebase_merge`` or ``ff`` (fast-forward only: a merge
        request whose source is behind its target answers ``406 Branch cannot be merged`` until rebased)."""
        with self._lock:
            self.projects[path]["merge_method"] = method

    def set_behind(self, path: str, iid: int, behind: bool = True) -> None:
        """The merge request's source branch is behind its target (a rebase fixes it)."""
        with self._lock:
            self.projects[path]["mrs"][iid]["behind"] = behind

    def merge_requests(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.projects[path]["mrs"].values()]

    # -- HTTP ------------------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes,
               ) -> tuple[int, dict[str, str], Any]:
        if not path.startswith("/api/v4/"):
            if githttp.is_push(path, query) and githttp.basic_password(headers) != self.token:
                return 401, {"WWW-Authenticate": 'Basic realm="offline GitLab"'}, b"HTTP Basic: Access denied\n"
            return githttp.serve(self.root, method, path, query, headers, raw)
        body: Any = None
        try:
            body = json.loads(raw) if raw else {}
            token = headers.get("private-token") or (headers.get("authorization") or "").removeprefix("Bearer ")
            if token != self.token:
                raise GitLabError(401, "401 Unauthorized")
            with self._lock:
                lost = None
                for i, (m, rx, status, message, after) in enumerate(self._faults):
                    if m == method and rx.search(path):
                        del self._faults[i]
                        lost = GitLabError(status, message)
                        if not after:
                            raise lost
                        break
                for m, rx, handler in _ROUTES:
                    match = rx.match(path)
                    if m == method and match:
                        params = {k: v[-1] for k, v in parse_qs(query).items()}
                        status, payload = getattr(self, "_" + handler)(**match.groupdict(), params=params, body=body)
                        break
                else:
                    raise GitLabError(404, "404 Not Found")
                if lost is not None:
                    raise lost
        except GitLabError as exc:
            status, payload = exc.status, {"message": exc.message}
        self._log_exchange(method, path, query, status, body, payload)
        return status, {}, payload

    # -- objects ---------------------------------------------------------------------------------------------------
    def _project(self, pid: str) -> dict[str, Any]:
        key = unquote(pid)
        project = self.projects.get(key) or next((p for p in self.projects.values() if str(p["id"]) == key), None)
        if project is None:
            raise GitLabError(404, "404 Project Not Found")
        return project

    def _user(self, uid: int) -> dict[str, Any]:
        name = next(n for n, i in self.users.items() if i == uid)
        return {"id": uid, "username": name, "name": name, "state": "active", "web_url": f"{self.url}/{name}"}

    def _mr_obj(self, p: dict[str, Any], mr: dict[str, Any]) -> dict[str, Any]:
        path = f"{p['group']}/{p['name']}"
        return {
            "id": mr["id"], "iid": mr["iid"], "project_id": p["id"], "title": mr["title"],
            "description": mr["description"], "state": mr["state"], "draft": mr["title"].startswith("Draft:"),
            "work_in_progress": mr["title"].startswith("Draft:"), "source_branch": mr["source"],
            "target_branch": mr["target"], "sha": mr["sha"], "web_url": f"{self.url}/{path}/-/merge_requests/{mr['iid']}",
            "labels": list(mr["labels"]), "author": self._user(1), "reviewers": [self._user(u) for u in mr["reviewers"]],
            "assignees": [self._user(u) for u in mr.get("assignees", [])],
            "created_at": mr["created_at"], "updated_at": mr["updated_at"], "merged_at": mr["merged_at"],
            "closed_at": mr["closed_at"], "detailed_merge_status": "mergeable" if mr["state"] == "opened" else "not_open",
            "head_pipeline": {"id": mr["iid"], "sha": mr["sha"], "status": mr["pipeline"]} if mr["pipeline"] else None,
        }

    def _mr(self, pid: str, iid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        p = self._project(pid)
        mr = p["mrs"].get(int(iid))
        if mr is None:
            raise GitLabError(404, "404 Not found")
        return p, mr

    # -- handlers --------------------------------------------------------------------------------------------------
    def _users(self, params: dict, body: Any) -> tuple[int, Any]:
        name = params.get("username")
        return 200, [self._user(uid) for n, uid in self.users.items() if name in (None, n)]

    def _project_obj(self, project: dict[str, Any]) -> dict[str, Any]:
        path = f"{project['group']}/{project['name']}"
        out = {"id": project["id"], "name": project["name"], "path": project["name"], "path_with_namespace": path,
               "default_branch": None if project.get("empty") else project["default_branch"],
               "web_url": f"{self.url}/{path}", "http_url_to_repo": self.git_url(path),
               "archived": bool(project.get("archived")), "empty_repo": bool(project.get("empty")),
               "topics": list(project.get("topics", [])), "namespace": {"full_path": project["group"]}}
        if project.get("forked"):
            out["forked_from_project"] = {"id": 1, "path_with_namespace": "upstream/" + project["name"]}
        return out

    def _get_project(self, pid: str, params: dict, body: Any) -> tuple[int, Any]:
        return 200, self._project_obj(self._project(pid))

    def _get_group(self, gid: str, params: dict, body: Any) -> tuple[int, Any]:
        """A group is any namespace a project lives in (or a parent of one): ``GET /groups/:id`` by full path."""
        full = unquote(gid)
        if not any(p["group"] == full or p["group"].startswith(full + "/") for p in self.projects.values()):
            raise GitLabError(404, "404 Group Not Found")
        return 200, {"id": full, "name": full.rsplit("/", 1)[-1], "path": full.rsplit("/", 1)[-1],
                     "full_path": full, "web_url": f"{self.url}/groups/{full}"}

    def _group_projects(self, gid: str, params: dict, body: Any) -> tuple[int, Any]:
        """``GET /groups/:id/projects``: its projects, with ``include_subgroups=true`` those of its subgroups too,
        ``archived=true|false`` filtering; every match on the first page."""
        self._get_group(gid, params, body)
        full, deep = unquote(gid), str(params.get("include_subgroups")).lower() == "true"
        if int(params.get("page", 1)) > 1:
            return 200, []
        out = [self._project_obj(p) for _, p in sorted(self.projects.items())
               if p["group"] == full or (deep and p["group"].startswith(full + "/"))]
        if "archived" in params:
            out = [p for p in out if str(p["archived"]).lower() == str(params["archived"]).lower()]
        return 200, out

    def _list_mrs(self, pid: str, params: dict, body: Any) -> tuple[int, Any]:
        p = self._project(pid)
        state, source = params.get("state", "all"), params.get("source_branch")
        if int(params.get("page", 1)) > 1:
            return 200, []
        return 200, [self._mr_obj(p, mr) for mr in sorted(p["mrs"].values(), key=lambda m: -m["iid"])
                     if state in ("all", mr["state"]) and source in (None, mr["source"])]

    def _create_mr(self, pid: str, params: dict, body: Any) -> tuple[int, Any]:
        p = self._project(pid)
        source, target, title = body.get("source_branch"), body.get("target_branch"), body.get("title")
        if not (source and target and title):
            raise GitLabError(400, "400 Bad request - source_branch, target_branch, title are missing")
        clash = next((m for m in p["mrs"].values() if m["state"] == "opened" and m["source"] == source), None)
        if clash is not None:
            raise GitLabError(409, [f"Another open merge request already exists for this source branch: !{clash['iid']}"])
        bare = self.root / p["group"] / f"{p['name']}.git"
        sha = githttp.branch_sha(bare, source)
        if sha is None or githttp.branch_sha(bare, target) is None:
            raise GitLabError(400, "400 Bad request - the source or target branch does not exist")
        iid = p["next_iid"]
        p["next_iid"] += 1
        labels = [x for x in str(body.get("labels") or "").split(",") if x]
        mr = {"id": next(self._ids), "iid": iid, "title": title, "description": body.get("description") or "",
              "state": "opened", "source": source, "target": target, "sha": sha, "labels": labels,
              "reviewers": list(body.get("reviewer_ids") or []), "assignees": list(body.get("assignee_ids") or []),
              "notes": [], "approved_by": [], "pipeline": None,
              "created_at": now(), "updated_at": now(), "merged_at": None, "closed_at": None}
        p["mrs"][iid] = mr
        return 201, self._mr_obj(p, mr)

    def _get_mr(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        return 200, self._mr_obj(p, mr)

    def _update_mr(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        for key, field in (("title", "title"), ("description", "description")):
            if key in body:
                mr[field] = body[key]
        mr["labels"] += [x for x in str(body.get("add_labels") or "").split(",") if x and x not in mr["labels"]]
        for key, field in (("reviewer_ids", "reviewers"), ("assignee_ids", "assignees")):  # GitLab: sets the list
            if key in body:
                mr[field] = [int(u) for u in body.get(key) or []]
        event = body.get("state_event")
        if event == "close" and mr["state"] == "opened":
            mr["state"], mr["closed_at"] = "closed", now()
        elif event == "reopen" and mr["state"] == "closed":
            mr["state"], mr["closed_at"] = "opened", None
        mr["updated_at"] = now()
        return 200, self._mr_obj(p, mr)

    def _list_notes(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        return 200, [] if int(params.get("page", 1)) > 1 else list(mr["notes"])

    def _create_note(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        if not body.get("body"):
            raise GitLabError(400, "400 Bad request - body is missing")
        note = {"id": next(self._ids), "body": body["body"], "author": self._user(1), "created_at": now(),
                "system": False, "noteable_iid": mr["iid"], "noteable_type": "MergeRequest"}
        mr["notes"].append(note)
        return 201, note

    def _approvals(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        return 200, {"id": mr["id"], "iid": mr["iid"], "approved": bool(mr["approved_by"]),
                     "approved_by": [{"user": self._user(u)} for u in mr["approved_by"]]}

    def _merge_mr(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        p, mr = self._mr(pid, iid)
        args = {**params, **(body or {})}
        if mr["state"] != "opened" or mr["title"].startswith("Draft:"):
            raise GitLabError(405, "405 Method Not Allowed")
        if mr.get("behind") and p.get("merge_method") == "ff":
            raise GitLabError(406, "406 Branch cannot be merged")
        if args.get("sha") and args["sha"] != mr["sha"]:
            raise GitLabError(409, "SHA does not match HEAD of source branch: " + str(args["sha"]))
        mr["squashed"] = str(args.get("squash")).lower() == "true"
        mr.update(state="merged", merged_at=now(), updated_at=now())
        return 200, self._mr_obj(p, mr)

    def _rebase_mr(self, pid: str, iid: str, params: dict, body: Any) -> tuple[int, Any]:
        """Rebase at once (GitLab does it in the background; ``rebase_in_progress`` is already false here)."""
        p, mr = self._mr(pid, iid)
        if mr["state"] != "opened":
            raise GitLabError(405, "405 Method Not Allowed")
        mr["behind"], mr["updated_at"] = False, now()
        return 202, {"rebase_in_progress": True}
