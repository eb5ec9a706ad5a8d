"""The shared rate limit through the operator, the Claude Code session cap, the report and the CLI (issue 21):
real git repositories, a real SQLite shard database, the real SDK through the official provider's AnthropicHook
to the offline server enforcing an organisation's limits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.core.health.report import build_report, render_markdown
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.ratelimit import SharedLimiter, anthropic_observation
from airflow_provider_worktree.core.runners import ModelRequestError, RunResult, SessionLimitedRunner, Usage
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.testing import OfflineMessagesServer, RateLimits
from airflow_provider_worktree.version_compat import AirflowFailException, TaskDeferred

RUN_ID = "manual__2026-12-07T10:00:00+00:00"
SCOPE = "anthropic:anthropic_rl"


@pytest.fixture
def limited_server():
    limits = RateLimits(requests_per_minute=500, input_tokens_per_minute=400_000, output_tokens_per_minute=80_000)
    with OfflineMessagesServer(rate_limits=limits) as srv:
        yield srv


@pytest.fixture
def env(monkeypatch, tmp_path, limited_server):
    db = tmp_path / "shard_status.db"
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_RL", json.dumps(
        {"conn_type": "anthropic", "host": limited_server.base_url, "password": "sk-ant-test"}))
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_RL", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return {"db": db, "root": tmp_path / "worktrees"}


def _operator(repo: Path, env: dict, **runner_options) -> tuple[ClaudeMaintenanceOperator, dict]:
    shard = plan_shards(str(repo), "todo", max_files=5)[0]
    op = ClaudeMaintenanceOperator(
        task_id="maintain", shard=shard, repo=str(repo), worktree_root=str(env["root"]),
        runner_options={"model": "claude-sonnet-4-6", "heartbeat_interval": 0.5, **runner_options},
        anthropic_conn_id="anthropic_rl", shard_status_conn_id="shard_rl")
    return op, shard


def test_a_shard_shares_the_limit_and_the_report_shows_it(git_repo, env):
    op, shard = _operator(git_repo, env)
    result = op.execute({"run_id": RUN_ID})
    assert result["status"] == "completed"
    store = ShardStore.open(str(env["db"]))
    (scope,) = store.rate_scopes()
    assert scope["scope"] == SCOPE and scope["state"]["inflight"] == {}
    assert scope["state"]["buckets"]["input_tokens"]["learnt"] == 400_000, "learnt from the API's headers"
    report = build_report(store, RUN_ID)
    (figures,) = report["rate_limits"]
    assert figures["calls"] == result["turns"] and figures["throttled"] == 0 and figures["input_tpm_limit"] == 400_000
    assert report["totals"]["accepted"] == 1
    assert report["totals"]["cost_per_accepted_usd"] == pytest.approx(report["totals"]["cost_usd"])
    text = render_markdown(report)
    assert f"- Rate limit {SCOPE}: {figures['calls']} calls, 0 answered 429" in text
    assert "- Cost per accepted change: $" in text and "(1 shard(s) verified and committed)" in text


def test_a_shard_the_limit_would_keep_waiting_defers_before_claiming(git_repo, env):
    store = ShardStore.open(str(env["db"]))
    limiter = SharedLimiter(store, SCOPE)
    limiter.throttled(limiter.acquire({"requests": 1}), anthropic_observation({"retry-after": "500"}, 429))
    op, shard = _operator(git_repo, env)
    with pytest.raises(TaskDeferred) as info:
        op.execute({"run_id": RUN_ID})
    deferred = info.value
    assert deferred.method_name == "execute_after_rate_limit"
    block_until = store.rate_scopes()[0]["state"]["block_until"]
    assert deferred.trigger.moment.timestamp() == pytest.approx(block_until, abs=5), \
        "deferred until the 429's block ends"
    assert store.list_shards(run_id=RUN_ID) == [], "nothing claimed, nothing spent"
    store.rate_clear(SCOPE)
    resumed = op.execute_after_rate_limit({"run_id": RUN_ID}, event={"status": "success"})
    assert resumed["status"] == "completed", "resumed, the shard runs"


def test_under_the_spend_cap_a_shard_fails_at_once_without_claiming(git_repo, env):
    store = ShardStore.open(str(env["db"]))
    limiter = SharedLimiter(store, SCOPE)
    limiter.spend_capped(limiter.acquire({"requests": 1}), "You have reached your specified API usage limits")
    op, shard = _operator(git_repo, env)
    with pytest.raises(AirflowFailException, match=f"spend limit was reached .*limits clear {SCOPE}"):
        op.execute({"run_id": RUN_ID})
    assert store.list_shards(run_id=RUN_ID) == []


def test_rate_limit_off_and_bad_settings(git_repo, env):
    op, _ = _operator(git_repo, env, rate_limit="off")
    assert op.execute({"run_id": RUN_ID})["status"] == "completed"
    assert ShardStore.open(str(env["db"])).rate_scopes() == [], "off: nothing shared"
    from airflow_provider_worktree.core.errors import ConfigurationError

    for bad, message in (({"input_tokens_per_min": 5}, "unknown keys"), ("sometimes", "give 'shared', 'off'"),
                         ({"input_tokens_per_minute": -3}, "must be a positive integer")):
        with pytest.raises(ConfigurationError, match=message):   # when the DAG file is parsed
            _operator(git_repo, env, rate_limit=bad)


class _Session:
    """A stand-in for a Claude Code run: the wrapper under test only sees run()/cancel() and the result."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    def run(self, worktree_path, shard_prompt, system_prompt=None):
        return RunResult("end_turn", turns=3, usage=Usage(self.tokens, 500, 0, 0))

    def cancel(self):
        pass


def test_claude_code_sessions_are_capped_by_the_rate_the_limit_sustains(tmp_path):
    store = ShardStore.open(str(tmp_path / "shards.db"))
    limiter = SharedLimiter(store, SCOPE, limits={"input_tokens": (720_000, 60.0)}, max_wait_s=1.0)
    SessionLimitedRunner(_Session(6_000), limiter).run(tmp_path, "x")   # measured: 6,000 tokens in under a second
    state = store.rate_scopes()[0]["state"]
    assert state["session_tpm"] == pytest.approx(360_000), "a session under a second counts as one second"
    assert state["buckets"]["input_tokens"]["level"] == pytest.approx(714_000, abs=500), "its usage was charged"
    held = [limiter.acquire({}, kind="session") for _ in range(2)]   # 720k / 360k a minute: two at once
    with pytest.raises(ModelRequestError, match="2 sessions in flight") as info:
        SessionLimitedRunner(_Session(10), limiter).run(tmp_path, "x")
    assert info.value.retryable
    limiter.session_ended(held[0], {"input_tokens": 0})
    assert SessionLimitedRunner(_Session(10), limiter).run(tmp_path, "x").stop_reason == "end_turn"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_the_cli_shows_and_clears_the_shared_limits(tmp_path):
    db = str(tmp_path / "shards.db")
    store = ShardStore.open(db)
    limiter = SharedLimiter(store, SCOPE, limits={"input_tokens": (60_000, 60.0)}, run_id="run-7")
    limiter.settle(limiter.acquire({"requests": 1, "input_tokens": 900}), {"requests": 1, "input_tokens": 800})
    limiter.spend_capped(limiter.acquire({"requests": 1}), "usage limits reached")
    shown = _cli("limits", "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert f"{SCOPE} STOPPED: spend limit reached (usage limits reached)" in shown.stdout
    assert "input_tokens" in shown.stdout and "60,000" in shown.stdout and "configured" in shown.stdout
    assert "run-7" in shown.stdout and "1 calls, 1 answered 429 (50.0%)" in shown.stdout
    data = json.loads(_cli("limits", "--db", db, "-o", "json").stdout)
    assert data["scopes"][0]["spend_cap"] == "usage limits reached" and data["runs"][0]["input_tokens"] == 800
    wrong = _cli("limits", "clear", "anthropic:nope", "--db", db)
    assert wrong.returncode == 3 and f"known: {SCOPE}" in wrong.stderr
    cleared = _cli("limits", "clear", SCOPE, "--db", db)
    assert cleared.returncode == 0 and "Cleared" in cleared.stdout
    assert SharedLimiter(store, SCOPE).acquire({"requests": 1}).shared, "calls go again"
