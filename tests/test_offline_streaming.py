"""Streaming and beta shapes of the offline Messages API TEST DOUBLE, through the real anthropic SDK over HTTP."""

from __future__ import annotations

import json
import urllib.request

import anthropic
import pytest

from airflow_provider_worktree.testing import (
    OfflineMessagesServer,
    ScriptedModel,
    bad_request,
    mid_stream_error,
    overloaded,
    text_reply,
)

KEY = "sk-ant-offline-streaming"
MODEL = "claude-sonnet-4-6"
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 6  # several text_delta events
TOOL_INPUT = {"command": "str_replace", "path": "src/app.py", "old_str": "x = 1  # TODO: fix \"quoted\" ünïcode",
              "new_str": "x = 1\n", "nested": {"list": [1, 2, {"deep": True}], "none": None}}
THINKING = {"type": "thinking", "thinking": "Let me consider the file before editing it. " * 3,
            "signature": "sig-abc123"}


def scripted(*replies):
    """A server whose model answers the same scripted reply to every request (so a stream and a create agree)."""
    return OfflineMessagesServer(ScriptedModel([lambda _req, r=r: r for r in replies] * 4))


def tool_reply():
    return {"content": [THINKING, {"type": "text", "text": LONG_TEXT},
                        {"type": "tool_use", "id": "toolu_stream_1", "name": "str_replace_based_edit_tool",
                         "input": TOOL_INPUT}], "stop_reason": "tool_use"}


def client(srv) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)


def blocks(message) -> list[dict]:
    """Content blocks as dicts (the stream helper's ParsedTextBlock adds a ``parsed_output`` field)."""
    return [{k: v for k, v in b.model_dump().items() if k != "parsed_output"} for b in message.content]


REQ = {"model": MODEL, "max_tokens": 2000, "messages": [{"role": "user", "content": "Fix the TODO in src/app.py"}]}


def test_create_stream_true_sends_the_api_event_sequence():
    with scripted(tool_reply()) as srv:
        events = list(client(srv).messages.create(**REQ, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.content == [] and events[0].message.stop_reason is None
    assert events[0].message.usage.input_tokens > 0
    # Each block: start, one or more deltas, stop; indexes in order.
    starts = [e for e in events if e.type == "content_block_start"]
    assert [(e.index, e.content_block.type) for e in starts] == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    assert [e.index for e in events if e.type == "content_block_stop"] == [0, 1, 2]
    deltas = [e for e in events if e.type == "content_block_delta"]
    by_kind = {}
    for e in deltas:
        by_kind.setdefault((e.index, e.delta.type), []).append(e.delta)
    assert set(by_kind) == {(0, "thinking_delta"), (0, "signature_delta"), (1, "text_delta"), (2, "input_json_delta")}
    assert "".join(d.thinking for d in by_kind[(0, "thinking_delta")]) == THINKING["thinking"]
    assert by_kind[(0, "signature_delta")][0].signature == "sig-abc123"
    assert len(by_kind[(1, "text_delta")]) > 3 and "".join(d.text for d in by_kind[(1, "text_delta")]) == LONG_TEXT
    partial = [d.partial_json for d in by_kind[(2, "input_json_delta")]]
    assert len(partial) > 3 and json.loads("".join(partial)) == TOOL_INPUT
    assert starts[2].content_block.input == {} and starts[2].content_block.id == "toolu_stream_1"
    # The block events sit between message_start and message_delta, each block's events contiguous.
    first_block = types.index("content_block_start")
    last_block = len(types) - 1 - types[::-1].index("content_block_stop")
    assert all(t in ("content_block_start", "content_block_delta", "content_block_stop")
               for t in types[first_block:last_block + 1])
    assert types[:first_block] == ["message_start"]  # the SDK drops the ping that follows (see the wire test)
    final = events[-2]
    assert final.delta.stop_reason == "tool_use" and final.usage.output_tokens > 1


def test_raw_sse_wire_format_on_the_beta_path():
    """What the JS SDK inside the Claude Code CLI sends: ``?beta=true`` and an ``anthropic-beta`` header."""
    with scripted(text_reply("hello")) as srv:
        req = urllib.request.Request(srv.base_url + "/v1/messages?beta=true",
                                     data=json.dumps({**REQ, "stream": True}).encode(), method="POST",
                                     headers={"x-api-key": KEY, "content-type": "application/json",
                                              "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            raw = resp.read().decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    names = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name, data = event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        names.append(name)
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]


def test_stream_helper_final_message_equals_the_non_streaming_answer():
    with scripted(tool_reply()) as srv:
        c = client(srv)
        plain = c.messages.create(**REQ)
        with c.messages.stream(**REQ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == LONG_TEXT
    assert blocks(final) == blocks(plain)  # thinking, text and the tool_use input reassembled from the deltas
    assert final.content[2].input == TOOL_INPUT
    assert (final.stop_reason, final.model, final.role) == (plain.stop_reason, plain.model, plain.role)
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.id != plain.id


def test_streamed_max_tokens_truncation_matches_create():
    with scripted(text_reply("word " * 500)) as srv:
        c = client(srv)
        plain = c.messages.create(**{**REQ, "max_tokens": 20})
        with c.messages.stream(**{**REQ, "max_tokens": 20}) as stream:
            final = stream.get_final_message()
    assert plain.stop_reason == final.stop_reason == "max_tokens"
    assert blocks(final) == blocks(plain) and final.usage.output_tokens == 20


def test_beta_client_streaming_headers_and_thinking_request():
    with scripted(tool_reply()) as srv:
        c = client(srv)
        msg = c.beta.messages.create(**REQ, betas=["interleaved-thinking-2025-05-14", "context-management-2025-06-27"],
                                     thinking={"type": "enabled", "budget_tokens": 1024},
                                     metadata={"user_id": "shard-7"})
        with c.beta.messages.stream(**REQ, betas=["interleaved-thinking-2025-05-14"]) as stream:
            final = stream.get_final_message()
        counted = c.beta.messages.count_tokens(model=MODEL, messages=REQ["messages"],
                                               betas=["token-counting-2024-11-01"])
        logged = list(srv.requests)
    assert msg.content[2].input == TOOL_INPUT and blocks(final) == blocks(msg)
    assert counted.input_tokens == msg.usage.input_tokens
    assert [r["path"].split("?")[0] for r in logged] == ["/v1/messages"] * 2 + ["/v1/messages/count_tokens"]
    assert logged[0]["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    assert logged[0]["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_models_retrieve_and_list():
    with scripted(text_reply("x")) as srv:
        c = client(srv)
        model = c.models.retrieve("claude-haiku-4-5")
        listed = c.models.list()
    assert model.id == "claude-haiku-4-5" and model.type == "model" and "test double" in model.display_name
    assert [m.id for m in listed.data] == ["claude-offline-test-double"]


def test_mid_conversation_system_message_thinking_blocks_and_merged_turns_are_accepted():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>date</system-reminder>"}]},
        {"role": "user", "content": "Fix it"},  # two user messages in a row are one turn, as in the API
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Reading first.", "signature": "sig-1"},
            {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {"file_path": "/w/a.py"}}]},
        {"role": "system", "content": "The user changed the working directory."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "1\tx = 1",
                                      "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
    ]
    with scripted(text_reply("done")) as srv:
        c = client(srv)
        with c.beta.messages.stream(model=MODEL, max_tokens=100, messages=history,
                                    thinking={"type": "adaptive"}) as stream:
            final = stream.get_final_message()
        counted = c.beta.messages.count_tokens(model=MODEL, messages=history)
        # A tool_use still needs its tool_result, system message or not.
        with pytest.raises(anthropic.BadRequestError, match="tool_result"):
            c.messages.create(model=MODEL, max_tokens=10, messages=history[:4] + [{"role": "user", "content": "hm"}])
    assert final.content[0].text == "done" and counted.input_tokens > 0


def test_errors_before_the_stream_starts_keep_their_status():
    with scripted(text_reply("x")) as srv:
        c = client(srv)
        srv.inject(bad_request("max_tokens: too large for the offline double"))
        with pytest.raises(anthropic.BadRequestError, match="too large") as err:
            c.messages.create(**REQ, stream=True)
        assert err.value.status_code == 400
        srv.inject(overloaded())
        with pytest.raises(anthropic.InternalServerError) as err:
            with c.messages.stream(**REQ) as stream:
                stream.get_final_message()
        assert err.value.status_code == 529


def test_an_error_event_in_the_middle_of_a_stream():
    with scripted(tool_reply()) as srv:
        c = client(srv)
        srv.inject(mid_stream_error(after_events=5))
        seen = []
        with pytest.raises(anthropic.APIStatusError, match="Overloaded") as err:
            for event in c.messages.create(**REQ, stream=True):
                seen.append(event.type)
        # five events on the wire (the SDK hides the ping), then the error event ends the stream
        assert seen == ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]
        assert err.value.body["error"]["type"] == "overloaded_error"
        # A non-streaming request with the same fault gets the matching status instead.
        srv.inject(mid_stream_error())
        with pytest.raises(anthropic.InternalServerError) as status_err:
            c.messages.create(**REQ)
        assert status_err.value.status_code == 529
        # And the next stream is whole again.
        with c.messages.stream(**REQ) as stream:
            assert stream.get_final_message().content[2].input == TOOL_INPUT


def test_sdk_retries_a_stream_that_failed_before_starting():
    with scripted(text_reply("after retry")) as srv:
        srv.inject(overloaded())
        c = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=2)
        with c.messages.stream(**REQ) as stream:
            assert stream.get_final_text() == "after retry"
        assert [r["status"] for r in srv.message_requests()] == [529, 200]
