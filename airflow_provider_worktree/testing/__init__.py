"""Offline testing support: a loopback Messages API server. It is a TEST DOUBLE, not Claude.

:class:`OfflineMessagesServer` lets the real ``anthropic`` SDK (and so the real runners and operators) talk HTTP to
a deterministic stand-in: :class:`RuleBasedModel` for the built-in maintenance tasks, :class:`ScriptedModel` for
canned conversations, and fault injection (rate limits, overload, server and request errors, errors in the middle
of a stream, slow replies, malformed tool calls, sandbox escape attempts, forbidden commands), and an
organisation's rate limits enforced like the API's (:class:`RateLimits`). It streams
(server-sent events) and accepts the beta endpoint shapes, so the SDK's streaming calls and the Claude Code CLI
talk to it unchanged. Real maintenance needs an Anthropic API key
and the real API.

Run it from a shell: ``python -m airflow_provider_worktree.testing --port 8765``.
"""

from airflow_provider_worktree.core.tasks import parse_shard_block
from airflow_provider_worktree.testing.faults import (
    Fault,
    authentication_error,
    bad_request,
    escape_attempt,
    forbidden_command,
    malformed_tool_call,
    mid_stream_error,
    overloaded,
    rate_limit,
    server_error,
    slow,
)
from airflow_provider_worktree.testing.model import RuleBasedModel, ScriptedModel, text_reply, tool_use_reply
from airflow_provider_worktree.testing.ratelimits import RateLimits
from airflow_provider_worktree.testing.server import DEFAULT_MODEL_ID, OfflineMessagesServer

__all__ = [
    "DEFAULT_MODEL_ID", "Fault", "OfflineMessagesServer", "RuleBasedModel", "ScriptedModel", "authentication_error",
    "bad_request", "escape_attempt", "forbidden_command", "malformed_tool_call", "mid_stream_error", "overloaded", "parse_shard_block",
    "RateLimits", "rate_limit", "server_error", "slow", "text_reply", "tool_use_reply",
]
