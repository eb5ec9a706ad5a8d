"""ClaudeMaintenanceOperator end to end: real git repositories, a real SQLite shard database, the real
``anthropic`` SDK through the official provider's AnthropicHook over HTTP to the offline server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_provider_worktree.version_compat import AirflowFailException

from airflow_provider_worktree.core.lifecycle import ShardFailed
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.testing import ScriptedModel, text_reply, tool_use_reply
from airflow_provider_worktree.testing.faults import bad_request, rate_limit

API_KEY = "sk-ant-test-SECRET-0123456789"
RUN_ID = "manual__2026-11-28T05:00:00+00:00"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def env(monkeypatch, tmp_path, server):
    """Connections through env vars, as a deployment would set them; a fresh shard database per test."""
    db = tmp_path / "shard_status.db"
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_TEST", json.dumps(
        {"conn_type": "anthropic", "host": server.base_url, "password": API_KEY}))
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_TEST", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return {"db": db, "root": tmp_path / "worktrees"}


RUNNER_OPTIONS = {"model": "claude-sonnet-4-6", "heartbeat_interval": 0.5}


def _operator(repo: Path, shard: dict, env: dict, runner_options: dict | None = None,
              **kw) -> ClaudeMaintenanceOperator:
    args = dict(task_id=f"maintain_{shard['shard_id']}", shard=shard, repo=str(repo),
                worktree_root=str(env["root"]), runner_options={**RUNNER_OPTIONS, **(runner_options or {})},
                anthropic_conn_id="anthropic_test", shard_status_conn_id="shard_test")
    return ClaudeMaintenanceOperator(**{**args, **kw})


def _todo_shards(repo: Path) -> list[dict]:
    shards = plan_shards(str(repo), "todo", max_files=5)
    assert shards, "the fixture repository has TODO markers"
    return shards


def test_success_commits_records_and_cleans_up(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    head_before, status_before = _git(git_repo, "rev-parse", "HEAD"), _git(git_repo, "status", "--porcelain")
    result = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})

    assert result["status"] == "completed" and result["commit_sha"]
    assert set(result["files_changed"]) == set(shard["files"])
    # the commit is on the shard branch, resolves the markers and names run and shard in trailers
    message = _git(git_repo, "log", "-1", "--format=%B", result["branch"])
    assert f"Shard-Id: {shard['shard_id']}" in message and f"Airflow-Run-Id: {RUN_ID}" in message
    for path in shard["files"]:
        text = _git(git_repo, "show", f"{result['branch']}:{path}")
        assert "TODO" not in text and "FIXME" not in text
    # usage summed per shard equals what the server billed; the XCom is small and has no file contents
    billed = server.billed
    assert (result["input_tokens"], result["output_tokens"], result["cache_read_tokens"],
            result["cache_write_tokens"]) == (billed.input_tokens, billed.output_tokens,
                                              billed.cache_read_tokens, billed.cache_write_tokens)
    assert billed.output_tokens > 0 and billed.cache_read_tokens > 0, "the stable prefix is cached"
    assert len(json.dumps(result)) < 4000 and "return a + b" not in json.dumps(result)
    # the database agrees; the user's checkout and the worktree root are clean
    row = ShardStore.open(str(env["db"])).get_shard(RUN_ID, shard["shard_id"])
    assert row["status"] == "completed" and row["commit_sha"] == result["commit_sha"]
    assert row["input_tokens"] == result["input_tokens"]
    assert _git(git_repo, "rev-parse", "HEAD") == head_before
    assert _git(git_repo, "status", "--porcelain") == status_before
    assert len(_git(git_repo, "worktree", "list", "--porcelain").split("\n\n")) == 1
    assert not any(p.is_file() for p in env["root"].rglob("*"))


def test_rerun_skips_completed_shard(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    first = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    calls = len(server.message_requests())
    second = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert second["status"] == "skipped" and second["commit_sha"] == first["commit_sha"]
    assert len(server.message_requests()) == calls, "a completed shard costs no model call"


def test_verify_failure_commits_nothing_and_records_reason(git_repo, env):
    shard = _todo_shards(git_repo)[0]
    with pytest.raises(AirflowFailException, match="verif"):  # a failed check is not retried
        _operator(git_repo, shard, env, verify_command="python -c 'import sys; sys.exit(3)'").execute(
            {"run_id": RUN_ID})
    row = ShardStore.open(str(env["db"])).get_shard(RUN_ID, shard["shard_id"])
    assert row["status"] == "failed" and "verif" in row["error_message"]
    assert row["commit_sha"] is None and row["branch"] is None, "nothing committed, no empty shard branch left"
    assert not _git(git_repo, "branch", "--list", "worktree/*"), "the empty shard branch was deleted"
    # the uncommitted edits were saved on a salvage branch before the worktree was removed
    salvage = _git(git_repo, "branch", "--list", "worktree-salvage/*")
    assert salvage, "the failed shard's work is kept"
    assert len(_git(git_repo, "worktree", "list", "--porcelain").split("\n\n")) == 1


def test_verify_failure_records_its_cause_where_the_user_looks(git_repo, env):
    """Issue 23: the row, the task's exception (the log) and the report say why verify failed, in one line."""
    from airflow_provider_worktree.core.health import build_report, render_markdown

    shard = _todo_shards(git_repo)[0]
    verify = f"{sys.executable} -c 'import freezegun_missing_in_this_env'"
    with pytest.raises(AirflowFailException, match="No module named 'freezegun_missing_in_this_env'"):
        _operator(git_repo, shard, env, verify_command=verify).execute({"run_id": RUN_ID})
    store = ShardStore.open(str(env["db"]))
    row = store.get_shard(RUN_ID, shard["shard_id"])
    assert row["error_message"].startswith("verification failed: the verify command failed (exit 1): "
                                           "ModuleNotFoundError: No module named 'freezegun_missing_in_this_env'")
    assert "freezegun_missing_in_this_env" in row["result_summary"]["verify"]["output_tail"], "full output kept"
    report = build_report(store, RUN_ID)
    assert "No module named 'freezegun_missing_in_this_env'" in report["failed"][0]["error"]
    md = render_markdown(report)
    assert "No module named 'freezegun_missing_in_this_env'" in md
    assert "<details><summary>verify output (its end)</summary>" in md and "Traceback" in md, "the output, one click away"


def test_retry_after_failure_resumes_and_succeeds(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    server.inject(bad_request("prompt is too long"))
    with pytest.raises(Exception, match="prompt is too long"):
        _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    store = ShardStore.open(str(env["db"]))
    assert store.get_shard(RUN_ID, shard["shard_id"])["status"] == "failed"
    result = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})  # Airflow's retry
    assert result["status"] == "completed" and result["attempt"] == 2
    assert store.get_shard(RUN_ID, shard["shard_id"])["attempt"] == 2


def test_rate_limit_is_retried_within_the_task(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    server.inject(rate_limit(retry_after=0.2))
    result = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert result["status"] == "completed"


def test_budget_is_a_cap_never_exceeded(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    cap = 1500  # enough for the view and edit turns, not for the closing summary
    result = _operator(git_repo, shard, env, budget={"max_input_tokens": cap, "max_tokens": 512}).execute(
        {"run_id": RUN_ID})
    assert result["stop_reason"] == "budget", "the call that could overrun the cap was not sent"
    billed = server.billed
    assert billed.input_tokens + billed.cache_read_tokens + billed.cache_write_tokens <= cap
    assert result["input_tokens"] + result["cache_read_tokens"] + result["cache_write_tokens"] <= cap
    # the edits made within the budget still count: verified and committed
    assert result["status"] == "completed" and result["commit_sha"]


def test_change_outside_the_shard_is_rejected(git_repo, env, server):
    shard = _todo_shards(git_repo)[0]
    outside = "docs/guide.md"
    assert outside not in shard["files"]
    server.model = ScriptedModel([
        tool_use_reply("str_replace_based_edit_tool",
                       {"command": "str_replace", "path": outside, "old_str": "Guide", "new_str": "Hacked"}),
        text_reply("done"),
    ])
    # the runner's write scope refuses the edit as a tool error; nothing outside the shard changes
    with pytest.raises(AirflowFailException):
        _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert (git_repo / outside).read_text() == "Guide\n"
    row = ShardStore.open(str(env["db"])).get_shard(RUN_ID, shard["shard_id"])
    assert row["status"] == "failed"


def test_tracking_off_and_bad_shard(git_repo, env):
    shard = _todo_shards(git_repo)[0]
    result = _operator(git_repo, shard, env, shard_status_conn_id=None).execute({"run_id": RUN_ID})
    assert result["status"] == "completed"
    assert not env["db"].exists(), "no database is touched when tracking is off"
    with pytest.raises(AirflowFailException, match="shard must be a dict"):
        _operator(git_repo, {"shard_id": "x"}, env).execute({"run_id": RUN_ID})
    with pytest.raises(AirflowFailException, match="runner="):
        _operator(git_repo, shard, env, runner="gpt").execute({"run_id": RUN_ID})


def test_api_key_never_in_xcom_logs_or_database(git_repo, env, server, caplog):
    shard = _todo_shards(git_repo)[0]
    caplog.set_level("DEBUG")
    result = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert API_KEY not in json.dumps(result)
    assert API_KEY not in caplog.text
    assert API_KEY.encode() not in env["db"].read_bytes()
    assert all(API_KEY not in json.dumps(r, default=str) for r in server.requests)


def test_retry_after_sigkill_reclaims_at_once_and_salvages(git_repo, env, server):
    """A try killed mid-shard leaves a running lease and a locked worktree; the next try (same host) sees
    the holder is dead, releases its lease with its own token, and completes; nothing is lost."""
    import os
    import signal
    import sys
    import time

    from airflow_provider_worktree.testing.faults import slow

    shard = _todo_shards(git_repo)[0]
    server.inject(slow(20))
    code = (
        "import json, sys\n"
        "from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator\n"
        "op = ClaudeMaintenanceOperator(task_id='t', shard=json.loads(sys.argv[1]), repo=sys.argv[2],\n"
        "    worktree_root=sys.argv[3], runner_options={'model': 'claude-sonnet-4-6', 'heartbeat_interval': 0.5},\n"
        "    anthropic_conn_id='anthropic_test', shard_status_conn_id='shard_test')\n"
        "op.execute({'run_id': sys.argv[4]})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, json.dumps(shard), str(git_repo), str(env["root"]),
                              RUN_ID], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.message_requests():
        time.sleep(0.1)
    assert server.message_requests(), "the first try reached the model"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    store = ShardStore.open(str(env["db"]))
    row = store.get_shard(RUN_ID, shard["shard_id"])
    assert row["status"] == "running" and row["worker_id"].endswith(f":{child.pid}")
    dead_worktrees = [p for p in env["root"].rglob("*-a1") if p.is_dir()]
    assert dead_worktrees, "the killed try left its worktree behind"
    (dead_worktrees[0] / "scratch.txt").write_text("work in progress\n")  # uncommitted work of the dead try

    result = _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert result["status"] == "completed" and result["attempt"] == 2
    assert not dead_worktrees[0].exists(), "the dead try's worktree was cleaned up"
    salvaged = _git(git_repo, "branch", "--list", "worktree-salvage/*").split()
    assert any("work in progress" in _git(git_repo, "show", f"{b}:scratch.txt") for b in salvaged
               if subprocess.run(["git", "cat-file", "-e", f"{b}:scratch.txt"], cwd=git_repo).returncode == 0)


def test_lease_of_a_holder_on_another_host_waits_for_lease_timeout(git_repo, env):
    """A holder on another host cannot be checked for life: its lease is taken over only once its heartbeat
    is older than lease_timeout."""
    import time

    shard = _todo_shards(git_repo)[0]
    store = ShardStore.open(str(env["db"]))
    store.register_shards(RUN_ID, [shard])
    store.assign_shard(RUN_ID, "some-other-host:4242", shard_id=shard["shard_id"])
    with pytest.raises(ShardFailed, match="Another live worker"):
        _operator(git_repo, shard, env).execute({"run_id": RUN_ID})
    assert store.get_shard(RUN_ID, shard["shard_id"])["worker_id"] == "some-other-host:4242"
    time.sleep(2.2)
    result = _operator(git_repo, shard, env, runner_options={"lease_timeout": 2}).execute({"run_id": RUN_ID})
    assert result["status"] == "completed"
    with pytest.raises(ValueError, match="at least twice heartbeat_interval"):
        _operator(git_repo, shard, env, runner_options={"lease_timeout": 0.5})


def test_flat_budget_and_runner_keywords_warn_and_behave_the_same(git_repo, env, server):
    """The keywords before ``budget`` and ``runner_options`` still work for one minor release, and warn."""
    shard = _todo_shards(git_repo)[0]
    grouped = _operator(git_repo, shard, env, budget={"max_input_tokens": 1500, "max_tokens": 512})
    with pytest.warns(DeprecationWarning) as caught:
        flat = ClaudeMaintenanceOperator(
            task_id=grouped.task_id, shard=shard, repo=str(git_repo), worktree_root=str(env["root"]),
            model="claude-sonnet-4-6", heartbeat_interval=0.5, max_input_tokens=1500, max_tokens=512,
            anthropic_conn_id="anthropic_test", shard_status_conn_id="shard_test")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4 and all("is deprecated" in m for m in messages)
    assert any("model=...) is deprecated" in m and "runner_options={'model': ...}" in m for m in messages)
    assert any("max_tokens=...) is deprecated" in m and "budget={'max_tokens': ...}" in m for m in messages)
    assert (flat.budget, flat.runner_options) == (grouped.budget, grouped.runner_options)
    result = flat.execute({"run_id": RUN_ID})
    assert result["stop_reason"] == "budget" and result["status"] == "completed"
    billed = server.billed
    assert billed.input_tokens + billed.cache_read_tokens + billed.cache_write_tokens <= 1500
