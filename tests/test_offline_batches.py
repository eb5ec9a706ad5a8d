"""The offline test double's Message Batches API, through the real anthropic SDK over real HTTP, and the rule-based
model's one-response answers to batch requests (applied to real files with the real TextEditorTool)."""

from __future__ import annotations

import ast
import json
import multiprocessing as mp
import time
import traceback
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import anthropic
import pytest

from airflow_provider_worktree.core.runners.batch import ONE_RESPONSE_INSTRUCTION
from airflow_provider_worktree.core.runners import Usage
from airflow_provider_worktree.core.sandbox.editor import TextEditorTool
from airflow_provider_worktree.core.tasks.metrics import _docstring_report, count_todo_markers
from airflow_provider_worktree.core.tasks.prompt import render_shard_prompt
from airflow_provider_worktree.testing import (
    Fault,
    OfflineMessagesServer,
    RuleBasedModel,
    overloaded,
    server_error,
    slow,
)
from airflow_provider_worktree.testing.model import MAX_EDITS_PER_TURN
from airflow_provider_worktree.testing.toolsets import EDITOR

KEY = "sk-offline-test"
MODEL = "claude-sonnet-4-6"
SPAWN = mp.get_context("spawn")


def sdk(server: OfflineMessagesServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)


def params(text: str = "Hello", **extra) -> dict:
    return {"model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": text}], **extra}


def entries(*custom_ids: str, **extra) -> list[dict]:
    return [{"custom_id": cid, "params": params(f"hello from {cid}", **extra)} for cid in custom_ids]


def raw(server, method: str, path: str, body: object = None) -> tuple[int, dict, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.base_url + path, data=data, method=method,
                                 headers={"content-type": "application/json", "x-api-key": KEY})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def results_of(client, batch_id: str) -> dict[str, object]:
    return {r.custom_id: r.result for r in client.messages.batches.results(batch_id)}


@pytest.fixture
def srv():
    with OfflineMessagesServer() as server:
        yield server


# -- create, retrieve, results ---------------------------------------------------------------------------------------
def test_create_retrieve_and_results_have_the_api_shapes(srv):
    client = sdk(srv)
    bad = {"custom_id": "no-max-tokens", "params": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}}
    batch = client.messages.batches.create(requests=[*entries("ok-1"), bad])
    assert batch.id.startswith("msgbatch_offline_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.model_dump() == {"processing": 2, "succeeded": 0, "errored": 0, "canceled": 0,
                                                 "expired": 0}
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    assert batch.ended_at is None and batch.archived_at is None and batch.cancel_initiated_at is None
    assert batch.results_url is None
    assert srv.batch_creates == 1

    status, _, body = raw(srv, "GET", f"/v1/messages/batches/{batch.id}")  # batch_delay 0: due now, ends here
    assert status == 200
    doc = json.loads(body)
    assert doc["created_at"].endswith("Z") and doc["ended_at"].endswith("Z") and doc["expires_at"].endswith("Z")
    assert doc["results_url"] == f"{srv.base_url}/v1/messages/batches/{batch.id}/results"

    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0,
                                                 "expired": 0}
    results = results_of(client, batch.id)
    assert set(results) == {"ok-1", "no-max-tokens"}
    ok = results["ok-1"]
    assert ok.type == "succeeded" and ok.message.type == "message" and ok.message.role == "assistant"
    assert ok.message.id.startswith("msg_offline_") and ok.message.model == MODEL
    assert ok.message.stop_reason == "end_turn" and ok.message.usage.output_tokens > 0
    err = results["no-max-tokens"]
    assert err.type == "errored" and err.error.type == "error"
    assert err.error.error.type == "invalid_request_error" and "max_tokens" in err.error.error.message

    status, headers, body = raw(srv, "GET", f"/v1/messages/batches/{batch.id}/results")
    assert status == 200 and headers["content-type"] == "application/binary"
    lines = body.decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == ["ok-1", "no-max-tokens"] and body.endswith(b"\n")


def test_batch_entries_are_billed_apart_from_interactive_messages(srv):
    client = sdk(srv)
    interactive = client.messages.create(**params("hello from a"))
    assert srv.billed == Usage.from_api(interactive.usage)
    batch = client.messages.batches.create(requests=entries("a", "b"))
    results = results_of(client, batch.id)
    total = Usage()
    for result in results.values():
        total.add(Usage.from_api(result.message.usage))
    assert srv.batch_billed == total and total.output_tokens > 0
    assert srv.billed == Usage.from_api(interactive.usage)  # unchanged by the batch
    # The same request as a batch entry costs what it costs interactively (same model, same accounting).
    assert results["a"].message.usage.input_tokens == interactive.usage.input_tokens
    assert results["a"].message.content[0].text == interactive.content[0].text
    assert srv.batch_bills == {"a": 1, "b": 1} and srv.batch_processed == {"a": 1, "b": 1}
    # Reading again processes nothing again.
    assert results_of(client, batch.id)["b"].message.id == results["b"].message.id
    client.messages.batches.retrieve(batch.id)
    assert srv.batch_bills == {"a": 1, "b": 1}


# -- list, cancel, delete --------------------------------------------------------------------------------------------
def test_list_is_newest_first_and_paginates(srv):
    client = sdk(srv)
    ids = [client.messages.batches.create(requests=entries(f"r{i}")).id for i in range(3)]
    first = client.messages.batches.list(limit=1)
    assert [b.id for b in first.data] == [ids[2]] and first.has_more is True
    assert first.first_id == first.last_id == ids[2]
    assert [b.id for b in client.messages.batches.list(limit=1)] == ids[::-1]  # auto-pagination over 3 pages
    assert [b.id for b in client.messages.batches.list()] == ids[::-1]
    last = client.messages.batches.list(limit=2, after_id=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and last.has_more is False
    back = client.messages.batches.list(limit=1, before_id=ids[0])
    assert [b.id for b in back.data] == [ids[1]] and back.has_more is True
    assert [b.id for b in client.messages.batches.list(limit=1, before_id=ids[0])] == [ids[1], ids[2]]
    page_requests = [r for r in srv.requests if r["path"].startswith("/v1/messages/batches?")]
    assert any("after_id=" in r["path"] for r in page_requests) and any("before_id=" in r["path"] for r in page_requests)
    for bad in (0, 1001):
        with pytest.raises(anthropic.BadRequestError, match="limit"):
            client.messages.batches.list(limit=bad)


def test_cancel_then_delete(srv):
    srv.batch_delay = 3600
    client = sdk(srv)
    batch = client.messages.batches.create(requests=entries("c1", "c2"))
    running = client.messages.batches.create(requests=entries("r1"))
    with pytest.raises(anthropic.BadRequestError, match="cannot be deleted while it is in_progress"):
        client.messages.batches.delete(batch.id)
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 2
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert {cid: r.type for cid, r in results_of(client, batch.id).items()} == {"c1": "canceled", "c2": "canceled"}
    assert srv.batch_processed == {} and srv.batch_bills == {} and srv.batch_billed == Usage()
    assert client.messages.batches.cancel(batch.id).processing_status == "ended"  # nothing left to cancel

    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert raw(srv, "GET", f"/v1/messages/batches/{batch.id}/results")[0] == 404
    assert [b.id for b in client.messages.batches.list()] == [running.id]
    assert client.messages.batches.retrieve(running.id).processing_status == "in_progress"


# -- validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("requests,match", [
    ([], "at least one request"),
    (entries("same", "other", "same"), "'same' is used more than once"),
    (entries("has space"), "custom_id"),
    (entries("x" * 65), "custom_id"),
    (entries("newline\n"), "custom_id"),
    ([{"custom_id": "p"}], "params"),
])
def test_invalid_batches_are_refused(srv, requests, match):
    with pytest.raises(anthropic.BadRequestError, match=match) as info:
        sdk(srv).messages.batches.create(requests=requests)
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert srv.batch_creates == 0 and srv.batch_ids() == []


def test_batch_limits_and_unknown_ids():
    with OfflineMessagesServer(max_batch_requests=2, max_batch_bytes=2000) as srv:
        client = sdk(srv)
        with pytest.raises(anthropic.BadRequestError, match="at most 2 requests"):
            client.messages.batches.create(requests=entries("a", "b", "c"))
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.batches.create(requests=[{"custom_id": "big", "params": params("x" * 2000)}])
        assert info.value.status_code == 413 and info.value.body["error"]["type"] == "request_too_large"
        assert client.messages.batches.create(requests=entries("a", "b")).processing_status == "in_progress"
        assert srv.batch_creates == 1
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve("msgbatch_offline_nope")
        for method, path in (("POST", "/v1/messages/batches/msgbatch_offline_nope/cancel"),
                             ("DELETE", "/v1/messages/batches/msgbatch_offline_nope"),
                             ("GET", "/v1/messages/batches/msgbatch_offline_nope/results"),
                             ("GET", f"/v1/messages/batches/{srv.batch_ids()[0]}/nothing"),
                             ("PUT", "/v1/messages/batches")):
            status, _, body = raw(srv, method, path)
            assert status in (404, 501) and (status == 501 or json.loads(body)["error"]["type"] == "not_found_error")


# -- timing ------------------------------------------------------------------------------------------------------------
def test_batch_delay_then_finish_batches():
    with OfflineMessagesServer(batch_delay=3600) as srv:
        client = sdk(srv)
        batch = client.messages.batches.create(requests=entries("d1", "d2"))
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        assert [b.processing_status for b in client.messages.batches.list()] == ["in_progress"]
        status, _, body = raw(srv, "GET", f"/v1/messages/batches/{batch.id}/results")
        assert status == 404 and "no results yet" in json.loads(body)["error"]["message"]
        with pytest.raises(anthropic.AnthropicError, match="results_url"):
            list(client.messages.batches.results(batch.id))
        assert srv.batch_processed == {}
        assert srv.finish_batches() == [batch.id]
        assert srv.finish_batches() == []
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.request_counts.succeeded == 2
        assert srv.batch_bills == {"d1": 1, "d2": 1}


def test_a_short_delay_ends_the_batch_on_a_later_poll():
    with OfflineMessagesServer(batch_delay=0.2) as srv:
        client = sdk(srv)
        batch = client.messages.batches.create(requests=entries("p1"))
        polls = 0
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            polls += 1
            assert polls < 600, "the batch did not end within a generous bound"
            time.sleep(0.05)
        assert results_of(client, batch.id)["p1"].type == "succeeded"
        assert srv.batch_bills == {"p1": 1}


def test_expire_batch(srv):
    srv.batch_delay = 3600
    client = sdk(srv)
    batch = client.messages.batches.create(requests=entries("x1", "x2"))
    srv.expire_batch(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.expired == 2
    assert {r.type for r in results_of(client, batch.id).values()} == {"expired"}
    assert srv.batch_processed == {}
    with pytest.raises(KeyError, match="msgbatch_offline_nope"):
        srv.expire_batch("msgbatch_offline_nope")


# -- per-entry outcomes ------------------------------------------------------------------------------------------------
def test_per_entry_faults_and_invalid_entries(srv):
    client = sdk(srv)
    srv.batch_entry_faults = {"busy": overloaded(), "broken": server_error(), "late": "expired", "gone": "canceled",
                              "slow": slow(0.01)}
    reqs = entries("fine", "busy", "broken", "late", "gone", "slow")
    reqs.append({"custom_id": "streamed", "params": params("s", stream=True)})
    reqs.append({"custom_id": "orphan-result", "params": {"model": MODEL, "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_none", "content": "x"}]}]}})
    batch = client.messages.batches.create(requests=reqs)
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert counts.model_dump() == {"processing": 0, "succeeded": 2, "errored": 4, "canceled": 1, "expired": 1}
    results = results_of(client, batch.id)
    assert results["fine"].type == results["slow"].type == "succeeded"
    assert results["busy"].error.error.type == "overloaded_error" and results["busy"].error.error.message == "Overloaded"
    assert results["broken"].error.error.type == "api_error"
    assert results["late"].type == "expired" and results["gone"].type == "canceled"
    assert results["streamed"].error.error.type == "invalid_request_error"
    assert "stream" in results["streamed"].error.error.message
    assert results["orphan-result"].error.error.type == "invalid_request_error"
    assert srv.batch_bills == {"fine": 1, "slow": 1}  # only succeeded entries are billed
    assert srv.batch_processed == dict.fromkeys([r["custom_id"] for r in reqs], 1)


def test_per_entry_faults_as_a_callable_and_a_scripted_reply(srv):
    client = sdk(srv)
    canned = Fault("canned", reply={"content": [{"type": "text", "text": "canned answer"}], "stop_reason": "end_turn"})
    srv.batch_entry_faults = lambda cid: {"odd-1": "expired", "odd-3": canned}.get(cid)
    batch = client.messages.batches.create(requests=entries("odd-1", "even-2", "odd-3"))
    results = results_of(client, batch.id)
    assert results["odd-1"].type == "expired" and results["even-2"].type == "succeeded"
    assert results["odd-3"].message.content[0].text == "canned answer"
    srv.batch_entry_faults = {"bad": "exploded"}
    second = client.messages.batches.create(requests=entries("bad"))
    with pytest.raises(anthropic.InternalServerError, match="batch_entry_faults"):
        client.messages.batches.retrieve(second.id)
    assert "bad" not in srv.batch_processed


def test_batch_api_faults_beta_paths_and_the_request_log(tmp_path):
    log_file = tmp_path / "requests.jsonl"
    with OfflineMessagesServer(request_log=log_file) as srv:
        client = sdk(srv)
        srv.inject(Fault("overloaded", 529, "overloaded_error", "Overloaded", endpoint="batches"))
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.batches.list()
        assert info.value.status_code == 529
        batch = client.beta.messages.batches.create(requests=entries("beta-1"))
        assert client.beta.messages.batches.retrieve(batch.id).processing_status == "ended"
        assert [r.result.type for r in client.beta.messages.batches.results(batch.id)] == ["succeeded"]
        assert [b.id for b in client.beta.messages.batches.list()] == [batch.id]
        # The "?beta=true" shapes (older SDKs' beta client) select the same endpoints.
        status, _, body = raw(srv, "POST", "/v1/messages/batches?beta=true", {"requests": entries("beta-2")})
        beta_id = json.loads(body)["id"]
        assert status == 200 and raw(srv, "GET", f"/v1/messages/batches/{beta_id}?beta=true")[0] == 200
        status, _, body = raw(srv, "GET", f"/v1/messages/batches/{beta_id}/results?beta=true")
        assert status == 200 and json.loads(body)["result"]["type"] == "succeeded"
        paths = [(r["method"], r["path"], r["status"]) for r in srv.requests]
        assert paths[0] == ("GET", "/v1/messages/batches", 529)
        assert ("GET", f"/v1/messages/batches/{batch.id}/results", 200) in paths
        assert ("GET", f"/v1/messages/batches/{beta_id}/results?beta=true", 200) in paths
        logged = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert [(e["method"], e["path"], e["status"]) for e in logged] == paths
        assert KEY not in log_file.read_text() and all("<redacted>" in e["headers"].values() for e in logged)


# -- each entry processed once, with pollers in two processes ---------------------------------------------------------
def _poll_and_read(base_url: str, batch_id: str, start, out) -> None:
    try:
        client = anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0)
        start.wait(60)
        for _ in range(2000):
            if client.messages.batches.retrieve(batch_id).processing_status == "ended":
                break
        ids = {r.custom_id: r.result.message.id for r in client.messages.batches.results(batch_id)}
        out.put(("ok", ids))
    except BaseException:  # noqa: BLE001 - reported to the parent
        out.put(("error", traceback.format_exc()))


def test_each_entry_is_processed_once_under_concurrent_polling(srv):
    client = sdk(srv)
    # Processing takes a while (a short delay per entry), so the second poller arrives while the first processes.
    srv.batch_entry_faults = lambda cid: slow(0.02)
    custom_ids = [f"entry-{i}" for i in range(15)]
    batch = client.messages.batches.create(requests=entries(*custom_ids))
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_poll_and_read, args=(srv.base_url, batch.id, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    reports = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert [kind for kind, _ in reports] == ["ok", "ok"], reports
    assert reports[0][1] == reports[1][1] and set(reports[0][1]) == set(custom_ids)  # the same messages
    assert srv.batch_bills == dict.fromkeys(custom_ids, 1)
    assert srv.batch_processed == dict.fromkeys(custom_ids, 1)
    assert srv.batch_billed.output_tokens == sum(
        r.result.message.usage.output_tokens for r in client.messages.batches.results(batch.id))


# -- the rule-based model answers a batch request in one response -------------------------------------------------------
MODULE = '''"""Shapes."""
import math


def area(r):
    return math.pi * r * r


class Circle:
    def __init__(self, r):
        self.r = r

    def area(self):  # TODO: cache this
        return area(self.r)

    @property
    def diameter(self):
        return 2 * self.r


async def fetch(x): return x
'''


def batch_request(root: Path, task: str, files: list[str], max_tokens: int = 8000) -> dict:
    """A batch request as core/batch.py builds it: the shard prompt, one view per file, the views' results and the
    one-response instruction."""
    tool = TextEditorTool(root)
    views = [{"type": "tool_use", "id": f"toolu_batchview_{i}", "name": EDITOR, "input": {"command": "view", "path": f}}
             for i, f in enumerate(files)]
    shown = []
    for view in views:
        result = tool.execute(view["input"])
        shown.append({"type": "tool_result", "tool_use_id": view["id"], "content": result.content,
                      **({"is_error": True} if result.is_error else {})})
    prompt = render_shard_prompt(task, {"shard_id": f"{task}-1", "files": files})
    return {"model": MODEL, "max_tokens": max_tokens, "tools": [tool.definition()], "messages": [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": views},
        {"role": "user", "content": [*shown, {"type": "text", "text": ONE_RESPONSE_INSTRUCTION}]}]}


def run_batch(srv, requests: dict[str, dict]):
    client = sdk(srv)
    batch = client.messages.batches.create(requests=[{"custom_id": k, "params": v} for k, v in requests.items()])
    srv.finish_batches()
    return {k: r.message for k, r in results_of(client, batch.id).items()}


def apply_edits(root: Path, message) -> list[str]:
    tool = TextEditorTool(root)
    uses = [b for b in message.content if b.type == "tool_use"]
    return [result.content for b in uses if (result := tool.execute(b.input)).is_error]


def test_one_response_docstrings_and_todo_on_real_files(srv, tmp_path):
    (tmp_path / "m.py").write_text(MODULE)
    (tmp_path / "notes.md").write_text("# Notes\n<!-- TODO: write them -->\nplain text TODO is not a marker\n")
    assert _docstring_report(MODULE)[0] == 5
    messages = run_batch(srv, {"doc": batch_request(tmp_path, "docstrings", ["m.py"]),
                               "todo": batch_request(tmp_path, "todo", ["m.py", "notes.md"])})
    doc = messages["doc"]
    assert doc.stop_reason == "tool_use"
    assert all(b.input["command"] in ("str_replace", "insert") for b in doc.content if b.type == "tool_use")
    assert apply_edits(tmp_path, doc) == []
    text = (tmp_path / "m.py").read_text()
    ast.parse(text)
    assert _docstring_report(text)[0] == 0
    assert '"""Function fetch."""' in text and '"""Class Circle."""' in text
    # The todo entry saw the file as it was when the batch was built (before the docstrings): its edits still apply.
    todo = messages["todo"]
    assert todo.stop_reason == "tool_use" and apply_edits(tmp_path, todo) == []
    assert count_todo_markers((tmp_path / "m.py").read_text()) == 0
    assert count_todo_markers((tmp_path / "notes.md").read_text()) == 0
    ast.parse((tmp_path / "m.py").read_text())
    assert srv.billed == Usage() and srv.batch_bills == {"doc": 1, "todo": 1}


def test_one_response_makes_every_edit_at_once(tmp_path):
    n = MAX_EDITS_PER_TURN + 15
    source = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(n))
    (tmp_path / "big.py").write_text(source)
    reply = RuleBasedModel().reply(batch_request(tmp_path, "docstrings", ["big.py"], max_tokens=32000))
    uses = [b for b in reply["content"] if b["type"] == "tool_use"]
    assert reply["stop_reason"] == "tool_use" and len(uses) == n + 1  # every function and the module
    assert not any(b["input"]["command"] == "view" for b in uses)
    tool = TextEditorTool(tmp_path)
    assert [r.content for b in uses if (r := tool.execute(b["input"])).is_error] == []
    assert _docstring_report((tmp_path / "big.py").read_text())[0] == 0
    # The same conversation without the instruction is an interactive turn: bounded by MAX_EDITS_PER_TURN.
    (tmp_path / "big.py").write_text(source)
    interactive = batch_request(tmp_path, "docstrings", ["big.py"], max_tokens=32000)
    interactive["messages"][-1]["content"] = interactive["messages"][-1]["content"][:-1]
    turn = RuleBasedModel().reply(interactive)
    assert len([b for b in turn["content"] if b["type"] == "tool_use"]) == MAX_EDITS_PER_TURN


def test_one_response_within_max_tokens_counts_what_is_left_out(srv, tmp_path):
    source = "".join(f"def g{i}(x):\n    return x * {i}\n\n\n" for i in range(40))
    (tmp_path / "g.py").write_text(source)
    message = run_batch(srv, {"small": batch_request(tmp_path, "docstrings", ["g.py"], max_tokens=1200)})["small"]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens <= 1200
    uses = [b for b in message.content if b.type == "tool_use"]
    assert 0 < len(uses) < 41
    assert f"{41 - len(uses)} more did not fit max_tokens" in message.content[0].text
    assert apply_edits(tmp_path, message) == []
    text = (tmp_path / "g.py").read_text()
    ast.parse(text)
    assert _docstring_report(text)[0] == 41 - len(uses)


def test_one_response_tests_task_and_nothing_to_do(srv, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "calc.py").write_text('"""Calc."""\n\n\ndef add(a, b):\n    """Add."""\n    return a + b\n')
    messages = run_batch(srv, {"tests": batch_request(tmp_path, "tests", ["pkg/calc.py"]),
                               "done": batch_request(tmp_path, "docstrings", ["pkg/calc.py"])})
    made = messages["tests"]
    assert made.stop_reason == "tool_use"
    assert [(b.input["command"], b.input["path"]) for b in made.content if b.type == "tool_use"] == [
        ("create", "tests/test_calc.py")]
    assert apply_edits(tmp_path, made) == []
    ast.parse((tmp_path / "tests" / "test_calc.py").read_text())
    done = messages["done"]
    assert done.stop_reason == "end_turn" and [b.type for b in done.content] == ["text"]
    assert "0 edit(s)" in done.content[0].text and "test double" in done.content[0].text
