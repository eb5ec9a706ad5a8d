"""A finished Message as the Messages API streams it: server-sent events in the API's sequence
(``message_start``, ``ping``, ``content_block_start``/``content_block_delta``/``content_block_stop`` for text,
tool_use and thinking blocks, ``message_delta`` with the stop reason and usage, ``message_stop``), or broken off
by an ``error`` event after a number of events (an injected mid-stream error)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

CHUNK = 24  # characters per delta: the real API sends a few tokens per event


def _pieces(text: str, size: int = CHUNK) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i: i + size]


class EventStream:
    """A finished message as the API's server-sent events; ``error`` = (after how many events, the error event)."""

    def __init__(self, message: dict[str, Any], error: tuple[int, dict[str, Any]] | None = None) -> None:
        self.message, self.error = message, error

    def encoded(self) -> Iterator[bytes]:
        """The events in the ``text/event-stream`` format, one ``event:``/``data:`` record each."""
        for name, event in self.events():
            yield f"event: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode("utf-8")

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        sent = 0
        for name, data in self._all_events():
            if self.error is not None and sent >= self.error[0]:
                yield "error", self.error[1]
                return
            yield name, data
            sent += 1

    def _all_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        msg = self.message
        usage = dict(msg["usage"])
        start_usage = {**usage, "output_tokens": min(1, usage.get("output_tokens", 1))}
        yield "message_start", {"type": "message_start", "message": {
            **msg, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}
        yield "ping", {"type": "ping"}
        for index, block in enumerate(msg["content"]):
            yield from self._block_events(index, block)
        yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"],
                                                                   "stop_sequence": msg.get("stop_sequence")},
                                "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    @staticmethod
    def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        kind = block.get("type")

        def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

        if kind == "text":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}}
            for piece in _pieces(str(block.get("text", ""))):
                yield delta({"type": "text_delta", "text": piece})
        elif kind in ("tool_use", "server_tool_use"):
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {**block, "input": {}}}
            for piece in _pieces(json.dumps(block.get("input", {}), ensure_ascii=False)):
                yield delta({"type": "input_json_delta", "partial_json": piece})
        elif kind == "thinking":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
            for piece in _pieces(str(block.get("thinking", ""))):
                yield delta({"type": "thinking_delta", "thinking": piece})
            yield delta({"type": "signature_delta", "signature": str(block.get("signature", ""))})
        else:  # redacted_thinking and other whole blocks arrive complete in their start event
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
