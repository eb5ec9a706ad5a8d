"""What the conversation so far tells the (stateless) rule-based model: the tool calls it made and what they
returned, what it has read of each file, and whether the request asks for every edit in one reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_worktree.core.runners import ONE_RESPONSE_INSTRUCTION
from airflow_provider_worktree.testing.toolsets import ToolSet, line_delta, text_of

#: Views of one file at most (a guard against a tool that never reaches the end).
MAX_VIEWS_PER_FILE = 40


def asks_one_response(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the last user turn asks for every edit in this one reply (a batch request: no second turn)."""
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return ONE_RESPONSE_INSTRUCTION in text_of(m.get("content"))
    return False


def history(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The tool calls the assistant made (in order) and their results by ``tool_use_id`` (text, is_error)."""
    calls, results = [], {}
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for b in content:
            if not isinstance(b, dict):
                continue
            if m.get("role") == "assistant" and b.get("type") == "tool_use" and isinstance(b.get("input"), dict):
                calls.append(b)
            elif m.get("role") == "user" and b.get("type") == "tool_result":
                results[b.get("tool_use_id")] = {"text": text_of(b.get("content")),
                                                 "is_error": bool(b.get("is_error"))}
    return calls, results


@dataclass
class FileState:
    """What the conversation shows of one file: its lines read so far, and how reading it went."""

    lines: dict[int, str] = field(default_factory=dict)
    upto: int = 0            # lines 1..upto are known
    shift: int = 0           # lines added above the unread part by the edits made so far
    at_end: bool = False
    views: int = 0
    errors: int = 0
    failed: str | None = None

    def add(self, lines: Mapping[int, str]) -> None:
        self.lines.update(lines)
        while self.upto + 1 in self.lines:
            self.upto += 1

    def next_line(self) -> int:
        return self.upto + 1

    def known(self) -> tuple[str, ...]:
        return tuple(self.lines[i] for i in range(1, self.upto + 1))

    def complete(self) -> tuple[str, ...] | None:
        if not self.at_end or len(self.lines) != self.upto:
            return None
        return self.known()


def read_states(files: list[str], calls: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                tools: ToolSet) -> dict[str, FileState]:
    """What the ``calls`` (this shard's, in conversation order) and their ``results`` show of each file."""
    states = {f: FileState() for f in files}
    for call in calls:  # in conversation order: a view sees the lines the edits before it added
        if call["id"] not in results:
            continue
        st = states[tools.rel(call)]
        if not tools.is_view(call):
            if tools.edit_key(call) is not None and not results[call["id"]]["is_error"]:
                st.shift += line_delta(call["input"])
            continue
        st.views += 1
        chunk = tools.parse_view(call["input"], results[call["id"]])
        if chunk.error is not None:
            st.errors += 1
            if not chunk.too_large or st.errors > 4:
                st.failed = chunk.error.splitlines()[0][:200] if chunk.error else "view failed"
            continue
        before = st.next_line()
        st.add({n - st.shift: text for n, text in chunk.lines.items()})
        st.at_end = st.at_end or chunk.at_end
        if not chunk.at_end and st.next_line() == before:
            st.failed = f"a line longer than one view at line {before}"
        elif st.views >= MAX_VIEWS_PER_FILE and st.complete() is None:
            st.failed = f"still not read to the end after {st.views} views"
    return states
