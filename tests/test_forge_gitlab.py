"""Changesets on GitLab (issue 19): the real python-gitlab client against the offline GitLab (the merge-request
subset of the v4 API with git over smart HTTP), through this package's ``gitlab`` connection and the operator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("gitlab", reason="python-gitlab is not installed (pip install 'airflow-provider-worktree[gitlab]')")

from airflow_provider_worktree.version_compat import AirflowFailException  # noqa: E402

from airflow_provider_worktree.core.forge import ChangesetSpec, ForgeError, GitLabForge  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.hooks.gitlab import GitLabHook  # noqa: E402
from airflow_provider_worktree.operators.changesets import ChangesetPublishOperator  # noqa: E402
from airflow_provider_worktree.testing.forge import OfflineGitLab  # noqa: E402

HEAD = "maintenance/todo"
RUN_1, RUN_2 = "manual__2026-12-07T10:00:00+00:00", "manual__2026-12-08T10:00:00+00:00"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def forge(tmp_path, git_repo, monkeypatch):
    with OfflineGitLab(tmp_path / "gitlab", request_log=tmp_path / "gitlab.jsonl") as srv:
        srv.path = srv.create_project("demo", git_repo)
        monkeypatch.setenv("AIRFLOW_CONN_GITLAB_TEST", json.dumps(
            {"conn_type": "gitlab", "host": srv.url, "password": srv.token}))
        monkeypatch.setenv("AIRFLOW_CONN_SHARD_GL", json.dumps({"conn_type": "sqlite",
                                                               "host": str(tmp_path / "shard_status.db")}))
        yield srv


def _push_head(srv: OfflineGitLab, repo: Path, text: str) -> None:
    _git(repo, "checkout", "-q", "-B", HEAD, "main")
    (repo / "src" / "app.py").write_text(text)
    _git(repo, "commit", "-qam", "todo")
    _git(repo, "push", "-qf", srv.git_url(srv.path, with_token=True), HEAD)
    _git(repo, "checkout", "-q", "main")


def _spec(srv: OfflineGitLab, **kw) -> ChangesetSpec:
    return ChangesetSpec(**{"repository": srv.path, "head": HEAD, "base": "main", "title": "todo: maintenance",
                            "body": "the report", "labels": ("maintenance",), **kw})


def test_publish_is_idempotent_and_a_draft_is_a_draft_title(forge, git_repo):
    _push_head(forge, git_repo, "def add(a, b):\n    return a + b\n")
    gl = GitLabForge(GitLabHook(gitlab_conn_id="gitlab_test").get_conn())
    first = gl.publish(_spec(forge))
    assert (first.action, first.publication, first.number) == ("created", "draft", 1)
    assert first.url == f"{forge.url}/{forge.path}/-/merge_requests/1"
    assert gl.publish(_spec(forge)).action == "unchanged"
    assert gl.publish(_spec(forge, body="the report, second run")).action == "updated"
    (mr,) = forge.merge_requests(forge.path)
    assert mr["title"] == "Draft: todo: maintenance" and mr["description"] == "the report, second run"
    assert mr["labels"] == ["maintenance"]


def test_the_conflict_409_is_read_as_already_exists(forge, git_repo):
    """Another worker opened the merge request between the lookup and the create: GitLab's 409 is re-read."""
    _push_head(forge, git_repo, "x = 1\n")
    client = GitLabHook(gitlab_conn_id="gitlab_test").get_conn()
    client.projects.get(forge.path).mergerequests.create({"source_branch": HEAD, "target_branch": "main",
                                                          "title": "Draft: someone else's"})

    class LateLookup(GitLabForge):  # the other worker's create lands after this lookup
        first = True

        def find_open(self, project, head):
            if self.first:
                self.first = False
                return None
            return super().find_open(project, head)

    c = LateLookup(client).publish(_spec(forge))
    assert c.number == 1 and c.action == "updated" and len(forge.merge_requests(forge.path)) == 1


def test_sync_reads_approvals_pipeline_and_merge(forge, git_repo):
    _push_head(forge, git_repo, "y = 2\n")
    gl = GitLabForge(GitLabHook(gitlab_conn_id="gitlab_test").get_conn())
    c = gl.publish(_spec(forge, draft=False))
    assert (c.review, c.checks) == ("pending", "unknown")
    forge.set_pipeline(forge.path, c.number, "failed")
    forge.approve(forge.path, c.number, "alice")
    synced = gl.sync(forge.path, c.number, HEAD)
    assert (synced.review, synced.checks, synced.external_state) == ("approved", "failing", "open")
    GitLabHook(gitlab_conn_id="gitlab_test").get_conn().projects.get(forge.path).mergerequests.get(c.number).merge()
    assert gl.sync(forge.path, c.number, HEAD).external_state == "merged"


def test_a_bad_token_names_the_fix(forge, git_repo, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_TEST", json.dumps(
        {"conn_type": "gitlab", "host": forge.url, "password": "glpat-wrong"}))
    with pytest.raises(ForgeError, match="401 .*update the password of the GitLab connection") as info:
        GitLabForge(GitLabHook(gitlab_conn_id="gitlab_test").get_conn()).publish(_spec(forge))
    assert not info.value.retryable
    ok, message = GitLabHook(gitlab_conn_id="gitlab_test").test_connection()
    assert not ok and "401" in message


def test_the_operator_publishes_a_merge_request_and_closes_it_when_nothing_is_left(forge, git_repo, tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    store.register_shards(RUN_1, [{"shard_id": "todo-1", "files": ["src/app.py"], "task": "todo"}])
    lease = store.assign_shard(RUN_1, "w:1", "todo-1")
    _git(git_repo, "checkout", "-q", "-B", HEAD, "main")
    (git_repo / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n")
    _git(git_repo, "commit", "-qam", "todo")
    _git(git_repo, "checkout", "-q", "main")
    store.complete(lease, branch=HEAD, commit_sha=_git(git_repo, "rev-parse", HEAD), diffstat=" 1 file changed")
    op = dict(task_id="publish", forge="gitlab", repository=forge.path, head=HEAD, repo=str(git_repo),
              gitlab_conn_id="gitlab_test", shard_status_conn_id="shard_gl", task_name="todo")
    first = ChangesetPublishOperator(**op).execute({"run_id": RUN_1})
    assert (first["forge"], first["action"], first["number"]) == ("gitlab", "created", 1)
    bare = tmp_path / "gitlab" / forge.path.split("/")[0] / "demo.git"
    assert _git(bare, "rev-parse", HEAD) == _git(git_repo, "rev-parse", HEAD), "the head was pushed"
    assert forge.token not in (git_repo / ".git" / "config").read_text()
    store.register_shards(RUN_2, [{"shard_id": "todo-1", "files": ["src/app.py"], "task": "todo"}])
    store.fail(store.assign_shard(RUN_2, "w:1", "todo-1"), "verification failed")
    assert ChangesetPublishOperator(**op).execute({"run_id": RUN_2})["action"] == "closed"
    (mr,) = forge.merge_requests(forge.path)
    assert mr["state"] == "closed" and "found nothing left to change" in mr["notes"][0]["body"]
    assert [r["external_state"] for r in store.changesets()] == ["closed"]
    with pytest.raises(AirflowFailException, match="forge='bitbucket' is not one of"):
        ChangesetPublishOperator(**{**op, "forge": "bitbucket"}).execute({"run_id": RUN_1})


def test_reviewers_and_assignees_by_username_and_an_unknown_one_left_out(forge, git_repo, caplog):
    _push_head(forge, git_repo, "def add(a, b):\n    return a + b\n")
    alice, bob = forge.add_user("alice"), forge.add_user("bob")
    gl = GitLabForge(GitLabHook(gitlab_conn_id="gitlab_test").get_conn())
    gl.publish(_spec(forge, reviewers=("alice", "nobody"), assignees=("bob",)))
    gl.publish(_spec(forge, reviewers=("bob",), assignees=("bob",)))  # adds bob as reviewer, removes no one
    (mr,) = forge.merge_requests(forge.path)
    assert mr["reviewers"] == [alice, bob] and mr["assignees"] == [bob]
    assert "GitLab knows no user 'nobody'" in caplog.text
