"""ChangesetPublishOperator (issue 19): the official GitHub provider's GithubHook and PyGithub against the offline
GitHub, the head pushed with real git as a compare-and-swap, the changeset recorded in a real SQLite shard
database; every exchange checked against GitHub's OpenAPI description."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed "
                                                        "(pip install 'airflow-provider-worktree[github]')")

from airflow_provider_worktree.version_compat import AirflowFailException, AirflowSkipException  # noqa: E402

import githubapi  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.operators.changesets import ChangesetPublishOperator  # noqa: E402
from airflow_provider_worktree.testing.forge import OfflineGitHub  # noqa: E402

HEAD = "maintenance/todo"
RUN_1, RUN_2 = "manual__2026-12-07T10:00:00+00:00", "manual__2026-12-08T10:00:00+00:00"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def forge(tmp_path, git_repo, monkeypatch):
    log = tmp_path / "forge-requests.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log) as srv:
        srv.full_name = srv.create_repo("demo", git_repo)
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", json.dumps(
            {"conn_type": "github", "host": srv.api_url, "password": srv.token}))
        monkeypatch.setenv("AIRFLOW_CONN_SHARD_CS", json.dumps({"conn_type": "sqlite",
                                                               "host": str(tmp_path / "shard_status.db")}))
        yield srv
    if log.exists():  # a test refused before any request leaves no log
        checked, problems = githubapi.check_log(log)
        assert checked > 0 and not problems, "\n".join(problems[:20])


def _run(store: ShardStore, run_id: str, git_repo: Path, text: str, *, accepted: bool = True) -> None:
    """A run whose one shard was committed (``accepted``) or failed, and the integration branch at its result."""
    store.register_shards(run_id, [{"shard_id": "todo-1", "files": ["src/app.py"], "task": "todo"}])
    lease = store.assign_shard(run_id, "w:1", "todo-1")
    if not accepted:
        store.fail(lease, "verification failed: 1 marker left")
        return
    _git(git_repo, "checkout", "-q", "-B", HEAD, "main")
    (git_repo / "src" / "app.py").write_text(text)
    _git(git_repo, "commit", "-qam", f"todo: {text[:20]}")
    sha = _git(git_repo, "rev-parse", "HEAD")
    _git(git_repo, "checkout", "-q", "main")
    store.complete(lease, branch=HEAD, commit_sha=sha, diffstat=" 1 file changed, 1 insertion(+)",
                   files_changed=["src/app.py"], input_tokens=10, output_tokens=5, cost_usd=0.01,
                   summary={"offline": True})


def _operator(git_repo: Path, **kw) -> ChangesetPublishOperator:
    return ChangesetPublishOperator(**{"task_id": "publish", "repository": "octo-org/demo", "head": HEAD,
                                       "repo": str(git_repo), "github_conn_id": "github_test",
                                       "shard_status_conn_id": "shard_cs", "task_name": "todo",
                                       "labels": ["maintenance"], **kw})


def test_publish_then_rerun_updates_the_same_pull_request(forge, git_repo, tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    _run(store, RUN_1, git_repo, "def add(a, b):\n    return a + b\n")
    first = _operator(git_repo).execute({"run_id": RUN_1})
    assert first["action"] == "created" and first["publication"] == "draft" and first["number"] == 1
    _run(store, RUN_2, git_repo, "def add(a: int, b: int) -> int:\n    return a + b\n")
    second = _operator(git_repo).execute({"run_id": RUN_2})
    assert second["number"] == 1 and second["action"] == "updated", "the same pull request, updated in place"
    (pr,) = forge.pulls(forge.full_name)
    assert RUN_2 in pr["body"] and "offline test double, not billed" in pr["body"]
    bare = tmp_path / "forge" / "octo-org" / "demo.git"
    assert _git(bare, "rev-parse", HEAD) == _git(git_repo, "rev-parse", HEAD), "the head was pushed"
    (row,) = store.changesets()
    assert (row["number"], row["run_id"], row["last_action"]) == (1, RUN_2, "updated")
    for where in (pr["body"], (git_repo / ".git" / "config").read_text(), json.dumps(store.changesets())):
        assert forge.token not in where, "the token never leaves the worker's environment"


def test_a_run_that_accepted_nothing_closes_the_open_pull_request(forge, git_repo, tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    _run(store, RUN_1, git_repo, "def add(a, b):\n    return a + b\n")
    _operator(git_repo).execute({"run_id": RUN_1})
    _run(store, RUN_2, git_repo, "", accepted=False)
    closed = _operator(git_repo).execute({"run_id": RUN_2})
    assert closed["action"] == "closed"
    (pr,) = forge.pulls(forge.full_name)
    assert pr["state"] == "closed" and "found nothing left to change" in pr["comments"][0]["body"]
    with pytest.raises(AirflowSkipException, match="nothing to publish"):
        _operator(git_repo).execute({"run_id": RUN_2})


def test_bad_settings_and_a_bad_token_fail_clearly(forge, git_repo, tmp_path, monkeypatch):
    with pytest.raises(AirflowFailException, match="publish='sometimes' is not one of"):
        _operator(git_repo, publish="sometimes").execute({"run_id": RUN_1})
    with pytest.raises(AirflowFailException, match="give the repository as owner/name"):
        _operator(git_repo, repository="demo").execute({"run_id": RUN_1})
    with pytest.raises(AirflowSkipException):
        _operator(git_repo, publish="none").execute({"run_id": RUN_1})
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    _run(store, RUN_1, git_repo, "def add(a, b):\n    return a + b\n")
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", json.dumps(
        {"conn_type": "github", "host": forge.api_url, "password": "ghp_wrong"}))
    with pytest.raises(AirflowFailException, match="401 Bad credentials: the token is invalid or expired"):
        _operator(git_repo).execute({"run_id": RUN_1})
    assert forge.pulls(forge.full_name) == []


def test_the_sensor_defers_and_its_trigger_waits_until_merged(forge, git_repo, tmp_path):
    """The sensor defers (no worker slot); the trigger, run as the triggerer runs it, syncs the pull request from
    GitHub until it is merged, recording each state in the shard database."""
    import asyncio

    from airflow_provider_worktree.version_compat import TaskDeferred

    from airflow_provider_worktree.sensors.changesets import ChangesetSensor
    from airflow_provider_worktree.triggers.changesets import ChangesetTrigger

    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    _run(store, RUN_1, git_repo, "def add(a, b):\n    return a + b\n")
    number = _operator(git_repo, publish="ready").execute({"run_id": RUN_1})["number"]
    sensor = ChangesetSensor(task_id="wait", condition="merged", github_conn_id="github_test",
                             shard_status_conn_id="shard_cs", poll_interval=0.2, timeout=60)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({"run_id": RUN_1})
    trigger = info.value.trigger
    assert isinstance(trigger, ChangesetTrigger) and trigger.changesets == [
        {"forge": "github", "repository": forge.full_name, "number": number, "head": HEAD}]
    path, kwargs = trigger.serialize()
    assert "ghp_" not in json.dumps(kwargs), "no token travels in the trigger's kwargs"
    rebuilt = ChangesetTrigger(**kwargs)

    async def first_event():
        async def merge_soon():
            await asyncio.sleep(0.6)
            forge.add_review(forge.full_name, number, "APPROVED", login="bob")
            from github import Auth, Github
            gh = Github(base_url=forge.api_url, auth=Auth.Token(forge.token), retry=None)
            await asyncio.to_thread(lambda: gh.get_repo(forge.full_name).get_pull(number).merge(merge_method="squash"))
        merging = asyncio.create_task(merge_soon())
        event = await asyncio.wait_for(rebuilt.run().__anext__(), timeout=30)
        await merging
        return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == "success" and event.payload["changesets"][0]["external_state"] == "merged"
    (row,) = store.changesets()
    assert (row["external_state"], row["review"], row["last_action"]) == ("merged", "approved", "synced")
    assert sensor.execute_complete({}, event.payload)[0]["number"] == number


def test_the_cli_lists_and_syncs_changesets(forge, git_repo, tmp_path, monkeypatch):
    import sys

    db = str(tmp_path / "shard_status.db")
    store = ShardStore.open(db)
    _run(store, RUN_1, git_repo, "def add(a, b):\n    return a + b\n")
    number = _operator(git_repo).execute({"run_id": RUN_1})["number"]
    forge.add_review(forge.full_name, number, "CHANGES_REQUESTED", login="bob")

    def cli(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", *args], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})

    listed = cli("changesets", "--db", db, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["changesets"]
    assert (row["url"], row["external_state"], row["review"]) == (
        f"{forge.web_url}/{forge.full_name}/pull/{number}", "open", "pending")
    synced = cli("changesets", "sync", "--db", db, "--github-conn-id", "github_test")
    assert synced.returncode == 0, synced.stderr
    assert "changes_requested" in synced.stdout and f"{forge.web_url}/{forge.full_name}/pull/{number}" in synced.stdout
    assert cli("changesets", "--db", db, "--review", "approved").stdout.startswith("No changeset")
    assert ShardStore.open(db).changesets()[0]["review"] == "changes_requested"


def test_granularity_shard_opens_one_pull_request_per_accepted_shard_and_closes_a_vanished_one(forge, git_repo,
                                                                                               tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))

    def run(run_id: str, shards: dict[str, str]) -> list[dict]:
        """Each shard committed on its own branch from main, as the maintain tasks do."""
        store.register_shards(run_id, [{"shard_id": s, "files": ["src/app.py"], "task": "todo"} for s in shards])
        for shard_id, text in shards.items():
            lease = store.assign_shard(run_id, "w:1", shard_id)
            _git(git_repo, "checkout", "-q", "-B", f"worktree/{run_id}/{shard_id}", "main")
            (git_repo / "src" / "app.py").write_text(text)
            _git(git_repo, "commit", "-qam", f"todo: {shard_id}")
            sha = _git(git_repo, "rev-parse", "HEAD")
            store.complete(lease, branch=f"worktree/{run_id}/{shard_id}", commit_sha=sha, files_changed=["src/app.py"],
                           input_tokens=1, output_tokens=1, cost_usd=0.01, summary={"offline": True})
        _git(git_repo, "checkout", "-q", "main")
        return _operator(git_repo, granularity="shard").execute({"run_id": run_id})

    first = run("run-1", {"todo-aaaa": "def add(a, b):\n    return a + b\n", "todo-bbbb": "def sub(a, b):\n    pass\n"})
    assert sorted(c["head"] for c in first) == [f"{HEAD}--todo-aaaa", f"{HEAD}--todo-bbbb"]
    pulls = {p["head"]: p for p in forge.pulls(forge.full_name)}
    assert "todo-aaaa" in pulls[f"{HEAD}--todo-aaaa"]["body"] and "todo-bbbb" not in pulls[f"{HEAD}--todo-aaaa"]["body"]
    second = run("run-2", {"todo-aaaa": "def add(a: int, b: int) -> int:\n    return a + b\n"})
    by = {c["head"]: c for c in second}
    assert by[f"{HEAD}--todo-aaaa"]["number"] == pulls[f"{HEAD}--todo-aaaa"]["number"], "updated in place"
    assert by[f"{HEAD}--todo-bbbb"]["external_state"] == "closed", "its shard's diff disappeared: closed"
    assert len(forge.pulls(forge.full_name)) == 2
    with pytest.raises(AirflowFailException, match="granularity='file'"):
        _operator(git_repo, granularity="file").execute({"run_id": "run-2"})
