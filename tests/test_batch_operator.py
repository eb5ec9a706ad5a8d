"""Batch mode's Airflow faces: ClaudeBatchSubmitOperator defers on ClaudeBatchTrigger, collects on resume, and
ClaudeMaintenanceOperator(mode="batch") applies each shard's reply. Real git, a real SQLite shard database, the
real ``anthropic`` SDK through the official provider's AnthropicHook over HTTP to the offline server (a test
double); the trigger runs in a real asyncio loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from airflow.exceptions import TaskDeferred
from airflow_provider_worktree.version_compat import AirflowException

from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.operators.batch import ClaudeBatchSubmitOperator
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.operators.options import InvalidMaintenanceConfig
from airflow_provider_worktree.testing import OfflineMessagesServer
from airflow_provider_worktree.triggers.batch import ClaudeBatchTrigger

RUN_ID = "manual__2026-11-30T04:00:00+00:00"
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def server():
    with OfflineMessagesServer(batch_delay=3600) as srv:
        yield srv


@pytest.fixture
def env(monkeypatch, tmp_path, server):
    db = tmp_path / "shard_status.db"
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_TEST", json.dumps(
        {"conn_type": "anthropic", "host": server.base_url, "password": "sk-ant-test-SECRET-0123456789"}))
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_TEST", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return {"db": db, "root": str(tmp_path / "worktrees"), "conn": "anthropic_test", "shard": "shard_test"}


def _submit(repo: Path, shards: list[dict], env: dict, **kw) -> ClaudeBatchSubmitOperator:
    args = dict(task_id="submit_batch", shards=shards, repo=str(repo), worktree_root=env["root"], model=MODEL,
                anthropic_conn_id=env["conn"], shard_status_conn_id=env["shard"], poll_interval=0.05,
                max_poll_interval=0.2)
    return ClaudeBatchSubmitOperator(**{**args, **kw})


def _maintain(repo: Path, shard: dict, env: dict, **kw) -> ClaudeMaintenanceOperator:
    args = dict(task_id="maintain", shard=shard, repo=str(repo), worktree_root=env["root"],
                runner_options={"model": MODEL, "heartbeat_interval": 0.5}, anthropic_conn_id=env["conn"],
                shard_status_conn_id=env["shard"], mode="batch")
    return ClaudeMaintenanceOperator(**{**args, **kw})


def _run_trigger(trigger: ClaudeBatchTrigger, limit: float = 60) -> dict:
    async def first_event():
        async for event in trigger.run():
            return event.payload
    return asyncio.run(asyncio.wait_for(first_event(), limit))


def test_submit_defers_the_trigger_fires_and_each_shard_applies_its_reply(git_repo, env, server):
    shards = plan_shards(str(git_repo), "todo", max_files=1)
    assert len(shards) >= 2
    kwargs = [{"shard": s, "task_options": None} for s in shards]  # the example DAG's plan output
    with pytest.raises(TaskDeferred) as deferred:
        _submit(git_repo, kwargs, env).execute({"run_id": RUN_ID})
    trigger = deferred.value.trigger
    assert isinstance(trigger, ClaudeBatchTrigger) and deferred.value.method_name == "execute_complete"
    path, kw = trigger.serialize()
    assert path == "airflow_provider_worktree.triggers.batch.ClaudeBatchTrigger" and "SECRET" not in json.dumps(kw)
    store = ShardStore.open(str(env["db"]))
    assert kw["batch_ids"] == [p["batch_id"] for p in store.batch_parts(RUN_ID)]
    # a retry of the submit task before the batch ended (a killed worker) defers on the same batch
    with pytest.raises(TaskDeferred) as again:
        _submit(git_repo, kwargs, env).execute({"run_id": RUN_ID})
    assert again.value.trigger.batch_ids == kw["batch_ids"] and server.batch_creates == 1

    server.finish_batches()
    event = _run_trigger(ClaudeBatchTrigger(**kw))
    assert event["status"] == "success" and event["request_counts"]["succeeded"] == len(shards)
    state = _submit(git_repo, kwargs, env).execute_complete({"run_id": RUN_ID}, event)
    assert state["mode"] == "batch" and state["collected"] and state["entries"] == {"succeeded": len(shards)}
    assert state["cost_usd"] > 0

    for shard in shards:
        result = _maintain(git_repo, shard, env).execute({"run_id": RUN_ID})
        assert result["status"] == "completed" and result["commit_sha"], result
        text = git_show(git_repo, result["commit_sha"], shard["files"][0])
        assert "TODO" not in text and "FIXME" not in text
    assert not server.message_requests(), "no interactive call: every shard applied its batch reply"
    assert set(server.batch_bills.values()) == {1}


def git_show(repo: Path, sha: str, path: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True, text=True,
                          check=True).stdout


def test_non_deferrable_submit_polls_and_interactive_mode_does_nothing(git_repo, env, server):
    shards = plan_shards(str(git_repo), "todo", max_files=5)
    assert _submit(git_repo, shards, env, mode="interactive").execute({"run_id": RUN_ID}) == {"mode": "interactive"}
    assert server.batch_creates == 0
    server.batch_delay = 0.3
    state = _submit(git_repo, shards, env, deferrable=False).execute({"run_id": RUN_ID})
    assert state["collected"] and state["entries"] == {"succeeded": len(shards)}
    gets = [r for r in server.requests if r["method"] == "GET" and "/results" not in r["path"]]
    assert len(gets) >= 2, "it polled until the batch ended"


def test_trigger_backs_off_times_out_and_reports_unreachable_api(env, server, monkeypatch):
    import anthropic

    client = anthropic.Anthropic(api_key="sk-offline", base_url=server.base_url)
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": {
        "model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}}])
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds):
        waits.append(seconds)
        if len(waits) >= 6:
            trigger.end_time = 0.0  # after six waits the deadline is one long past (no clock reading)
        await real_sleep(0)

    monkeypatch.setattr("airflow_provider_worktree.triggers.batch.asyncio.sleep", recorded)
    trigger = ClaudeBatchTrigger([batch.id], conn_id=env["conn"], poll_interval=1, max_poll_interval=4, backoff=2)
    event = _run_trigger(trigger)
    assert event["status"] == "timeout" and batch.id in event["message"]
    assert waits == [1, 2, 4, 4, 4, 4], "each wait doubles up to the cap"
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_GONE", json.dumps(
        {"conn_type": "anthropic", "host": "http://127.0.0.1:9", "password": "sk-offline"}))
    gone = _run_trigger(ClaudeBatchTrigger([batch.id], conn_id="anthropic_gone", poll_interval=0.01), limit=120)
    assert gone["status"] == "error" and "failed 5 times in a row" in gone["message"]


def test_bad_settings_fail_clearly(git_repo, env, server):
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]
    with pytest.raises(InvalidMaintenanceConfig, match="mode='later' is not one of"):
        _submit(git_repo, [shard], env, mode="later").execute({"run_id": RUN_ID})
    with pytest.raises(InvalidMaintenanceConfig, match="no batch entry"):
        _maintain(git_repo, shard, env).execute({"run_id": RUN_ID})
    with pytest.raises(InvalidMaintenanceConfig, match="use runner='api'"):
        _maintain(git_repo, shard, env, runner="claude_code").execute({"run_id": RUN_ID})
    with pytest.raises(InvalidMaintenanceConfig, match="shards must be the planner's list"):
        _submit(git_repo, "not a list", env).execute({"run_id": RUN_ID})
    with pytest.raises(AirflowException, match="waiting for the batches failed"):
        _submit(git_repo, [shard], env).execute_complete({"run_id": RUN_ID}, {"status": "timeout", "message": "late"})
