"""What the offline test double refuses, as the API does: a request without an API key (or with the wrong one
when the server has one), and a Messages API request the API would refuse with a 400.

Like the API it accepts what the real clients send: consecutive turns of one role (merged into one turn),
``role: "system"`` messages in the middle of the conversation (Claude Code sends them), ``thinking`` blocks,
``metadata``, ``cache_control`` with a ``ttl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_worktree.testing.errors import ApiError
from airflow_provider_worktree.testing.tokens import segments
from airflow_provider_worktree.testing.toolsets import EDITOR


def check_auth(headers: Mapping[str, str], api_key: str | None) -> None:
    """A key is required (``x-api-key`` or ``Authorization: Bearer``); ``api_key``, if set, is the only one
    accepted."""
    key = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        key = key or auth[7:]
    if not key:
        raise ApiError(401, "x-api-key header is required")
    if api_key is not None and key != api_key:
        raise ApiError(401, "invalid x-api-key")


def validate(body: dict[str, Any], *, need_max_tokens: bool) -> None:
    """Refuse ``body`` as the API would (a 400), or return."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "model: Field required")
    if need_max_tokens:
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise ApiError(400, "max_tokens: must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: at least one message is required")
    # Like the API: consecutive turns of one role are merged into one turn; "system" messages in the middle
    # of the conversation (Claude Code sends them) are instructions, not turns.
    turns: list[tuple[int, str, list[Any]]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise ApiError(400, f"messages.{i}.role: must be 'user', 'assistant' or 'system'")
        content = m.get("content")
        if not isinstance(content, (str, list)) or (isinstance(content, list) and not content):
            raise ApiError(400, f"messages.{i}.content: must be a string or a non-empty list of blocks")
        if m["role"] == "system":
            continue
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        for b in blocks:
            if b.get("type") == "tool_use" and not isinstance(b.get("input"), dict):
                raise ApiError(400, f"messages.{i}: tool_use.input must be an object")
        if turns and turns[-1][1] == m["role"]:
            turns[-1][2].extend(blocks)
        else:
            turns.append((i, m["role"], blocks))
    if not turns or turns[0][1] != "user":
        raise ApiError(400, "messages.0: roles must alternate, starting with 'user'")
    pending: set[str] = set()
    for i, role, blocks in turns:
        if role == "user":
            results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if pending - results:
                raise ApiError(400, f"messages.{i}: tool_use ids were found without tool_result blocks "
                                    f"immediately after: {sorted(pending - results)}")
            if results - pending:
                raise ApiError(400, f"messages.{i}: unexpected tool_use_id found in tool_result blocks: "
                                    f"{sorted(x for x in results - pending if x)}")
            pending = set()
        else:
            pending = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    n_cache = sum(1 for _, cc in segments(body) if cc)
    if n_cache > 4:
        raise ApiError(400, f"A maximum of 4 blocks with cache_control may be provided. Found {n_cache}.")
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("text_editor_") \
                and tool.get("name") != EDITOR:
            raise ApiError(400, f"tools: {tool.get('type')} must be named {EDITOR}")
