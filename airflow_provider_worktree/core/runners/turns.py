"""One model reply applied: response blocks as replayable request params, and its ``tool_use`` blocks run
through the worktree-confined tools. Shared by the agent loop and batch mode.

Imports ``core.sandbox`` (the tools' results).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_worktree.core.sandbox import ToolResult


def _block_to_param(block: Any) -> tuple[dict[str, Any], Any]:
    """An SDK response content block as a request param (dict) for replay, and the tool input as received.

    A tool input that is not a JSON object is replaced by ``{}`` in the replayed conversation (the API only
    accepts objects there); the tool itself gets the input as received and answers with a tool error.
    """
    if isinstance(block, Mapping):
        data = dict(block)
    elif hasattr(block, "to_dict"):
        data = block.to_dict(mode="json", warnings=False)
    else:
        data = block.model_dump(mode="json", exclude_none=True, warnings=False)
    data = {k: v for k, v in data.items() if v is not None}
    raw_input = data.get("input")
    if data.get("type") == "tool_use" and not isinstance(raw_input, dict):
        data["input"] = {}
    return data, raw_input


def run_tool_uses(content: Sequence[Mapping[str, Any]], handlers: Mapping[str, Callable[[object], ToolResult]],
                  cancelled: Callable[[], bool], log: logging.Logger,
                  raw_input: Callable[[Mapping[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Run the ``tool_use`` blocks of one model reply, in order, through ``handlers`` (tool name -> the tool's
    ``execute``) and return their ``tool_result`` blocks. An unknown tool, a cancelled run or a refused call is
    a tool error, never an exception. The agent loop sends the results back; batch mode applies one reply this
    way (``core.batch``), so both confine and scope-check the model's edits with the same tools."""
    results = []
    for block in content:
        if block.get("type") != "tool_use":
            continue
        handler = handlers.get(block.get("name"))
        if handler is None:
            res = ToolResult(f"Error: unknown tool {block.get('name')!r}; available: {', '.join(handlers)}.",
                             is_error=True)
        elif cancelled():
            res = ToolResult("Error: the run was cancelled.", is_error=True)
        else:
            res = handler(raw_input(block) if raw_input is not None else block.get("input"))
        if res.is_error:
            log.info("tool %s refused: %s", block.get("name"), res.content[:300])
        results.append(res.to_block(str(block.get("id"))))
    return results


