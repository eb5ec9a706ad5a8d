"""GitHub REST objects as the API returns them (simple-user, repository, pull-request, issue-comment, label,
pull-request-review, combined-commit-status, check-run), built to the schemas of GitHub's OpenAPI description
(``@octokit/openapi``; ``tests/test_forge_github.py`` validates every response against it). TEST DOUBLE."""

from __future__ import annotations

import hashlib
from typing import Any


def node_id(kind: str, number: int) -> str:
    return hashlib.sha1(f"{kind}:{number}".encode()).hexdigest()[:20].upper()


def user(api: str, web: str, login: str, uid: int, kind: str = "User") -> dict[str, Any]:
    u = f"{api}/users/{login}"
    return {
        "login": login, "id": uid, "node_id": node_id("user", uid), "avatar_url": f"{web}/avatars/{login}",
        "gravatar_id": "", "url": u, "html_url": f"{web}/{login}", "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events", "type": kind, "site_admin": False,
    }


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}", "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
    "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
    "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags",
    "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}


def repository(api: str, web: str, repo: dict[str, Any], owner: dict[str, Any], full: bool = False) -> dict[str, Any]:
    full_name = f"{owner['login']}/{repo['name']}"
    u = f"{api}/repos/{full_name}"
    out = {
        "id": repo["id"], "node_id": node_id("repo", repo["id"]), "name": repo["name"], "full_name": full_name,
        "owner": owner, "private": False, "html_url": f"{web}/{full_name}", "description": repo.get("description"),
        "fork": bool(repo.get("fork")), "url": u, **{k: u + v for k, v in _REPO_URLS.items()},
        "clone_url": f"{web}/{full_name}.git", "git_url": f"git://offline/{full_name}.git",
        "ssh_url": f"git@offline:{full_name}.git", "svn_url": f"{web}/{full_name}", "mirror_url": None,
        "homepage": None, "language": repo.get("language"), "forks_count": 0, "forks": 0, "stargazers_count": 0,
        "watchers_count": 0, "watchers": 0, "size": repo.get("size", 1), "default_branch": repo["default_branch"],
        "open_issues_count": repo.get("open", 0), "open_issues": repo.get("open", 0), "is_template": False,
        "topics": list(repo.get("topics", [])), "has_issues": True, "has_projects": False, "has_wiki": False,
        "has_pages": False, "has_downloads": True, "has_discussions": False, "archived": bool(repo.get("archived")),
        "disabled": False, "visibility": "public", "pushed_at": repo["pushed_at"], "created_at": repo["created_at"],
        "updated_at": repo["updated_at"], "permissions": {"admin": True, "maintain": True, "push": True,
                                                          "triage": True, "pull": True},
        "allow_forking": True, "web_commit_signoff_required": False, "license": None,
    }
    if full:
        out.update(network_count=0, subscribers_count=0, allow_merge_commit=repo.get("allow_merge_commit", True),
                   allow_squash_merge=repo.get("allow_squash_merge", True),
                   allow_rebase_merge=repo.get("allow_rebase_merge", True), delete_branch_on_merge=False)
    return out


def label(api: str, full_name: str, name: str, lid: int) -> dict[str, Any]:
    return {"id": lid, "node_id": node_id("label", lid), "url": f"{api}/repos/{full_name}/labels/{name}",
            "name": name, "description": "", "color": "ededed", "default": False}


def pull(api: str, web: str, full_name: str, pr: dict[str, Any], repo_obj: dict[str, Any],
         author: dict[str, Any], people: dict[str, dict[str, Any]], full: bool = True) -> dict[str, Any]:
    n = pr["number"]
    u = f"{api}/repos/{full_name}/pulls/{n}"
    issue = f"{api}/repos/{full_name}/issues/{n}"
    html = f"{web}/{full_name}/pull/{n}"
    links = {"self": {"href": u}, "html": {"href": html}, "issue": {"href": issue},
             "comments": {"href": f"{issue}/comments"}, "review_comments": {"href": f"{u}/comments"},
             "review_comment": {"href": f"{api}/repos/{full_name}/pulls/comments{{/number}}"},
             "commits": {"href": f"{u}/commits"}, "statuses": {"href": f"{api}/repos/{full_name}/statuses/{pr['head_sha']}"}}
    owner = repo_obj["owner"]

    def side(ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{owner['login']}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_obj}

    assignees = [people[a] for a in pr["assignees"]]
    out = {
        "url": u, "id": pr["id"], "node_id": node_id("pr", pr["id"]), "html_url": html, "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{u}/commits",
        "review_comments_url": f"{u}/comments", "review_comment_url": f"{api}/repos/{full_name}/pulls/comments{{/number}}",
        "comments_url": f"{issue}/comments", "statuses_url": f"{api}/repos/{full_name}/statuses/{pr['head_sha']}",
        "number": n, "state": pr["state"], "locked": False, "title": pr["title"], "user": author, "body": pr["body"],
        "labels": [label(api, full_name, name, lid) for name, lid in pr["labels"]], "milestone": None,
        "active_lock_reason": None, "created_at": pr["created_at"], "updated_at": pr["updated_at"],
        "closed_at": pr["closed_at"], "merged_at": pr["merged_at"], "merge_commit_sha": pr.get("merge_commit_sha"),
        "assignee": assignees[0] if assignees else None, "assignees": assignees,
        "requested_reviewers": [people[r] for r in pr["reviewers"]], "requested_teams": [],
        "head": side(pr["head"], pr["head_sha"]), "base": side(pr["base"], pr["base_sha"]), "_links": links,
        "author_association": "OWNER", "auto_merge": None, "draft": pr["draft"],
    }
    if full:
        out.update(merged=pr["merged_at"] is not None, mergeable=None if pr["state"] != "open" else pr["mergeable"],
                   rebaseable=pr["mergeable"], mergeable_state="clean" if pr["mergeable"] else "dirty",
                   merged_by=people.get(pr.get("merged_by") or "", None), comments=len(pr["comments"]),
                   review_comments=0, maintainer_can_modify=False, commits=pr["stats"][0],
                   additions=pr["stats"][2], deletions=pr["stats"][3], changed_files=pr["stats"][1])
    return out


def issue_comment(api: str, web: str, full_name: str, number: int, c: dict[str, Any],
                  author: dict[str, Any]) -> dict[str, Any]:
    u = f"{api}/repos/{full_name}/issues/comments/{c['id']}"
    return {"id": c["id"], "node_id": node_id("comment", c["id"]), "url": u,
            "html_url": f"{web}/{full_name}/pull/{number}#issuecomment-{c['id']}", "body": c["body"],
            "user": author, "created_at": c["created_at"], "updated_at": c["updated_at"],
            "issue_url": f"{api}/repos/{full_name}/issues/{number}", "author_association": "OWNER"}


def review(api: str, web: str, full_name: str, number: int, r: dict[str, Any], author: dict[str, Any]) -> dict[str, Any]:
    html = f"{web}/{full_name}/pull/{number}#pullrequestreview-{r['id']}"
    pr_url = f"{api}/repos/{full_name}/pulls/{number}"
    return {"id": r["id"], "node_id": node_id("review", r["id"]), "user": author, "body": r["body"],
            "state": r["state"], "html_url": html, "pull_request_url": pr_url, "commit_id": r["commit_id"],
            "submitted_at": r["submitted_at"], "author_association": "MEMBER",
            "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}}}


def issue(api: str, web: str, full_name: str, pr: dict[str, Any], author: dict[str, Any],
          people: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue side of a pull request (``issue``), as the issues endpoints answer for one."""
    n, u = pr["number"], f"{api}/repos/{full_name}/issues/{pr['number']}"
    assignees = [people[a] for a in pr["assignees"]]
    return {"id": pr["id"], "node_id": node_id("issue", pr["id"]), "url": u, "repository_url": f"{api}/repos/{full_name}",
            "labels_url": f"{u}/labels{{/name}}", "comments_url": f"{u}/comments", "events_url": f"{u}/events",
            "html_url": f"{web}/{full_name}/pull/{n}", "number": n, "state": pr["state"], "title": pr["title"],
            "body": pr["body"], "user": author, "labels": [label(api, full_name, name, lid) for name, lid in pr["labels"]],
            "assignee": assignees[0] if assignees else None, "assignees": assignees, "milestone": None, "locked": False,
            "comments": len(pr["comments"]), "closed_at": pr["closed_at"], "created_at": pr["created_at"],
            "updated_at": pr["updated_at"], "author_association": "OWNER",
            "pull_request": {"url": f"{api}/repos/{full_name}/pulls/{n}", "html_url": f"{web}/{full_name}/pull/{n}",
                             "diff_url": f"{web}/{full_name}/pull/{n}.diff",
                             "patch_url": f"{web}/{full_name}/pull/{n}.patch"}}


def review_comment(api: str, web: str, full_name: str, number: int, c: dict[str, Any],
                   author: dict[str, Any]) -> dict[str, Any]:
    """A pull request review comment (``pull-request-review-comment``): on ``path`` at ``line`` of the head."""
    u = f"{api}/repos/{full_name}/pulls/comments/{c['id']}"
    html = f"{web}/{full_name}/pull/{number}#discussion_r{c['id']}"
    out = {"id": c["id"], "node_id": node_id("review_comment", c["id"]), "url": u, "html_url": html,
           "pull_request_review_id": c["review_id"], "diff_hunk": c.get("diff_hunk", "@@ -1 +1 @@"),
           "path": c["path"], "line": c["line"], "original_line": c["line"], "side": "RIGHT",
           "subject_type": "line", "commit_id": c["commit_id"], "original_commit_id": c["commit_id"],
           "user": author, "body": c["body"], "created_at": c["created_at"], "updated_at": c["created_at"],
           "pull_request_url": f"{api}/repos/{full_name}/pulls/{number}", "author_association": "MEMBER",
           "_links": {"self": {"href": u}, "html": {"href": html},
                      "pull_request": {"href": f"{api}/repos/{full_name}/pulls/{number}"}}}
    if c.get("in_reply_to_id"):
        out["in_reply_to_id"] = c["in_reply_to_id"]
    return out


def combined_status(api: str, full_name: str, sha: str, statuses: list[dict[str, Any]],
                    repo_obj: dict[str, Any]) -> dict[str, Any]:
    states = {s["state"] for s in statuses}
    state = ("failure" if states & {"failure", "error"} else "pending" if "pending" in states or not statuses
             else "success")
    items = [{"url": f"{api}/repos/{full_name}/statuses/{sha}", "avatar_url": None, "id": s["id"],
              "node_id": node_id("status", s["id"]), "state": s["state"], "description": s.get("description"),
              "target_url": s.get("target_url"), "context": s["context"], "created_at": s["created_at"],
              "updated_at": s["created_at"]} for s in statuses]
    return {"state": state, "statuses": items, "sha": sha, "total_count": len(items), "repository": repo_obj,
            "commit_url": f"{api}/repos/{full_name}/commits/{sha}", "url": f"{api}/repos/{full_name}/commits/{sha}/status"}


def check_run(api: str, web: str, full_name: str, c: dict[str, Any], app_owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"], "node_id": node_id("check", c["id"]), "head_sha": c["head_sha"], "external_id": "",
        "url": f"{api}/repos/{full_name}/check-runs/{c['id']}", "html_url": f"{web}/{full_name}/runs/{c['id']}",
        "details_url": None, "status": c["status"], "conclusion": c.get("conclusion"),
        "started_at": c["started_at"], "completed_at": c.get("completed_at"), "name": c["name"],
        "output": {"title": c.get("title"), "summary": c.get("summary"), "text": c.get("text"),
                   "annotations_count": 0, "annotations_url": f"{api}/repos/{full_name}/check-runs/{c['id']}/annotations"},
        "check_suite": {"id": c["id"]}, "app": None, "pull_requests": [],
    }


def commit(api: str, web: str, full_name: str, info: dict[str, Any]) -> dict[str, Any]:
    """A commit as ``GET /repos/{o}/{r}/commits/{ref}`` returns it (``info`` from ``git log``: sha, tree, parents,
    author and committer name/email/date, message). Its GitHub users are unknown: null, as for a foreign email."""
    sha = info["sha"]
    u = f"{api}/repos/{full_name}/commits/{sha}"
    person = {k: {"name": info[f"{k}_name"], "email": info[f"{k}_email"], "date": info[f"{k}_date"]}
              for k in ("author", "committer")}
    return {
        "url": u, "sha": sha, "node_id": node_id("commit", int(sha[:8], 16)), "html_url": f"{web}/{full_name}/commit/{sha}",
        "comments_url": f"{u}/comments", "author": None, "committer": None,
        "commit": {"url": f"{api}/repos/{full_name}/git/commits/{sha}", "author": person["author"],
                   "committer": person["committer"], "message": info["message"], "comment_count": 0,
                   "tree": {"sha": info["tree"], "url": f"{api}/repos/{full_name}/git/trees/{info['tree']}"}},
        "parents": [{"sha": p, "url": f"{api}/repos/{full_name}/commits/{p}", "html_url": f"{web}/{full_name}/commit/{p}"}
                    for p in info["parents"]],
        "stats": {"total": 0, "additions": 0, "deletions": 0}, "files": [],
    }
