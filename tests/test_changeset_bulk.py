"""Bulk actions on changesets (issue 19, item 5): ``airflow-worktree changesets ready|comment|close|merge`` through
the real CLI process, PyGithub (via the official provider's GithubHook) and python-gitlab against the offline
forges, a real SQLite shard database; faults the forges document (5xx, a lost response, the secondary rate limit,
401, 405 for a refused merge method or an unmet rule, 409 for a moved head). Every GitHub REST exchange is checked
against GitHub's OpenAPI description; the one GraphQL mutation against GraphQL's response envelope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed "
                                                        "(pip install 'airflow-provider-worktree[github]')")
pytest.importorskip("gitlab", reason="python-gitlab is not installed (pip install 'airflow-provider-worktree[gitlab]')")

import githubapi  # noqa: E402
from github import Auth, Github  # noqa: E402

from airflow_provider_worktree.core.forge import ChangesetSpec, GitHubForge, GitLabForge  # noqa: E402
from airflow_provider_worktree.core.forge.actions import method_order, run_bulk  # noqa: E402
from airflow_provider_worktree.core.forge.body import changeset_marker  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.hooks.gitlab import GitLabHook  # noqa: E402
from airflow_provider_worktree.testing.forge import OfflineGitHub, OfflineGitLab  # noqa: E402

HEAD = "worktree/todo"
NAMES = ("alpha", "beta", "gamma")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def _push_head(url: str, repo: Path, name: str) -> None:
    _git(repo, "checkout", "-q", "-B", HEAD, "main")
    (repo / "src" / "app.py").write_text(f"def add(a, b):  # {name}\n    return a + b\n")
    _git(repo, "commit", "-qam", f"todo: {name}")
    _git(repo, "push", "-qf", url, HEAD)
    _git(repo, "checkout", "-q", "main")


def _spec(repository: str) -> ChangesetSpec:
    return ChangesetSpec(repository=repository, head=HEAD, base="main", title="todo: maintenance",
                         body="the report\n\n" + changeset_marker(repository, HEAD))


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", "changesets", *args],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "250", **env})


@pytest.fixture
def github(tmp_path, git_repo):
    """Three repositories on the offline GitHub, each with a draft pull request recorded in the shard database."""
    log = tmp_path / "github.jsonl"
    with OfflineGitHub(tmp_path / "gh", request_log=log) as srv:
        db = str(tmp_path / "shard_status.db")
        store = ShardStore.open(db)
        forge = GitHubForge(Github(base_url=srv.api_url, auth=Auth.Token(srv.token), retry=None))
        srv.names = []
        for name in NAMES:
            full = srv.create_repo(name, git_repo)
            _push_head(srv.git_url(full, with_token=True), git_repo, name)
            store.record_changeset(forge.publish(_spec(full)).to_dict(), run_id="run-1")
            srv.names.append(full)
        srv.db, srv.store, srv.forge = db, store, forge
        srv.env = {"AIRFLOW_CONN_GITHUB_DEFAULT": json.dumps({"conn_type": "github", "host": srv.api_url,
                                                              "password": srv.token})}
        yield srv
    checked, problems = githubapi.check_log(log)
    assert checked > 0 and not problems, "\n".join(problems[:20])
    graphql = [json.loads(x) for x in log.read_text().splitlines() if '"/api/graphql"' in x]
    for x in graphql:  # GraphQL's envelope: 200 with data, or with errors (each a message)
        assert x["status"] == 200 and isinstance(x["response"], dict) and (
            "data" in x["response"] or "errors" in x["response"]), x
        assert all(isinstance(e.get("message"), str) for e in x["response"].get("errors") or []), x


def _results(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    data = json.loads(proc.stdout)
    return {r["repository"]: r for r in data["results"]}


def test_cli_readies_comments_once_and_merges_with_the_method_fallback(github):
    alpha, beta, gamma = github.names
    github.set_merge_methods(beta, squash=False)                   # beta allows no squash: merge falls back
    github.set_merge_methods(gamma, squash=False, merge=False)     # gamma allows rebase only
    dry = _cli("ready", "--db", github.db, "--dry-run", "-o", "json", **github.env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] and all(p["draft"] for n in github.names for p in github.pulls(n))

    ready = _cli("ready", "--db", github.db, "-o", "json", **github.env)
    assert ready.returncode == 0, ready.stderr + ready.stdout
    assert {r["result"] for r in _results(ready).values()} == {"ok"}
    assert not any(p["draft"] for n in github.names for p in github.pulls(n)), "every draft is ready for review"
    assert {r["publication"] for r in github.store.changesets()} == {"published"}

    for _ in range(2):  # the second run finds each comment (its marker) already there and posts nothing
        said = _cli("comment", "--db", github.db, "--body", "CI is green; please review.", **github.env)
        assert said.returncode == 0, said.stderr + said.stdout
    assert "already there" in said.stdout
    for n in github.names:
        (pr,) = github.pulls(n)
        assert [c["body"].startswith("CI is green") for c in pr["comments"]] == [True]
        assert changeset_marker(n, HEAD) in pr["comments"][0]["body"]

    merged = _cli("merge", "--db", github.db, "-o", "json", **github.env)
    assert merged.returncode == 0, merged.stderr + merged.stdout
    results = _results(merged)
    assert results[alpha]["reason"] == "merged (squash)"
    assert results[beta]["reason"] == "merged (merge; squash not allowed here)"
    assert results[gamma]["reason"] == "merged (rebase; squash, merge not allowed here)"
    assert {r["external_state"] for r in github.store.changesets()} == {"merged"}
    again = _cli("merge", "--db", github.db, "--state", "merged", "-o", "json", **github.env)
    assert {r["reason"] for r in _results(again).values()} == {"already merged"}


def test_one_failed_merge_stops_none_of_the_rest_and_the_exit_code_says_so(github):
    alpha, beta, gamma = github.names
    for n in github.names:
        github.forge.publish(ChangesetSpec(**{**_spec(n).__dict__, "draft": False}))
    github.protect_branch(beta, "main", "ci")                # beta's base needs a green "ci" status
    github.set_mergeable(gamma, 1, False)                   # gamma has a conflict
    out = _cli("merge", "--db", github.db, "-o", "json", **github.env)
    assert out.returncode == 3, out.stdout + out.stderr
    data = json.loads(out.stdout)
    results = _results(out)
    assert data["failed"] == 2 and results[alpha]["result"] == "ok"
    assert results[beta]["result"] == "failed" and 'Required status check "ci"' in results[beta]["reason"]
    assert "resolve it on the forge" in results[gamma]["reason"]
    rows = {r["repository"]: r for r in github.store.changesets()}
    assert rows[alpha]["external_state"] == "merged" and rows[alpha]["failures"] == 0
    assert rows[beta]["failures"] == 1 and "Required status check" in rows[beta]["last_error"]
    table = _cli("merge", "--db", github.db, "--repo", beta, **github.env)  # the table names the failure too
    assert table.returncode == 3 and "failed" in table.stdout and "0 ok, 1 failed" in table.stdout


def test_faults_leave_nothing_posted_twice_and_name_the_fix(github):
    alpha, beta, gamma = github.names
    rows = github.store.changesets()
    text = "Please review."
    # alpha: a 502; beta: the POST lands but its response is lost (a 502 after the fact); gamma: the secondary limit
    github.fail_next("POST", rf"/repos/{alpha}/issues/1/comments$", 502, "Server Error")
    github.fail_next("POST", rf"/repos/{beta}/issues/1/comments$", 502, "Server Error", after=True)
    github.fail_next("POST", rf"/repos/{gamma}/issues/1/comments$", 403, "You have exceeded a secondary rate limit "
                     "and have been temporarily blocked from content creation.", headers={"retry-after": "1"})
    first = {r.repository: r for r in run_bulk("comment", rows, lambda _: github.forge, github.store, body=text)}
    assert {r.result for r in first.values()} == {"failed"}
    assert "server error: retry later" in first[alpha].reason and "rate limit" in first[gamma].reason
    second = {r.repository: r for r in run_bulk("comment", github.store.changesets(), lambda _: github.forge,
                                                github.store, body=text)}
    assert {r.result for r in second.values()} == {"ok"}
    assert second[beta].reason == "the comment is already there (not posted twice)"
    assert [len(github.pulls(n)[0]["comments"]) for n in github.names] == [1, 1, 1]

    bad = GitHubForge(Github(base_url=github.api_url, auth=Auth.Token("ghp_wrong"), retry=None))
    (denied,) = run_bulk("close", rows[:1], lambda _: bad, github.store)
    assert denied.result == "failed" and "401" in denied.reason and "update the password" in denied.reason
    assert github.pulls(alpha)[0]["state"] == "open"


def test_a_head_pushed_since_the_last_sync_is_not_merged_unseen(github, git_repo):
    alpha = github.names[0]
    github.forge.publish(ChangesetSpec(**{**_spec(alpha).__dict__, "draft": False}))
    _push_head(github.git_url(alpha, with_token=True), git_repo, "pushed after the sync")
    (row,) = github.store.changesets(repository=alpha)
    (res,) = run_bulk("merge", [row], lambda _: github.forge, github.store)
    assert res.result == "failed" and "409" in res.reason and "changesets sync" in res.reason
    assert github.pulls(alpha)[0]["merged_at"] is None


def test_method_order_puts_the_chosen_method_first():
    assert method_order(None) == ("squash", "merge", "rebase")
    assert method_order("rebase") == ("rebase", "squash", "merge")
    with pytest.raises(ValueError, match="not one of"):
        method_order("octopus")


def test_comment_without_a_text_is_refused_before_anything_is_sent(tmp_path):
    ShardStore.open(str(tmp_path / "s.db"))
    out = _cli("comment", "--db", str(tmp_path / "s.db"))
    assert out.returncode == 3 and "--body TEXT or --body-file FILE" in out.stderr


def test_gitlab_ready_comment_close_and_merge_after_a_rebase(tmp_path, git_repo, monkeypatch):
    with OfflineGitLab(tmp_path / "gl", request_log=tmp_path / "gitlab.jsonl") as srv:
        monkeypatch.setenv("AIRFLOW_CONN_GITLAB_BULK", json.dumps({"conn_type": "gitlab", "host": srv.url,
                                                                   "password": srv.token}))
        forge = GitLabForge(GitLabHook(gitlab_conn_id="gitlab_bulk").get_conn())
        db = str(tmp_path / "shard_status.db")
        store = ShardStore.open(db)
        paths = []
        for name in ("one", "two"):
            path = srv.create_project(name, git_repo)
            _push_head(srv.git_url(path, with_token=True), git_repo, name)
            store.record_changeset(forge.publish(_spec(path)).to_dict(), run_id="run-1")
            paths.append(path)
        one, two = paths
        env = {"AIRFLOW_CONN_GITLAB_BULK": os.environ["AIRFLOW_CONN_GITLAB_BULK"]}
        ready = _cli("ready", "--db", db, "--gitlab-conn-id", "gitlab_bulk", "-o", "json", **env)
        assert ready.returncode == 0, ready.stderr + ready.stdout
        assert [m["title"] for p in paths for m in srv.merge_requests(p)] == ["todo: maintenance"] * 2

        srv.set_merge_method(one, "ff")          # fast-forward only and behind: squash and merge refused (406)
        srv.set_behind(one, 1)
        srv.fail_next("POST", r"/projects/[^/]+/merge_requests/1/notes$", 500)  # two's first close comment fails
        rows = store.changesets()
        closed = run_bulk("close", [r for r in rows if r["repository"] == two], lambda _: forge, store,
                          body="Superseded.")
        assert closed[0].result == "failed" and closed[0].reason
        closed = run_bulk("close", [r for r in store.changesets() if r["repository"] == two], lambda _: forge, store,
                          body="Superseded.")
        assert closed[0].result == "ok" and srv.merge_requests(two)[0]["state"] == "closed"
        assert [n["body"].startswith("Superseded.") for n in srv.merge_requests(two)[0]["notes"]] == [True]

        merged = run_bulk("merge", [r for r in store.changesets() if r["repository"] == one], lambda _: forge, store)
        assert merged[0].result == "ok" and merged[0].reason == "merged (rebase; squash, merge refused)"
        states = {r["repository"]: r["external_state"] for r in store.changesets()}
        assert states == {one: "merged", two: "closed"}


def test_a_forge_that_cannot_be_reached_fails_each_changeset_with_the_fix(github):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    away = GitHubForge(Github(base_url=f"http://127.0.0.1:{dead}/api/v3", auth=Auth.Token(github.token), retry=None,
                              timeout=5))
    results = run_bulk("merge", github.store.changesets(), lambda _: away, github.store)
    assert [r.result for r in results] == ["failed"] * 3
    assert all("could not be reached" in r.reason and "resumes" in r.reason for r in results), results
    assert {r["external_state"] for r in github.store.changesets()} == {"open"}
    assert {r["failures"] for r in github.store.changesets()} == {1}
