"""The campaign DAG (issue 20): one ``airflow dags test`` run over three repositories on the offline GitHub (cloned
over git's smart HTTP into the worker's cache), every repository's shards mapped in the one run, one draft pull
request each through the GitHub provider and PyGithub; a second run opens no new pull request; a repository that
cannot be cloned fails only itself, the run names it, and ``retry_failed`` runs only it. Every exchange is checked
against GitHub's OpenAPI description."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed "
                                                        "(pip install 'airflow-provider-worktree[github]')")

import githubapi  # noqa: E402
from conftest import airflow_home_env, make_repo  # noqa: E402

from airflow_provider_worktree.core.campaigns.run import repo_prefix  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.testing import OfflineMessagesServer  # noqa: E402
from airflow_provider_worktree.testing.forge import OfflineGitHub  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "campaign_maintenance"
pytestmark = pytest.mark.integration


def _dags_test(env: dict, conf: dict) -> str:
    proc = subprocess.run([str(BIN / "airflow"), "dags", "test", DAG_ID, "-c", json.dumps(conf)], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    return proc.stdout + proc.stderr


def _run_state(out: str) -> str:
    (line,) = [x for x in out.splitlines() if "DagRun Finished:" in x] or [""]
    return line.split(" state=", 1)[-1].split(",", 1)[0] if line else "not finished"


@pytest.mark.timeout(1500)
def test_one_run_over_three_repositories_opens_one_pull_request_each_and_a_rerun_opens_none(tmp_path):
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(ROOT / "airflow_provider_worktree" / "example_dags" / f"{DAG_ID}.py", home / "dags")
    log = tmp_path / "forge-requests.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log) as gh, OfflineMessagesServer() as srv:
        urls = {}
        for name in ("billing", "payments", "search"):
            full = gh.create_repo(name, make_repo(tmp_path / name, n_files=2))
            urls[full] = gh.git_url(full)  # a clone URL without the token: cloned anonymously like a public repo
        env = airflow_home_env(
            home, AIRFLOW_CONN_ANTHROPIC_DEFAULT=json.dumps({"conn_type": "anthropic", "host": srv.base_url,
                                                             "password": "sk-ant-dummy"}),
            AIRFLOW_CONN_GITHUB_DEFAULT=json.dumps({"conn_type": "github", "host": gh.api_url, "password": gh.token}))
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        missing = f"{gh.web_url}/octo-org/gone.git"
        conf = {"campaign": "todo-sweep", "task": "todo", "repositories": [*urls.values(), missing]}

        out = _dags_test(env, conf)
        assert _run_state(out) == "failed", out[-5000:]  # one repository could not be cloned: the run says so
        assert "1 of 4 repositories failed: octo-org/gone: not planned" in out, out[-5000:]
        store = ShardStore.open(str(home / "shard_status.db"))
        outcomes = {r["repository"]: r["outcome"] for r in store.campaign_repositories("todo-sweep")}
        assert outcomes == {**{full: "pr-opened" for full in urls}, "octo-org/gone": "failed"}, outcomes
        for full in urls:
            (pr,) = gh.pulls(full)
            assert pr["head"] == "campaign/todo-sweep" and pr["draft"] and pr["base"] == "main"
            others = [repo_prefix(o) for o in urls if o != full]
            assert repo_prefix(full) in pr["body"] and not any(o in pr["body"] for o in others), pr["body"]
        first_heads = {full: gh.pulls(full)[0] for full in urls}
        # each repository's pull request reports its own shards only
        ids = [s["shard_id"] for s in store.list_shards()]
        assert len(ids) == len(set(ids)) >= 3 and all("--" in i for i in ids)

        retry = _dags_test(env, {**conf, "retry_failed": True})  # only the failed one runs again
        assert "retry_failed: 1 of 4 repositories" in retry, retry[-4000:]
        again = _dags_test(env, {"campaign": "todo-sweep", "repositories": list(urls.values())})
        states = {r["repository"]: r["outcome"] for r in store.campaign_repositories("todo-sweep")}
        assert all(states[full] == "pr-updated" for full in urls), (states, again[-4000:])
        assert [len(gh.pulls(full)) for full in urls] == [1, 1, 1], "a re-run opened a second pull request"
        summaries = sorted((home / "reports").glob("campaign-todo-sweep-*.md"))
        assert summaries and "cost per merged change: none merged yet" in summaries[-1].read_text()
        heads = {full: gh.pulls(full)[0]["head_sha"] for full in urls}
        assert heads == {full: pr["head_sha"] for full, pr in first_heads.items()}, \
            "a re-run with the same content pushed a new head (CI would run again for nothing)"

        # auto_merge: green checks and an approving review on two of them; publish=ready marks the drafts ready
        green = list(urls)[:2]
        for full in green:
            (pr,) = gh.pulls(full)
            gh.add_check(full, pr["head_sha"], "ci", conclusion="success")
            gh.add_review(full, pr["number"], "APPROVED", login="lead")
        out = _dags_test(env, {"campaign": "todo-sweep", "publish": "ready", "auto_merge": True})
        states = {r["repository"]: r for r in store.campaign_repositories("todo-sweep")}
        for full in urls:
            (pr,) = gh.pulls(full)
            if full in green:
                assert states[full]["outcome"] == "merged" and pr["merged_at"], (states[full], out[-4000:])
            else:  # checks unknown and no review: waits
                assert states[full]["outcome"] == "pr-updated" and not pr["merged_at"] and not pr["draft"]
        latest = sorted((home / "reports").glob("campaign-todo-sweep-*.md"))[-1].read_text()
        assert "merged: 2" in latest and "cost per merged change: $" in latest, latest
    checked, problems = githubapi.check_log(log)
    assert checked > 0 and not problems, "\n".join(problems[:20])
    created = [json.loads(x) for x in log.read_text().splitlines()
               if '"POST"' in x and '"status": 201' in x and x.count("/pulls") and '"/api/v3/repos/' in x]
    assert len([c for c in created if c["path"].endswith("/pulls")]) == 3


@pytest.mark.timeout(900)
def test_a_red_pull_request_gets_fix_rounds_for_its_checks_and_its_review(tmp_path):
    """fix_red: a lint check fails on the campaign's pull request; the round gives its output to the model (the
    offline server's request log shows it), runs the lint task (real ruff) on the files the pull request changed,
    pushes the verified fix onto the pull request's head, comments, and records the round. Then a review comment
    gets round 2 and a reply in its thread; an answered comment starts no round."""
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(ROOT / "airflow_provider_worktree" / "example_dags" / f"{DAG_ID}.py", home / "dags")
    model_log, log = tmp_path / "model-requests.jsonl", tmp_path / "forge-requests.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log) as gh, OfflineMessagesServer(request_log=model_log) as srv:
        source = make_repo(tmp_path / "svc", {"pkg/__init__.py": "",
                                              "pkg/core.py": "import os\n\n\ndef total(xs):\n"
                                                             "    # TODO: handle an empty list\n    return sum(xs)\n"})
        full = gh.create_repo("svc", source)
        env = airflow_home_env(
            home, AIRFLOW_CONN_ANTHROPIC_DEFAULT=json.dumps({"conn_type": "anthropic", "host": srv.base_url,
                                                             "password": "sk-ant-dummy"}),
            AIRFLOW_CONN_GITHUB_DEFAULT=json.dumps({"conn_type": "github", "host": gh.api_url, "password": gh.token}))
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # ruff, the lint task's linter, from this environment
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        conf = {"campaign": "sweep", "task": "todo", "repositories": [gh.git_url(full)]}
        out = _dags_test(env, conf)
        assert _run_state(out) == "success", out[-5000:]
        (pr,) = gh.pulls(full)
        first = pr["head_sha"]
        finding = "pkg/core.py:1:8: F401 [*] `os` imported but unused"
        gh.add_check(full, first, "lint", conclusion="failure", summary="ruff: 1 error", text=finding)

        out = _dags_test(env, {**conf, "fix_red": True, "fix_task": "lint", "lint_command": "ruff check"})
        assert _run_state(out) == "success", out[-6000:]
        (pr,) = gh.pulls(full)
        assert pr["head_sha"] != first and pr["number"] == 1, "the fix was not pushed onto the pull request"
        store = ShardStore.open(str(home / "shard_status.db"))
        (rnd,) = store.rounds(head="campaign/sweep")
        assert (rnd["round_no"], rnd["kind"], rnd["outcome"], rnd["commit_sha"]) == (1, "checks", "pushed", pr["head_sha"])
        assert rnd["cause"] == "checks failing: lint" and rnd["cost_usd"] > 0
        (comment,) = pr["comments"]
        assert comment["body"].startswith("**Fix round 1** (checks failing: lint): pushed") and finding not in comment["body"]
        fixed = subprocess.run(["git", "show", f"{pr['head_sha']}:pkg/core.py"], cwd=tmp_path / "forge" / "octo-org" /
                               "svc.git", capture_output=True, text=True, check=True).stdout
        assert "import os" not in fixed and "def total" in fixed
        prompts = model_log.read_text()
        assert "F401" in prompts and "Fix round 1" in prompts, "the failing check's output never reached the model"

        # a review requests changes on a line: round 2 gives the comment (with its file and line) to the model and
        # answers it in its thread
        cid = gh.add_review_comment(full, 1, "pkg/core.py", 3, "Please document what total() returns.", login="lead")
        fix_docs = {**conf, "fix_red": True, "fix_task": "docstrings"}
        out = _dags_test(env, fix_docs)
        assert _run_state(out) == "success", out[-6000:]
        (pr2,) = gh.pulls(full)
        assert pr2["head_sha"] != pr["head_sha"], "the review round was not pushed"
        rounds = store.rounds(head="campaign/sweep")
        assert [(r["round_no"], r["kind"], r["outcome"]) for r in rounds] == [(1, "checks", "pushed"),
                                                                              (2, "review", "pushed")]
        assert rounds[1]["cause"] == "review: 1 comment(s)"
        replies = [c for c in pr2["review_comments"] if c.get("in_reply_to_id") == cid]
        assert len(replies) == 1 and replies[0]["body"].startswith("Fix round 2: pushed; changed `pkg/core.py`")
        assert "pkg/core.py:3 (lead): Please document what total() returns." in model_log.read_text()

        # the comment is answered and the new head has no failing check: another fix_red run does nothing
        out = _dags_test(env, fix_docs)
        assert _run_state(out) == "success", out[-4000:]
        assert len(store.rounds(head="campaign/sweep")) == 2 and gh.pulls(full)[0]["head_sha"] == pr2["head_sha"]
    checked, problems = githubapi.check_log(log)
    assert checked > 0 and not problems, "\n".join(problems[:20])
