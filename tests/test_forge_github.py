"""Changesets on GitHub (issue 19, first part): the real PyGithub client against the offline GitHub (a stateful
REST double with git over smart HTTP), branches pushed with real git, every exchange the double served validated
against GitHub's own OpenAPI description (``@octokit/openapi``) with a real JSON Schema validator."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("github", reason="PyGithub is not installed (pip install 'airflow-provider-worktree[github]')")

import githubapi  # noqa: E402
from github import Auth, Github  # noqa: E402

from airflow_provider_worktree.core.forge import ChangesetSpec, ForgeError, GitHubForge  # noqa: E402
from airflow_provider_worktree.core.forge.body import changeset_marker, neutralise, render_body  # noqa: E402
from airflow_provider_worktree.core.ratelimit import SharedLimiter  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.testing.forge import OfflineGitHub  # noqa: E402

SPAWN = mp.get_context("spawn")
HEAD = "worktree/todo"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def forge(tmp_path, git_repo):
    """The offline GitHub with ``octo-org/demo`` mirrored from the fixture repository and the head branch pushed;
    on teardown its whole request log is checked against GitHub's OpenAPI description."""
    log = tmp_path / "forge-requests.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log) as srv:
        srv.full_name = srv.create_repo("demo", git_repo)
        _git(git_repo, "checkout", "-qb", HEAD)
        (git_repo / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n")
        _git(git_repo, "commit", "-qam", "todo: resolve the marker")
        _git(git_repo, "push", "-q", srv.git_url(srv.full_name, with_token=True), HEAD)
        yield srv
    if log.exists():
        checked, problems = githubapi.check_log(log)
        assert checked > 0 and not problems, "\n".join(problems[:20])


def _client(srv: OfflineGitHub) -> Github:
    return Github(base_url=srv.api_url, auth=Auth.Token(srv.token), retry=None)


def _spec(srv: OfflineGitHub, **kw) -> ChangesetSpec:
    body = render_body(None, {"task": "todo", "repository": srv.full_name, "run_id": "run-1", "run_url": None,
                              "totals": {"shards": 1, "by_status": {"completed": 1}, "files_changed": 1,
                                         "input_total": 10, "input_tokens": 1, "cache_read_tokens": 8,
                                         "cache_write_tokens": 1, "output_tokens": 5, "cost_usd": 0.01,
                                         "offline": True, "accepted": 1},
                              "shards": [{"shard_id": "todo-1", "status": "completed", "diffstat": " 1 file changed",
                                          "error_message": None}]},
                       marker=changeset_marker(srv.full_name, HEAD))
    return ChangesetSpec(**{"repository": srv.full_name, "head": HEAD, "base": "main", "title": "todo: maintenance",
                            "body": body, "labels": ("maintenance",), "reviewers": ("alice",), **kw})


def test_publish_opens_one_draft_and_a_rerun_updates_it_in_place(forge, tmp_path):
    gh = GitHubForge(_client(forge))
    first = gh.publish(_spec(forge))
    assert first.action == "created" and first.publication == "draft" and first.external_state == "open"
    assert first.url == f"{forge.web_url}/{forge.full_name}/pull/1"
    again = gh.publish(_spec(forge))
    assert again.action == "unchanged" and again.number == first.number
    changed = gh.publish(_spec(forge, title="todo: maintenance (second run)"))
    assert changed.action == "updated" and changed.number == first.number
    (pr,) = forge.pulls(forge.full_name)
    assert pr["title"] == "todo: maintenance (second run)" and pr["draft"] and pr["reviewers"] == ["alice"]
    assert [name for name, _ in pr["labels"]] == ["maintenance"]
    assert changeset_marker(forge.full_name, HEAD) in pr["body"]
    store = ShardStore.open(str(tmp_path / "shards.db"))
    store.record_changeset(first.to_dict(), run_id="run-1")
    row = store.record_changeset(changed.to_dict(), run_id="run-2")
    assert (row["number"], row["publication"], row["last_action"], row["run_id"]) == (1, "draft", "updated", "run-2")
    assert len(store.changesets()) == 1, "one changeset per (forge, repository, head)"


def _publish_in_process(api_url: str, token: str, spec: dict, out) -> None:
    try:
        c = GitHubForge(Github(base_url=api_url, auth=Auth.Token(token), retry=None)).publish(ChangesetSpec(**spec))
        out.put(("ok", c.number, c.action))
    except ForgeError as exc:
        out.put(("error", str(exc), None))


def test_two_workers_publishing_at_once_open_one_pull_request(forge):
    spec = _spec(forge).__dict__ | {"labels": (), "reviewers": ()}
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=_publish_in_process, args=(forge.api_url, forge.token, spec, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert {r[1] for r in results} == {1} and len(forge.pulls(forge.full_name)) == 1
    assert sorted(r[2] for r in results) == ["created", "unchanged"], "the other found it (or got the 422)"


def test_a_changeset_whose_diff_disappeared_is_closed_with_a_comment(forge):
    gh = GitHubForge(_client(forge))
    gh.publish(_spec(forge))
    closed = gh.close(forge.full_name, HEAD, "The maintenance run found nothing left to change; closing.")
    assert closed.action == "closed"
    (pr,) = forge.pulls(forge.full_name)
    assert pr["state"] == "closed" and pr["comments"][0]["body"].startswith("The maintenance run found nothing")
    assert gh.close(forge.full_name, HEAD, "again") is None, "nothing open: nothing to close"


def test_sync_reads_review_and_merge_states(forge):
    gh = GitHubForge(_client(forge))
    c = gh.publish(_spec(forge, draft=False))
    forge.add_review(forge.full_name, c.number, "CHANGES_REQUESTED", "please rename", login="bob")
    assert gh.sync(forge.full_name, c.number, HEAD).review == "changes_requested"
    forge.add_review(forge.full_name, c.number, "APPROVED", login="bob")
    assert gh.sync(forge.full_name, c.number, HEAD).review == "approved", "the latest review of each reviewer"
    _client(forge).get_repo(forge.full_name).get_pull(c.number).merge(merge_method="squash")
    assert gh.sync(forge.full_name, c.number, HEAD).external_state == "merged"


@pytest.mark.parametrize(("status", "fix", "retryable"), [
    (401, "update the password of the GitHub connection", False),
    (502, "a GitHub server error: retry later", True),
])
def test_forge_failures_name_the_fix_and_lose_nothing(forge, status, fix, retryable):
    forge.fail_next("POST", r"/pulls$", status, "Bad credentials" if status == 401 else "Server Error")
    with pytest.raises(ForgeError, match=fix) as info:
        GitHubForge(_client(forge)).publish(_spec(forge))
    assert info.value.retryable is retryable and forge.pulls(forge.full_name) == []
    assert forge.token not in str(info.value)
    assert GitHubForge(_client(forge)).publish(_spec(forge)).action == "created", "the next run resumes"


def test_writes_are_paced_by_the_shared_limit_so_the_secondary_limit_is_never_hit(tmp_path, git_repo):
    """The double's secondary limit set to 3 writes a minute, the shared limiter configured alike: the fourth
    write is held back by the limiter (not sent), so GitHub never answers 403."""
    log = tmp_path / "forge.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log, content_per_minute=3) as srv:
        srv.full_name = srv.create_repo("demo", git_repo)
        _git(git_repo, "checkout", "-qb", HEAD)
        (git_repo / "README.md").write_text("# demo, maintained\n")
        _git(git_repo, "commit", "-qam", "docs")
        _git(git_repo, "push", "-q", srv.git_url(srv.full_name, with_token=True), HEAD)
        store = ShardStore.open(str(tmp_path / "shards.db"))
        limiter = SharedLimiter(store, f"github:{srv.host}", limits={"content_minute": (3, 60.0)}, max_wait_s=1.0)
        gh = GitHubForge(_client(srv), limiter=limiter)
        gh.publish(_spec(srv, reviewers=()))                         # create + labels: 2 writes
        gh.publish(_spec(srv, title="second", reviewers=()))         # edit: the 3rd
        with pytest.raises(ForgeError, match="not sent, GitHub's write limit is reached") as info:
            gh.publish(_spec(srv, title="third", reviewers=()))
        assert info.value.retryable
    statuses = [json.loads(x)["status"] for x in log.read_text().splitlines()]
    assert 403 not in statuses and statuses.count(201) == 1


def test_model_text_in_a_body_pings_no_one_and_hides_nothing():
    text = neutralise("Thanks @octocat and @org/team! <!-- hidden --> <details><summary>x</summary>y</details>")
    assert "@\u200doctocat" in text and "@\u200dorg/team" in text and "<" not in text and "&lt;!-- hidden" in text
    assert neutralise("mail me at a@b.com or `@ok`") == "mail me at a@b.com or `@ok`"
    body = render_body("{{ text }}", {"text": "x" * 100_000}, marker="<!-- m -->")
    assert len(body) < 65_536 and "characters cut" in body and body.rstrip().endswith("<!-- m -->")


def test_the_contract_check_fails_on_traffic_off_githubs_description(forge, tmp_path):
    """The check itself: a pull request the double really served passes; without its number, or with a draft
    flag that is no boolean, it fails; so do an undocumented status and a path GitHub does not have."""
    GitHubForge(_client(forge)).sync(forge.full_name, GitHubForge(_client(forge)).publish(_spec(forge)).number, HEAD)
    served = [json.loads(x) for x in (tmp_path / "forge-requests.jsonl").read_text().splitlines()]
    got = next(x for x in served if x["method"] == "GET" and x["path"].endswith("/pulls/1"))
    c = githubapi.contract()
    assert c.check(got) == []
    missing = {**got, "response": {k: v for k, v in got["response"].items() if k != "number"}}
    assert c.check(missing) == ["GET /repos/{owner}/{repo}/pulls/{pull_number} -> 200 response: $: 'number' is a "
                                "required property"]
    wrong = {**got, "response": {**got["response"], "draft": "yes"}}
    assert c.check(wrong) and "'yes' is not of type 'boolean'" in c.check(wrong)[0]
    assert c.check({**got, "status": 418})[0].endswith("is not one GitHub documents (200, 304, 404, 406, 500, 503)")
    assert "no such operation" in c.check({**got, "path": "/api/v3/nope/x"})[0]


def test_polling_an_unchanged_pull_request_is_a_free_304(forge, tmp_path):
    gh = GitHubForge(_client(forge))
    c = gh.publish(_spec(forge, reviewers=()))
    forge.add_check(forge.full_name, c.head_sha, "tests", conclusion="success")
    assert gh.sync(forge.full_name, c.number, HEAD).checks == "passing"
    used = forge._used
    assert gh.sync(forge.full_name, c.number, HEAD).action == "unchanged"
    assert forge._used == used, "the 304 cost no rate limit (and settled checks are not polled again)"
    forge.add_review(forge.full_name, c.number, "APPROVED", login="bob")
    again = gh.sync(forge.full_name, c.number, HEAD)
    assert again.action == "synced" and again.review == "approved", "a change is never hidden by a 304"
    statuses = [json.loads(x)["status"] for x in (tmp_path / "forge-requests.jsonl").read_text().splitlines()]
    assert 304 in statuses


def test_sync_reads_checks_and_keeps_the_failing_output(forge):
    gh = GitHubForge(_client(forge))
    c = gh.publish(_spec(forge, reviewers=()))
    assert gh.sync(forge.full_name, c.number, HEAD).checks == "unknown", "nothing reports on the head yet"
    forge.add_check(forge.full_name, c.head_sha, "tests", status="in_progress")
    forge.add_status(forge.full_name, c.head_sha, "ci/lint", "success")
    assert gh.sync(forge.full_name, c.number, HEAD).checks == "pending"
    forge.add_check(forge.full_name, c.head_sha, "tests", conclusion="failure", summary="2 failed",
                    text="FAILED tests/test_app.py::test_add - assert 3 == 4")
    red = gh.sync(forge.full_name, c.number, HEAD)
    assert red.checks == "failing" and red.extra["failing_checks"][0] == {
        "name": "tests", "summary": "2 failed", "text": "FAILED tests/test_app.py::test_add - assert 3 == 4"}


def test_assignees_are_added_once_and_never_removed(forge):
    gh = GitHubForge(_client(forge))
    gh.publish(_spec(forge, assignees=("alice", "bob")))
    gh.publish(_spec(forge, assignees=("bob",)))  # a re-run with fewer assignees removes none
    (pr,) = forge.pulls(forge.full_name)
    assert pr["assignees"] == ["alice", "bob"]
