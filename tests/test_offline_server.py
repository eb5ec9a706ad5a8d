"""The offline Messages API test double, through the real anthropic SDK and raw HTTP."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import pytest

from airflow_provider_worktree.core.runners import ApiRunner, Usage
from airflow_provider_worktree.testing import (
    OfflineMessagesServer,
    ScriptedModel,
    bad_request,
    overloaded,
    parse_shard_block,
    rate_limit,
    server_error,
    slow,
    text_reply,
)

KEY = "sk-ant-offline-secret-key-42"
MODEL = "claude-sonnet-4-6"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def srv():
    with OfflineMessagesServer() as server:
        yield server


def sdk(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)


def raw_post(server, path: str, body: object, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(server.base_url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


SIMPLE = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}


def test_message_shape_and_count_tokens_agree(srv):
    client = sdk(srv)
    msg = client.messages.create(**SIMPLE)
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert msg.id.startswith("msg_") and msg.model == MODEL
    counted = client.messages.count_tokens(model=MODEL, messages=SIMPLE["messages"]).input_tokens
    assert msg.usage.input_tokens == counted
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0
    assert srv.billed == Usage(counted, msg.usage.output_tokens, 0, 0)


def test_cache_write_then_read_for_the_same_prefix(srv):
    client = sdk(srv)
    system = [{"type": "text", "text": "You are careful. " * 50, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model=MODEL, max_tokens=50, system=system,
                                   messages=[{"role": "user", "content": "one"}])
    second = client.messages.create(model=MODEL, max_tokens=50, system=system,
                                    messages=[{"role": "user", "content": "two"}])
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    other_model = client.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system,
                                         messages=[{"role": "user", "content": "two"}])
    assert other_model.usage.cache_read_input_tokens == 0  # caches are per model
    total = sum(m.usage.input_tokens + m.usage.cache_creation_input_tokens + m.usage.cache_read_input_tokens
                for m in (first, second))
    assert srv.billed.prompt_tokens - (other_model.usage.input_tokens
                                       + other_model.usage.cache_creation_input_tokens) == total


def test_error_shapes(srv):
    status, _, body = raw_post(srv, "/v1/messages", SIMPLE)  # no key
    assert status == 401 and body == {"type": "error", "error": {"type": "authentication_error",
                                                                  "message": "x-api-key header is required"}}
    status, _, body = raw_post(srv, "/v1/nope", SIMPLE, {"x-api-key": KEY})
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, headers, body = raw_post(srv, "/v1/messages", {"model": MODEL, "messages": []}, {"x-api-key": KEY})
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "request-id" in {k.lower() for k in headers}


def test_validation_errors_via_the_sdk(srv):
    client = sdk(srv)
    with pytest.raises(anthropic.BadRequestError, match="alternate"):
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        client.messages.create(model=MODEL, max_tokens=10, messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
            {"role": "user", "content": "no result"}])
    with pytest.raises(anthropic.BadRequestError, match="role: must be"):
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)]}])


def test_a_required_key_is_checked(srv):
    with OfflineMessagesServer(api_key="right") as strict:
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(api_key="wrong", base_url=strict.base_url, max_retries=0).messages.create(**SIMPLE)
        ok = anthropic.Anthropic(api_key="right", base_url=strict.base_url, max_retries=0).messages.create(**SIMPLE)
        assert ok.stop_reason == "end_turn"


def test_faults_map_to_sdk_errors(srv):
    client = sdk(srv)
    srv.inject(rate_limit(retry_after=2), overloaded(), server_error(), bad_request("no such thing"))
    with pytest.raises(anthropic.RateLimitError) as rl:
        client.messages.create(**SIMPLE)
    assert rl.value.response.headers["retry-after"] == "2" and rl.value.type == "rate_limit_error"
    with pytest.raises(anthropic.APIStatusError) as ov:
        client.messages.create(**SIMPLE)
    assert ov.value.status_code == 529 and ov.value.type == "overloaded_error"
    with pytest.raises(anthropic.InternalServerError) as ise:
        client.messages.create(**SIMPLE)
    assert ise.value.status_code == 500 and ise.value.type == "api_error"
    with pytest.raises(anthropic.BadRequestError) as br:
        client.messages.create(**SIMPLE)
    assert br.value.api_message == "no such thing"
    assert client.messages.create(**SIMPLE).stop_reason == "end_turn"
    assert [r["status"] for r in srv.message_requests()] == [429, 529, 500, 400, 200]
    # faults do not bill
    again = client.messages.create(**SIMPLE)
    assert srv.billed.output_tokens == again.usage.output_tokens * 2


def test_faults_do_not_hit_count_tokens_unless_asked(srv):
    client = sdk(srv)
    srv.inject(overloaded())
    assert client.messages.count_tokens(model=MODEL, messages=SIMPLE["messages"]).input_tokens > 0
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(**SIMPLE)


def test_slow_and_latency(srv):
    client = sdk(srv)
    srv.inject(slow(0.5))
    t0 = time.monotonic()
    client.messages.create(**SIMPLE)
    assert time.monotonic() - t0 >= 0.5
    with OfflineMessagesServer(latency=0.3) as lagging:
        t0 = time.monotonic()
        sdk(lagging).messages.create(**SIMPLE)
        assert time.monotonic() - t0 >= 0.3


def test_scripted_model_and_usage_override():
    replies = [text_reply("first"), lambda req: text_reply(f"saw {len(req['messages'])} message(s)"),
               {"content": [{"type": "text", "text": "x"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 7, "output_tokens": 3}}]
    with OfflineMessagesServer(ScriptedModel(replies)) as server:
        client = sdk(server)
        assert client.messages.create(**SIMPLE).content[0].text == "first"
        assert client.messages.create(**SIMPLE).content[0].text == "saw 1 message(s)"
        third = client.messages.create(**SIMPLE)
        assert (third.usage.input_tokens, third.usage.output_tokens) == (7, 3)
        assert "no more" in client.messages.create(**SIMPLE).content[0].text


def test_output_is_cut_at_max_tokens():
    with OfflineMessagesServer(ScriptedModel([text_reply("word " * 500)])) as server:
        msg = sdk(server).messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
        assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 10


def test_request_log_redacts_the_key(srv):
    client = sdk(srv)
    client.messages.create(**SIMPLE)
    client.messages.count_tokens(model=MODEL, messages=SIMPLE["messages"])
    raw_post(srv, "/v1/messages", SIMPLE, {"x-api-key": KEY})
    dump = json.dumps(srv.requests)
    assert KEY not in dump and "<redacted>" in dump
    assert len(srv.requests) == 3 and srv.requests[0]["body"]["model"] == MODEL


def test_parse_shard_block():
    text = 'hello <shard>{"bad": </shard> and\n<shard>\n{"shard_id": "s1", "task": "todo", "files": ["a.py"]}\n</shard>'
    assert parse_shard_block(text) == {"shard_id": "s1", "task": "todo", "files": ["a.py"]}
    assert parse_shard_block("no block") is None


def _run_task(server, repo: Path, task: str, files: list[str]):
    client = sdk(server)
    block = json.dumps({"shard_id": f"{task}-1", "task": task, "files": files})
    return ApiRunner(client, MODEL).run(repo, f"Do the {task} task.\n<shard>\n{block}\n</shard>")


def test_rule_based_docstrings_keep_code_valid(srv, repo_factory):
    source = ("#!/usr/bin/env python\n"
              "import os\n\n\n"
              "class Greeter:\n"
              "    # a comment first\n"
              "    def hello(self, name):\n"
              "        return f'hi {name}'\n\n"
              "    def documented(self):\n"
              "        \"\"\"Already.\"\"\"\n"
              "        return 1\n\n\n"
              "async def fetch(\n"
              "    url,\n"
              "):\n"
              "\treturn url\n\n\n"
              "def one_liner(): return 2\n")
    repo = repo_factory("docs", {"pkg/mod.py": source, "README.md": "x\n"})
    result = _run_task(srv, repo, "docstrings", ["pkg/mod.py"])
    assert result.stop_reason == "end_turn"
    new = (repo / "pkg/mod.py").read_text()
    tree = ast.parse(new)
    assert ast.get_docstring(tree) == "Module mod."
    assert new.startswith("#!/usr/bin/env python\n")
    docs = {n.name: ast.get_docstring(n) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    assert docs == {"Greeter": "Class Greeter.", "hello": "Function hello.", "documented": "Already.",
                    "fetch": "Function fetch.", "one_liner": "Function one_liner."}  # one-line bodies are split
    assert "def one_liner():\n    \"\"\"Function one_liner.\"\"\"\n    return 2\n" in new


def test_rule_based_tests_task_writes_passing_tests(srv, git_repo):
    result = _run_task(srv, git_repo, "tests", ["src/app.py", "src/util.py"])
    assert result.stop_reason == "end_turn"
    assert result.files_written == ["tests/test_app.py", "tests/test_util.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=git_repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


@pytest.mark.parametrize("task", ["lint", "custom"])
def test_rule_based_view_only_tasks_change_nothing(srv, git_repo, task):
    before = (git_repo / "src/app.py").read_text()
    result = _run_task(srv, git_repo, task, ["src/app.py"])
    assert result.stop_reason == "end_turn" and result.files_written == []
    assert (git_repo / "src/app.py").read_text() == before
    assert result.turns == 2


def test_no_shard_block_just_ends(srv, git_repo):
    result = ApiRunner(sdk(srv), MODEL).run(git_repo, "no block here")
    assert result.stop_reason == "end_turn" and "No <shard> block" in result.final_text


def test_command_line_serves_until_sigterm(tmp_path):
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "airflow_provider_worktree.testing", "--port", "0",
                             "--port-file", str(port_file), "--latency", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.05)
        port = int(port_file.read_text())
        client = anthropic.Anthropic(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0)
        assert client.messages.create(**SIMPLE).stop_reason == "end_turn"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert out.strip() == f"http://127.0.0.1:{port}"
    assert "TEST DOUBLE" in err


def test_help_says_it_is_a_test_double():
    out = subprocess.run([sys.executable, "-m", "airflow_provider_worktree.testing", "--help"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}).stdout
    assert "TEST DOUBLE" in out and "API key" in out
    import airflow_provider_worktree.testing as testing

    assert "TEST DOUBLE" in testing.__doc__ and "API key" in testing.__doc__
