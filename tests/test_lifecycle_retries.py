"""Retries that make sense: failures a retry cannot change are permanent (no Airflow retry), transient ones are
retried; the budget is the shard's across attempts; stored errors are bounded and never carry the key.

Real git repositories, a real SQLite shard database, the real ``anthropic`` SDK over HTTP to the offline server.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest
from airflow_provider_worktree.version_compat import AirflowFailException

from airflow_provider_worktree.core.lifecycle import ShardConfig, ShardFailed, is_permanent, run_shard
from airflow_provider_worktree.core.runners import ApiRunner, Budget, ModelRequestError, RunResult
from airflow_provider_worktree.core.store import MAX_ERROR_CHARS, ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.testing import ScriptedModel, text_reply, tool_use_reply
from airflow_provider_worktree.testing.faults import bad_request, overloaded

API_KEY = "sk-ant-test-SECRET-0123456789abcdef"
RUN = "manual__2026-11-30T01:00:00+00:00"


@pytest.fixture
def setup(git_repo, tmp_path, server):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    manager = WorktreeManager(git_repo, worktree_root=tmp_path / "worktrees")
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]
    return {"store": store, "manager": manager, "shard": shard, "task": get_task("todo"), "repo": git_repo}


def _runner(server, **kw) -> ApiRunner:
    client = anthropic.Anthropic(api_key=API_KEY, base_url=server.base_url)
    return ApiRunner(client, "claude-sonnet-4-6", max_retries=0, **kw)


def _run(setup, runner, **cfg):
    return run_shard(setup["shard"], RUN, task=setup["task"], manager=setup["manager"], runner=runner,
                     store=setup["store"], config=ShardConfig(heartbeat_interval=0.5, **cfg))


def test_metric_not_improved_is_permanent_and_its_spend_is_kept(setup, server):
    server.model = ScriptedModel([text_reply("I looked and changed nothing.")])
    with pytest.raises(ShardFailed, match="verification failed") as info:
        _run(setup, _runner(server))
    assert info.value.permanent and info.value.result.retryable is False
    row = setup["store"].get_shard(RUN, setup["shard"]["shard_id"])
    assert row["status"] == "failed" and row["result_summary"]["retryable"] is False
    billed = server.billed
    assert row["output_tokens"] == billed.output_tokens > 0, "the failed attempt's spend is on the row"


def test_scope_violation_is_permanent(setup, server):
    outside = "docs/guide.md"
    assert outside not in setup["shard"]["files"]
    # an unconfined editor writes outside the shard; the scope check rejects the result
    server.model = ScriptedModel([
        tool_use_reply("str_replace_based_edit_tool",
                       {"command": "str_replace", "path": outside, "old_str": "Guide", "new_str": "Hacked"}),
        text_reply("done"),
    ])
    with pytest.raises(ShardFailed, match="left the shard's files") as info:
        _run(setup, _runner(server), sparse=False)
    assert info.value.permanent


@pytest.mark.parametrize("fault, permanent", [(bad_request("prompt is too long"), True), (overloaded(), False)])
def test_http_errors_are_permanent_only_for_request_errors(setup, server, fault, permanent):
    server.inject(fault)
    with pytest.raises(ShardFailed) as info:
        _run(setup, _runner(server))
    assert info.value.permanent is permanent
    assert setup["store"].get_shard(RUN, setup["shard"]["shard_id"])["status"] == "failed"


def test_classification_of_api_statuses():
    def err(status, retryable=False):
        return ModelRequestError("x", status_code=status, retryable=retryable)

    assert [is_permanent(err(s)) for s in (400, 401, 403, 404, 413, 422)] == [True] * 6
    assert [is_permanent(err(s, True)) for s in (408, 409, 429, 500, 529)] == [False] * 5
    assert not is_permanent(err(None, True)) and not is_permanent(RuntimeError("git: index.lock exists"))
    assert is_permanent(ValueError("not ours")) is False and is_permanent(ShardFailed("x", permanent=True))


def test_budget_is_the_shards_across_attempts(setup, server):
    cap = 6000
    # attempt 1 spends part of the cap on nothing useful and fails (permanently; the user retries by hand)
    server.model = ScriptedModel([
        tool_use_reply("str_replace_based_edit_tool", {"command": "view", "path": setup["shard"]["files"][0]}),
        text_reply("nothing to do"),
    ])
    with pytest.raises(ShardFailed):
        _run(setup, _runner(server, budget=Budget(max_total_tokens=cap)))
    first = setup["store"].get_shard(RUN, setup["shard"]["shard_id"])
    spent1 = first["input_tokens"] + first["cache_read_tokens"] + first["cache_write_tokens"] + first["output_tokens"]
    assert 0 < spent1 < cap
    # attempt 2 starts with what is left, not with a fresh cap
    from airflow_provider_worktree.testing import RuleBasedModel

    server.model = RuleBasedModel()
    runner = _runner(server, budget=Budget(max_total_tokens=cap))
    try:
        _run(setup, runner)
    except ShardFailed:
        pass  # running out of the rest is fine: the point is the cap
    assert runner.budget.max_total_tokens == cap - spent1
    row = setup["store"].get_shard(RUN, setup["shard"]["shard_id"])
    billed = server.billed
    assert billed.input_tokens + billed.cache_read_tokens + billed.cache_write_tokens + billed.output_tokens <= cap
    assert row["input_tokens"] == billed.input_tokens and row["output_tokens"] == billed.output_tokens
    assert [a["attempt"] for a in setup["store"].list_attempts(RUN)] == [1, 2]


def test_spent_budget_fails_permanently_without_a_model_call(setup, server):
    store, sid = setup["store"], setup["shard"]["shard_id"]
    store.register_shards(RUN, [setup["shard"]])
    lease = store.assign_shard(RUN, "earlier:1", sid)
    store.fail(lease, "cancelled", input_tokens=900, output_tokens=200)
    calls = len(server.message_requests())
    with pytest.raises(ShardFailed, match="budget is spent") as info:
        _run(setup, _runner(server, budget=Budget(max_total_tokens=1000)))
    assert info.value.permanent and len(server.message_requests()) == calls
    assert not list((Path(setup["manager"].worktree_root)).rglob("*.py")), "no worktree was even made"


class _LeakyRunner:
    """A runner whose failure message is huge and quotes the key (as a verify output or proxy error might)."""

    model = "claude-sonnet-4-6"
    _api_key = API_KEY

    def run(self, worktree_path, shard_prompt, system_prompt=None):
        return RunResult(stop_reason="error", error=f"proxy said: bad key {API_KEY}\n" + "trace line\n" * 50000)

    def cancel(self):
        pass


def test_stored_error_is_bounded_and_has_no_key(setup):
    with pytest.raises(ShardFailed) as info:
        _run(setup, _LeakyRunner())
    row = setup["store"].get_shard(RUN, setup["shard"]["shard_id"])
    for text in (row["error_message"], str(info.value), json.dumps(info.value.result.to_dict())):
        assert API_KEY not in text
    assert len(row["error_message"]) <= MAX_ERROR_CHARS + 100 and "proxy said: bad key" in row["error_message"]
    assert not info.value.permanent, "an unexplained runner error may pass on retry"


def test_operator_fails_without_retry_only_when_permanent(git_repo, tmp_path, server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_TEST", json.dumps(
        {"conn_type": "anthropic", "host": server.base_url, "password": API_KEY}))
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_TEST", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")}))
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]

    def op(**kw):
        return ClaudeMaintenanceOperator(task_id="m", shard=shard, repo=str(git_repo),
                                         worktree_root=str(tmp_path / "wt"), model="claude-sonnet-4-6",
                                         anthropic_conn_id="anthropic_test", shard_status_conn_id="shard_test",
                                         heartbeat_interval=0.5, **kw)

    server.inject(bad_request("messages: text content blocks must be non-empty"))
    with pytest.raises(AirflowFailException, match="non-empty"):
        op().execute({"run_id": RUN})
    with pytest.raises(ValueError, match="isolation="):  # a literal is checked when the DAG is parsed
        op(isolation="docker")
    with pytest.raises(AirflowFailException, match="isolation="):  # a template once rendered
        op(isolation="{{ params.isolation }}").execute({"run_id": RUN, "params": {}})
    with pytest.raises(AirflowFailException, match="max_active_shards"):
        op(max_active_shards="three").execute({"run_id": RUN})
    result = op(isolation="none", max_active_shards="2").execute({"run_id": RUN})  # Params arrive as text
    assert result["status"] == "completed" and result["attempt"] == 2 and result["isolation"] == "none"
    assert result["totals"]["attempt"] == 2
