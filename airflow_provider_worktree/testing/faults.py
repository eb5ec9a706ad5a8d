"""Faults the offline test double injects: errors with the API's status codes and shapes (rate limits, overload,
server, request and authentication errors), an error in the middle of a stream, slow replies, and replies a
careless or hostile model could give (a malformed tool call, a sandbox escape attempt, a forbidden command).

Queue them with :meth:`~airflow_provider_worktree.testing.OfflineMessagesServer.inject`; each applies to the next
request of its endpoint. As a batch entry's outcome see ``OfflineMessagesServer.batch_entry_faults``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_worktree.testing.errors import ERROR_TYPES
from airflow_provider_worktree.testing.model import tool_use_reply
from airflow_provider_worktree.testing.toolsets import EDITOR


@dataclass
class Fault:
    """One injected fault, applied to the next request of ``endpoint`` (``messages``, ``count_tokens`` or
    ``batches``). As a per-entry batch fault (:attr:`OfflineMessagesServer.batch_entry_faults`): a ``status`` makes
    the entry ``errored`` with ``error_type``/``message``, a ``reply`` replaces the model's, a ``delay`` is slept
    before the entry is processed."""

    kind: str
    status: int | None = None
    error_type: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reply: dict[str, Any] | None = None
    #: ``messages``, ``count_tokens`` or ``batches`` (any Message Batches API call).
    endpoint: str = "messages"
    #: Streaming requests: send this many events of the reply, then an ``error`` event, and end the stream.
    #: Non-streaming requests get ``status`` instead.
    after_events: int | None = None


def rate_limit(retry_after: float | None = 1, *, retry_after_ms: int | None = None) -> Fault:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return Fault("rate_limit", 429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                 "limit (offline test double).", headers)


def overloaded() -> Fault:
    return Fault("overloaded", 529, "overloaded_error", "Overloaded")


def server_error() -> Fault:
    return Fault("server_error", 500, "api_error", "Internal server error")


def bad_request(message: str = "invalid request") -> Fault:
    return Fault("bad_request", 400, "invalid_request_error", message)


def authentication_error(message: str = "invalid x-api-key") -> Fault:
    return Fault("authentication_error", 401, "authentication_error", message)


def mid_stream_error(after_events: int = 3, error_type: str = "overloaded_error",
                     message: str = "Overloaded") -> Fault:
    """A streaming reply that breaks off after ``after_events`` events with an ``error`` event (as the real API
    does when it is overloaded mid-stream); a non-streaming request gets the matching status (529 by default)."""
    status = next((code for code, kind in ERROR_TYPES.items() if kind == error_type), 500)
    return Fault("mid_stream_error", status, error_type, message, after_events=max(0, int(after_events)))


def slow(seconds: float) -> Fault:
    return Fault("slow", delay=float(seconds))


def malformed_tool_call() -> Fault:
    """The model calls the editor with an input that is not an object, then the next call carries on."""
    return Fault("malformed_tool_call", reply=tool_use_reply(EDITOR, "view everything please", tool_id=_fault_id()))


def escape_attempt(path: str = "../../etc/passwd", command: str = "view") -> Fault:
    """The model tries to reach ``path`` (outside the worktree) with the editor."""
    tool_input: dict[str, Any] = {"command": command, "path": path}
    if command == "create":
        tool_input["file_text"] = "escaped\n"
    elif command == "str_replace":
        tool_input.update(old_str="root", new_str="pwned")
    elif command == "insert":
        tool_input.update(insert_line=0, insert_text="pwned")
    return Fault("escape_attempt", reply=tool_use_reply(EDITOR, tool_input, tool_id=_fault_id()))


def forbidden_command(cmd: str = "rm -rf /") -> Fault:
    return Fault("forbidden_command", reply=tool_use_reply("run_command", {"command": cmd}, tool_id=_fault_id()))


def _fault_id() -> str:
    return f"toolu_fault_{uuid.uuid4().hex[:16]}"
