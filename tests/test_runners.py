"""Runners over real HTTP: the real anthropic SDK -> the offline Messages API server; Claude Code via a stand-in."""

from __future__ import annotations

import json
import sys
import threading
import time

import anthropic
import pytest


from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.runners import (
    ApiRunner,
    Budget,
    ModelRequestError,
    PriceTable,
    RunResult,
    Usage,
)
from airflow_provider_worktree.testing import (
    OfflineMessagesServer,
    ScriptedModel,
    bad_request,
    escape_attempt,
    forbidden_command,
    malformed_tool_call,
    overloaded,
    rate_limit,
    server_error,
    text_reply,
    tool_use_reply,
)

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-test-key-do-not-leak-0123456789"
TODO_FILES = ["src/app.py", "src/util.py"]


def shard_prompt(task: str = "todo", files: list[str] | None = None) -> str:
    block = json.dumps({"shard_id": f"{task}-0001", "task": task, "files": files or TODO_FILES})
    return f"Resolve the TODO, FIXME, XXX and HACK markers in these files.\n<shard>\n{block}\n</shard>\n"


@pytest.fixture
def srv():
    with OfflineMessagesServer() as server:
        yield server


def client_for(server: OfflineMessagesServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)


def runner_for(server, **kw) -> ApiRunner:
    kw.setdefault("backoff_base", 0.05)
    return ApiRunner(client_for(server), kw.pop("model", MODEL), **kw)


def tool_results(request: dict) -> list[dict]:
    last = request["body"]["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


# -- the happy path ---------------------------------------------------------------------------------------------------
def test_todo_run_edits_files_and_usage_matches_billing(srv, git_repo):
    result = runner_for(srv, budget=Budget(max_total_tokens=1_000_000)).run(git_repo, shard_prompt())
    assert isinstance(result, RunResult)
    assert result.stop_reason == "end_turn" and result.error is None
    assert result.files_written == TODO_FILES
    app = (git_repo / "src/app.py").read_text()
    util = (git_repo / "src/util.py").read_text()
    assert "TODO" not in app and "FIXME" not in util
    assert "NOTE(resolved): validate inputs" in app
    compile(app, "app.py", "exec"), compile(util, "util.py", "exec")
    assert (git_repo / "README.md").read_text() == "# demo\n"
    assert result.usage == srv.billed
    assert result.turns == len(srv.message_requests()) == 3
    assert result.cost_usd == pytest.approx(PriceTable().cost(srv.billed, MODEL), abs=1e-6)
    assert "2 edit(s)" in result.final_text


def test_request_shape_tools_caching_and_shard_last(srv, git_repo):
    runner_for(srv, conventions="Use 4 spaces.").run(git_repo, shard_prompt())
    reqs = srv.message_requests()
    first = reqs[0]["body"]
    assert first["tools"] == [{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool",
                               "max_characters": 100000, "cache_control": {"type": "ephemeral"}}]
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "Use 4 spaces." in first["system"][-1]["text"]
    assert all("cache_control" not in b for b in first["system"][:-1])
    user_text = first["messages"][0]["content"][-1]["text"]
    assert user_text.rstrip().endswith("</shard>")
    # at most 4 breakpoints per request; the prefix is written once then read
    for r in reqs:
        marks = json.dumps(r["body"]).count('"cache_control"')
        assert marks <= 4
    usages = [srv_reply_usage for srv_reply_usage in (r["body"] for r in reqs)]
    assert len(usages) == 3
    assert srv.billed.cache_write_tokens > 0 and srv.billed.cache_read_tokens > 0


def test_command_tool_only_when_allowed(srv, git_repo):
    runner_for(srv).run(git_repo, shard_prompt())
    assert [t["name"] for t in srv.message_requests()[0]["body"]["tools"]] == ["str_replace_based_edit_tool"]
    srv.reset()
    runner_for(srv, allow_commands=[["pytest"]]).run(git_repo, shard_prompt())
    tools = srv.message_requests()[0]["body"]["tools"]
    assert [t["name"] for t in tools] == ["str_replace_based_edit_tool", "run_command"]
    assert "cache_control" in tools[-1] and "cache_control" not in tools[0]


def test_lifecycle_style_call_with_system_prompt(srv, git_repo):
    result = runner_for(srv).run(str(git_repo), shard_prompt(), system_prompt="Be brief.")
    assert result.stop_reason == "end_turn"
    assert srv.message_requests()[0]["body"]["system"][0]["text"] == "Be brief."


# -- budget: a cap, never exceeded ----------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1500, 2500, 4000])
def test_total_token_budget_is_never_exceeded(srv, git_repo, limit):
    result = runner_for(srv, max_tokens=1024, max_tokens_floor=64,
                        budget=Budget(max_total_tokens=limit)).run(git_repo, shard_prompt())
    assert srv.billed.total_tokens <= limit
    assert result.usage == srv.billed
    assert result.turns == len(srv.message_requests())  # the overrunning call was never sent
    if result.stop_reason != "end_turn":
        assert result.stop_reason == "budget"
        assert "budget" in result.error


def test_budget_stops_before_sending_and_shrinks_max_tokens(srv, git_repo, repo_factory):
    full = runner_for(srv).run(repo_factory("full", {"src/app.py": (git_repo / "src/app.py").read_text(),
                                                     "src/util.py": (git_repo / "src/util.py").read_text()}),
                               shard_prompt())
    assert full.stop_reason == "end_turn"
    limit = full.usage.total_tokens - 1  # the whole run cannot fit
    srv.reset()
    result = runner_for(srv, max_tokens=4096, max_tokens_floor=32,
                        budget=Budget(max_total_tokens=limit)).run(git_repo, shard_prompt())
    assert result.stop_reason == "budget" and "budget" in result.error
    sent = srv.message_requests()
    assert sent and all(r["body"]["max_tokens"] < 4096 for r in sent)
    assert srv.billed.total_tokens <= limit
    assert result.turns == len(sent)


def test_budget_too_small_for_the_first_call_sends_nothing(srv, git_repo):
    result = runner_for(srv, budget=Budget(max_input_tokens=10)).run(git_repo, shard_prompt())
    assert result.stop_reason == "budget" and result.turns == 0
    assert srv.message_requests() == []
    assert srv.billed == Usage()


def test_cost_budget_is_a_cap(srv, git_repo):
    cap = 0.01
    prices = PriceTable({MODEL: {"input": 3, "output": 15}})
    result = runner_for(srv, max_tokens=2048, max_tokens_floor=32,
                        budget=Budget(max_cost_usd=cap, prices=prices)).run(git_repo, shard_prompt())
    assert prices.cost(srv.billed, MODEL) <= cap
    assert result.stop_reason in ("budget", "end_turn")
    assert result.cost_usd == pytest.approx(prices.cost(srv.billed, MODEL), abs=1e-6)


def test_budget_without_count_tokens_uses_a_conservative_estimate(srv, git_repo):
    result = runner_for(srv, max_tokens=1024, max_tokens_floor=64, count_tokens=False,
                        budget=Budget(max_total_tokens=5000)).run(git_repo, shard_prompt())
    assert srv.billed.total_tokens <= 5000
    assert not [r for r in srv.requests if r["path"].endswith("count_tokens")]
    assert result.stop_reason in ("budget", "end_turn")


def test_count_tokens_only_near_the_cap(srv, git_repo):
    """Far from the cap a pessimistic size bound already fits, so no count_tokens round trip is made; near it
    every call is counted exactly before it is sent."""
    counted = lambda: [r for r in srv.requests if r["path"].endswith("count_tokens")]  # noqa: E731
    roomy = runner_for(srv, budget=Budget(max_input_tokens=1_000_000)).run(git_repo, shard_prompt())
    assert roomy.stop_reason == "end_turn" and roomy.turns >= 2
    assert counted() == []
    srv.reset()
    cap = 1800  # below the bound of the first call (its JSON / 2 + tool overhead + max_tokens)
    tight = runner_for(srv, max_tokens=1024, max_tokens_floor=64,
                       budget=Budget(max_total_tokens=cap)).run(git_repo, shard_prompt())
    assert len(counted()) >= max(tight.turns, 1)
    assert srv.billed.total_tokens <= cap


def test_budget_and_prices_units():
    b = Budget(max_output_tokens=100)
    assert b.check_call(10, 100) is None
    assert "does not fit" in b.check_call(10, 101)
    b.record(Usage(output_tokens=60))
    assert b.fit_max_tokens(10, 100, floor=32) == (40, None)
    fitted, reason = b.fit_max_tokens(10, 100, floor=50)
    assert fitted is None and "floor" in reason
    p = PriceTable()
    assert p.price("claude-opus-4-1-20250805").output == 75
    assert p.price("claude-sonnet-4-6").input == 3
    assert p.price("claude-haiku-4-5").input == 1
    assert p.price("some-future-model") == p.default and p.default.output == 75
    assert PriceTable({"mine": (1, 2)}).price("mine-v2").output == 2
    assert Usage(1, 2, 3, 4).to_dict() == {"input_tokens": 1, "output_tokens": 2, "cache_read_tokens": 3,
                                          "cache_write_tokens": 4}
    assert (Usage(1, 1, 1, 1) + Usage(1, 2, 3, 4)).total_tokens == 14
    with pytest.raises(ValueError):
        Budget(max_cost_usd=-1)


# -- retries and request errors --------------------------------------------------------------------------------------
def test_rate_limit_honours_retry_after(srv, git_repo):
    srv.inject(rate_limit(retry_after=1))
    t0 = time.monotonic()
    result = runner_for(srv).run(git_repo, shard_prompt())
    elapsed = time.monotonic() - t0
    assert result.stop_reason == "end_turn"
    assert elapsed >= 1.0
    reqs = srv.message_requests()
    assert [r["status"] for r in reqs[:2]] == [429, 200]
    assert reqs[1]["time"] - reqs[0]["time"] >= 1.0
    assert result.retries == 1 and result.requests == len(reqs) == 4


def test_retry_after_ms_header(srv, git_repo):
    srv.inject(rate_limit(retry_after=None, retry_after_ms=300))
    result = runner_for(srv).run(git_repo, shard_prompt())
    reqs = srv.message_requests()
    assert result.stop_reason == "end_turn" and reqs[1]["time"] - reqs[0]["time"] >= 0.3


@pytest.mark.parametrize("fault, status", [(overloaded, 529), (server_error, 500)])
def test_overload_and_server_errors_are_retried(srv, git_repo, fault, status):
    srv.inject(fault(), fault())
    result = runner_for(srv).run(git_repo, shard_prompt())
    assert result.stop_reason == "end_turn"
    assert [r["status"] for r in srv.message_requests()[:3]] == [status, status, 200]
    assert result.retries == 2
    assert result.usage == srv.billed


def test_bad_request_fails_at_once_with_the_api_message(srv, git_repo):
    srv.inject(bad_request("messages.0.content: prompt is too long: 250000 tokens > 200000 maximum"))
    with pytest.raises(ModelRequestError) as info:
        runner_for(srv).run(git_repo, shard_prompt())
    err = info.value
    assert isinstance(err, WorktreeProviderError)
    assert err.status_code == 400 and err.error_type == "invalid_request_error" and not err.retryable
    assert "prompt is too long: 250000 tokens" in str(err) and err.api_message.startswith("messages.0")
    assert len(srv.message_requests()) == 1
    assert err.result is not None and err.result.stop_reason == "error" and err.result.turns == 0
    assert KEY not in str(err)


def test_retries_exhausted_raise_a_retryable_error_with_partial_result(srv, git_repo):
    srv.inject(*[overloaded() for _ in range(3)])
    with pytest.raises(ModelRequestError) as info:
        runner_for(srv, max_retries=2).run(git_repo, shard_prompt())
    assert info.value.retryable and info.value.status_code == 529
    assert len(srv.message_requests()) == 3
    assert info.value.result.usage == Usage()


def test_connection_errors_are_retried(git_repo):
    srv = OfflineMessagesServer().start()
    url = srv.base_url
    srv.stop()  # nothing listens there any more
    client = anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0)
    with pytest.raises(ModelRequestError) as info:
        ApiRunner(client, MODEL, max_retries=2, backoff_base=0.01).run(git_repo, shard_prompt())
    assert info.value.retryable and info.value.result.requests == 3


# -- tools: malformed calls, escapes, commands -------------------------------------------------------------------------
def test_malformed_tool_call_is_a_tool_error_and_the_loop_continues(srv, git_repo):
    srv.inject(malformed_tool_call())
    result = runner_for(srv).run(git_repo, shard_prompt())
    assert result.stop_reason == "end_turn"
    results = tool_results(srv.message_requests()[1])
    assert len(results) == 1 and results[0]["is_error"] is True and "JSON object" in results[0]["content"]
    assert "TODO" not in (git_repo / "src/app.py").read_text()


@pytest.mark.parametrize("path, command", [
    ("../../etc/passwd", "view"),
    ("/etc/passwd", "view"),
    ("../outside/evil.txt", "create"),
    ("escape/evil.txt", "create"),
    ("escape/secret.txt", "str_replace"),
    ("secret_link.txt", "insert"),
    (".git/config", "str_replace"),
])
def test_escape_attempts_are_refused(srv, git_repo, tmp_path, path, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root secret\n")
    (git_repo / "escape").symlink_to(outside)
    (git_repo / "secret_link.txt").symlink_to(outside / "secret.txt")
    git_config = (git_repo / ".git" / "config").read_text()
    srv.inject(escape_attempt(path, command))
    result = runner_for(srv).run(git_repo, shard_prompt())
    assert result.stop_reason == "end_turn"
    res = tool_results(srv.message_requests()[1])
    assert len(res) == 1 and res[0]["is_error"] is True
    assert "root secret" not in res[0]["content"] and "root:" not in res[0]["content"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "root secret\n"
    assert (git_repo / ".git" / "config").read_text() == git_config
    assert not (tmp_path / "evil.txt").exists()
    assert result.files_written == TODO_FILES


def test_forbidden_command_is_refused(srv, git_repo, tmp_path):
    marker = tmp_path / "marker"
    srv.inject(forbidden_command(f"touch {marker}"), forbidden_command("rm -rf src"))
    result = runner_for(srv, allow_commands=[["pytest"], ["python", "-m", "pytest"]]).run(git_repo, shard_prompt())
    assert result.stop_reason == "end_turn"
    for req in srv.message_requests()[1:3]:
        res = tool_results(req)
        assert res[0]["is_error"] is True and "not allowed" in res[0]["content"]
    assert not marker.exists() and (git_repo / "src/app.py").exists()


def test_command_tool_absent_means_run_command_is_unknown(srv, git_repo):
    srv.inject(forbidden_command("pytest -q"))
    result = runner_for(srv).run(git_repo, shard_prompt())
    res = tool_results(srv.message_requests()[1])
    assert res[0]["is_error"] is True and "unknown tool" in res[0]["content"]
    assert result.stop_reason == "end_turn"


def test_allowlisted_command_runs_in_the_worktree(git_repo):
    script = ScriptedModel([
        tool_use_reply("run_command", {"command": f"{sys.executable} -c 'import os; print(os.listdir())'"}),
        text_reply("done"),
    ])
    with OfflineMessagesServer(script) as server:
        result = runner_for(server, allow_commands=[[sys.executable, "-c"]]).run(git_repo, "go")
        res = tool_results(server.message_requests()[1])
    assert result.stop_reason == "end_turn" and result.final_text == "done"
    assert res[0].get("is_error") is None and "exit code: 0" in res[0]["content"] and "src" in res[0]["content"]


# -- stopping: max_turns, cancel ---------------------------------------------------------------------------------------
def test_max_turns(git_repo):
    script = ScriptedModel([tool_use_reply("str_replace_based_edit_tool", {"command": "view", "path": "."})
                            for _ in range(10)])
    with OfflineMessagesServer(script) as server:
        result = runner_for(server, max_turns=3).run(git_repo, "look around")
        assert result.stop_reason == "max_turns" and result.turns == 3
        assert len(server.message_requests()) == 3


def test_cancel_stops_the_loop(git_repo):
    holder: dict = {}

    def cancel_during_reply(request):
        holder["runner"].cancel()
        return tool_use_reply("str_replace_based_edit_tool", {"command": "view", "path": "."})

    with OfflineMessagesServer(ScriptedModel([cancel_during_reply] + [text_reply("never")] * 3)) as server:
        runner = holder["runner"] = runner_for(server)
        result = runner.run(git_repo, "go")
        assert result.stop_reason == "cancelled" and result.turns == 1
        assert len(server.message_requests()) == 1


def test_cancel_interrupts_a_retry_wait(srv, git_repo):
    srv.inject(rate_limit(retry_after=30))
    runner = runner_for(srv)
    threading.Timer(0.5, runner.cancel).start()
    result = runner.run(git_repo, shard_prompt())
    assert result.stop_reason == "cancelled"
    assert len(srv.message_requests()) == 1


def test_max_tokens_stop_asks_to_continue(git_repo):
    script = ScriptedModel([text_reply("partial", stop_reason="max_tokens"), text_reply("finished")])
    with OfflineMessagesServer(script) as server:
        result = runner_for(server).run(git_repo, "go")
        assert result.stop_reason == "end_turn" and result.final_text == "finished" and result.turns == 2
        assert "cut off" in server.message_requests()[1]["body"]["messages"][-1]["content"][0]["text"]


def test_api_key_never_in_the_request_log(srv, git_repo):
    runner_for(srv).run(git_repo, shard_prompt())
    dump = json.dumps(srv.requests)
    assert KEY not in dump
    assert any(r["headers"].get("authorization") == "<redacted>" or r["headers"].get("x-api-key") == "<redacted>"
               for r in srv.requests)
