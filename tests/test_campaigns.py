"""Campaigns (issue 20, first part): repository selection (a list; a GitHub search through PyGithub against the
offline GitHub, every exchange checked against GitHub's OpenAPI description), the campaign record in a real SQLite
shard database (schema version 7), the plan before any write, rollout pacing, ``retry-failed``, and the publish
operator recording each repository's outcome and holding back new pull requests beyond the pacing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_repo

from airflow_provider_worktree.core.campaigns import CampaignSpec, Pacing, plan_campaign, select_from_list
from airflow_provider_worktree.core.campaigns.pacing import may_open
from airflow_provider_worktree.core.campaigns.types import Selection, Skipped, Target
from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import ShardStore

HEAD = "campaign/typing"


def _cs(repository: str, state: str = "open", number: int | None = 1, checks: str = "unknown",
        created_at: str = "2026-12-07 10:00:00", head: str = HEAD) -> dict:
    return {"forge": "github", "repository": repository, "head": head, "number": number, "external_state": state,
            "checks": checks, "url": f"https://github.example/{repository}/pull/{number}", "created_at": created_at}


def test_a_list_selection_keeps_repositories_and_names_why_others_are_left_out(tmp_path):
    good = make_repo(tmp_path / "good")
    (tmp_path / "plain").mkdir()
    sel = select_from_list([str(good), str(tmp_path / "plain"), str(tmp_path / "missing"), str(good),
                            "https://github.com/octo-org/demo.git", "git@gitlab.com:group/sub/proj.git"])
    assert [(t.repository, t.location) for t in sel.targets] == [
        ("good", str(good.resolve())), ("octo-org/demo", "https://github.com/octo-org/demo.git"),
        ("group/sub/proj", "git@gitlab.com:group/sub/proj.git")]
    reasons = {s.repository: s.reason for s in sel.skipped}
    assert "not a git repository" in reasons[str(tmp_path / "plain")]
    assert "no such directory" in reasons[str(tmp_path / "missing")]
    assert reasons["good"] == "listed twice: kept once"


def test_a_spec_refuses_bad_input_naming_the_fix():
    with pytest.raises(ConfigurationError, match="lowercase letters"):
        CampaignSpec(name="Bad Name", task="todo", repositories=("/r",))
    with pytest.raises(ConfigurationError, match="either repositories"):
        CampaignSpec(name="x", task="todo")
    with pytest.raises(ConfigurationError, match="whole number"):
        Pacing(max_new_prs=-1)
    spec = CampaignSpec(name="typing", task="todo", query={"org": "octo-org"}, pacing=Pacing(max_new_prs=3))
    assert CampaignSpec.from_dict(spec.to_dict()) == spec and spec.head == HEAD


def test_the_plan_says_per_repository_what_a_run_would_do():
    spec = CampaignSpec(name="typing", task="todo", repositories=("a", "b", "c", "d"))
    sel = Selection(targets=[Target("o/a", "a"), Target("o/b", "b"), Target("o/c", "c"), Target("o/d", "d")],
                    skipped=[Skipped("o/e", "archived (read-only on GitHub)"), Skipped("o/f", "a fork")])
    changesets = [_cs("o/b"), _cs("o/c", "merged"), _cs("o/d", "closed"), _cs("o/f"), _cs("o/gone"),
                  _cs("o/a", head="worktree/todo")]  # another head does not count
    plan = {e.repository: e for e in plan_campaign(spec, sel, changesets, {"o/old": {"outcome": "no-diff"}})}
    assert {r: e.action for r, e in plan.items()} == {
        "o/a": "create", "o/b": "update", "o/c": "keep", "o/d": "create", "o/e": "skip", "o/f": "close",
        "o/gone": "close", "o/old": "keep"}
    assert "archived" in plan["o/e"].reason and "now skipped (a fork)" in plan["o/f"].reason
    assert plan["o/b"].url.endswith("/o/b/pull/1")
    only = {e.repository: e.action for e in plan_campaign(spec, sel, changesets, only=["o/a"])}
    assert only["o/a"] == "create" and only["o/b"] == "keep"


def test_pacing_holds_new_pull_requests_beyond_the_window_and_while_ci_is_busy():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc).timestamp()
    rows = [_cs("o/a", created_at="2026-12-07 11:30:00"), _cs("o/b", created_at="2026-12-07 11:50:00"),
            _cs("o/c", created_at="2026-12-07 09:00:00")]
    allowed, reason, wait = may_open(Pacing(max_new_prs=2, window_s=3600, max_pending_checks=None), rows, HEAD, now)
    assert not allowed and "2 new pull requests in the last 3600s" in reason and wait == pytest.approx(1800)
    assert may_open(Pacing(max_new_prs=3, window_s=3600, max_pending_checks=None), rows, HEAD, now)[0]
    busy = [_cs(f"o/{i}", checks="pending", created_at="2026-12-01 00:00:00") for i in range(3)]
    allowed, reason, _ = may_open(Pacing(max_new_prs=None, max_pending_checks=2), busy, HEAD, now)
    assert not allowed and "3 of the campaign's pull requests have checks pending" in reason
    assert may_open(Pacing(max_new_prs=None, max_pending_checks=3), busy, HEAD, now)[0]


def test_the_store_keeps_campaigns_and_each_repositorys_last_outcome(tmp_path):
    store = ShardStore.open(str(tmp_path / "s.db"))
    spec = CampaignSpec(name="typing", task="todo", repositories=("/r/a", "/r/b"))
    store.save_campaign(spec.name, spec.to_dict())
    store.record_campaign_outcome("typing", "a", "failed", reason="verify failed: 1 test", run_id="r1")
    store.record_campaign_outcome("typing", "b", "pr-opened", run_id="r1", url="https://x/b/pull/1")
    store.record_campaign_outcome("typing", "a", "pr-opened", run_id="r2", url="https://x/a/pull/2")
    assert CampaignSpec.from_dict(store.campaign("typing")["spec"]) == spec
    rows = {r["repository"]: r for r in store.campaign_repositories("typing")}
    assert rows["a"]["outcome"] == "pr-opened" and rows["a"]["run_id"] == "r2" and rows["a"]["reason"] is None
    assert store.campaigns()[0]["outcomes"] == {"pr-opened": 2}
    assert store.campaign("other") is None and store.campaign_repositories("typing", outcomes=("failed",)) == []


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", "campaign", *args],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "250", **env})


def test_cli_creates_plans_shows_and_retries_only_the_failed(tmp_path):
    db = str(tmp_path / "s.db")
    ShardStore.open(db)
    repos = [make_repo(tmp_path / n) for n in ("alpha", "beta", "gamma")]
    made = _cli("create", "typing", "--db", db, "--task", "todo", *[x for r in repos for x in ("--repository", str(r))],
                "--repository", str(tmp_path / "nope"), "--max-new-prs", "2")
    assert made.returncode == 0, made.stderr
    plan = _cli("plan", "typing", "--db", db, "-o", "json")
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert data["summary"]["create"] == 3 and data["summary"]["skip"] == 1 and data["head"] == HEAD
    store = ShardStore.open(db)
    store.record_campaign_outcome("typing", "alpha", "pr-opened", run_id="r1")
    store.record_campaign_outcome("typing", "beta", "failed", reason="verify failed: No module named 'x'", run_id="r1")
    store.record_campaign_outcome("typing", "gamma", "rate-limited", reason="GitHub's rate limit", run_id="r1")
    shown = _cli("show", "typing", "--db", db)
    assert shown.returncode == 0 and "No module named 'x'" in shown.stdout, shown.stdout + shown.stderr
    retry = json.loads(_cli("retry-failed", "typing", "--db", db, "-o", "json").stdout)
    assert sorted(retry["retry"]) == ["beta", "gamma"]
    actions = {e["repository"]: e["action"] for e in retry["plan"]}
    assert actions["alpha"] == "keep" and actions["beta"] == actions["gamma"] == "create"
    missing = _cli("plan", "nosuch", "--db", db)
    assert missing.returncode == 3 and "campaign list" in missing.stderr
    bad = _cli("create", "Bad Name", "--db", db, "--task", "todo", "--repository", str(repos[0]))
    assert bad.returncode == 3 and "lowercase letters" in bad.stderr


@pytest.fixture
def github(tmp_path, git_repo):
    pytest.importorskip("github", reason="PyGithub is not installed (pip install 'airflow-provider-worktree[github]')")
    import githubapi

    from airflow_provider_worktree.testing.forge import OfflineGitHub

    log = tmp_path / "github.jsonl"
    with OfflineGitHub(tmp_path / "gh", request_log=log) as srv:
        yield srv
    checked, problems = githubapi.check_log(log)
    assert checked > 0 and not problems, "\n".join(problems[:20])


def test_a_github_search_selects_by_owner_topic_and_language_and_lists_what_it_skips(github, git_repo):
    from github import Auth, Github

    from airflow_provider_worktree.core.campaigns import select_from_github

    for name in ("api", "web", "old", "copy", "blank", "docs"):
        github.create_repo(name, git_repo)
    elsewhere = github.create_repo("elsewhere", git_repo, owner="someone-else")
    github.set_repo(elsewhere, topics=["python", "service"])  # another owner: not selected
    for name in ("api", "web", "old", "copy", "blank"):
        github.set_repo(f"{github.owner}/{name}", topics=["python", "service"])
    github.set_repo(f"{github.owner}/old", archived=True)
    github.set_repo(f"{github.owner}/copy", fork=True)
    github.set_repo(f"{github.owner}/blank", empty=True)
    github.set_repo(f"{github.owner}/web", language="TypeScript")
    client = Github(base_url=github.api_url, auth=Auth.Token(github.token), retry=None)
    sel = select_from_github(client, org=github.owner, topics=["python"])
    assert [t.repository for t in sel.targets] == [f"{github.owner}/api", f"{github.owner}/web"]
    assert all(t.location.endswith(".git") and t.forge == "github" and t.default_branch == "main"
               for t in sel.targets)
    assert {s.repository.split("/")[1]: s.reason.split(" ")[0] for s in sel.skipped} == {
        "old": "archived", "copy": "a", "blank": "empty"}
    python_only = select_from_github(client, org=github.owner, topics=["python"], language="python",
                                     include_forks=True)
    assert [t.repository.split("/")[1] for t in python_only.targets] == ["api", "copy"]
    with pytest.raises(ConfigurationError, match="exactly one of org or user"):
        select_from_github(client, topics=["python"])


def test_the_publish_operator_records_outcomes_and_paces_new_pull_requests(github, tmp_path, monkeypatch):
    pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed")
    from airflow_provider_worktree.operators.changesets import ChangesetPublishOperator
    from airflow_provider_worktree.version_compat import AirflowSkipException

    db = tmp_path / "shard_status.db"
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_CAMP", json.dumps({"conn_type": "github", "host": github.api_url,
                                                              "password": github.token}))
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_CAMP", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    store = ShardStore.open(str(db))
    spec = CampaignSpec(name="typing", task="todo", repositories=("a", "b"),
                        pacing=Pacing(max_new_prs=1, window_s=3600, max_pending_checks=None))
    store.save_campaign(spec.name, spec.to_dict())
    results = {}
    for name in ("a", "b"):
        repo = make_repo(tmp_path / name, {"src/app.py": "def f():\n    return 1\n"})
        full = github.create_repo(name, repo)
        run_id = f"run-{name}"
        store.register_shards(run_id, [{"shard_id": "todo-1", "files": ["src/app.py"], "task": "todo"}])
        lease = store.assign_shard(run_id, "w:1", "todo-1")
        subprocess.run(["git", "checkout", "-qb", spec.head], cwd=repo, check=True)
        (repo / "src" / "app.py").write_text("def f() -> int:\n    return 1\n")
        subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "typing"],
                       cwd=repo, check=True)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                             text=True).stdout.strip()
        store.complete(lease, branch=spec.head, commit_sha=sha, files_changed=["src/app.py"], input_tokens=1,
                       output_tokens=1, cost_usd=0.001, summary={"offline": True})
        op = ChangesetPublishOperator(task_id="publish", repository=full, head=spec.head, repo=str(repo),
                                      github_conn_id="github_camp", shard_status_conn_id="shard_camp",
                                      task_name="todo", campaign="typing")
        try:
            results[name] = op.execute({"run_id": run_id})
        except AirflowSkipException as exc:
            results[name] = str(exc)
    assert results["a"]["action"] == "created"
    assert "not opened now" in results["b"] and "1 new pull requests in the last 3600s" in results["b"]
    assert len(github.pulls(f"{github.owner}/a")) == 1 and github.pulls(f"{github.owner}/b") == []
    rows = {r["repository"]: r for r in store.campaign_repositories("typing")}
    assert rows[f"{github.owner}/a"]["outcome"] == "pr-opened" and rows[f"{github.owner}/a"]["url"]
    assert rows[f"{github.owner}/b"]["outcome"] == "paced" and "a place frees up in" in rows[f"{github.owner}/b"]["reason"]


def test_a_gitlab_group_selects_its_projects_and_subgroups_and_lists_what_it_skips(tmp_path, git_repo):
    pytest.importorskip("gitlab", reason="python-gitlab is not installed (pip install 'airflow-provider-worktree[gitlab]')")
    import gitlab

    from airflow_provider_worktree.core.campaigns.select import select_from_gitlab
    from airflow_provider_worktree.testing.forge import OfflineGitLab

    with OfflineGitLab(tmp_path / "gl", request_log=tmp_path / "gitlab.jsonl") as srv:
        for name, group in (("api", "acme"), ("worker", "acme/backend"), ("old", "acme"), ("copy", "acme"),
                            ("blank", "acme"), ("other", "elsewhere")):
            srv.create_project(name, git_repo, group=group)
        for path in ("acme/api", "acme/backend/worker", "acme/old", "acme/copy", "acme/blank"):
            srv.set_project(path, topics=["python"])
        srv.set_project("acme/old", archived=True)
        srv.set_project("acme/copy", forked=True)
        srv.set_project("acme/blank", empty=True)
        client = gitlab.Gitlab(srv.url, private_token=srv.token)
        sel = select_from_gitlab(client, group="acme", topics=["python"])
        assert [t.repository for t in sel.targets] == ["acme/api", "acme/backend/worker"]
        assert all(t.forge == "gitlab" and t.location.endswith(".git") for t in sel.targets)
        assert {s.repository: s.reason.split(" ")[0] for s in sel.skipped} == {
            "acme/old": "archived", "acme/copy": "a", "acme/blank": "empty"}
        with pytest.raises(gitlab.exceptions.GitlabGetError):
            select_from_gitlab(client, group="nosuch")
    with pytest.raises(ConfigurationError, match="forge='gitlab'"):
        CampaignSpec(name="x", task="todo", query={"group": "acme"})
