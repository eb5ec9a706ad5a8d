"""What a tool call gives back to the model (:class:`ToolResult`): the editor's and the command tool's answer.

Refusals are *tool errors* (``is_error=True``) returned to the model, never exceptions out of the agent loop:
the model reads the message and carries on inside the worktree. Plain Python: no Airflow import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_worktree.core.sandbox.paths import clean_text


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives back to the model: text, and whether it is an error."""

    content: str
    is_error: bool = False

    def __post_init__(self) -> None:
        # A lone surrogate (a non-UTF-8 file name, a hostile tool input echoed back) cannot be sent as JSON.
        object.__setattr__(self, "content", clean_text(self.content))

    def to_block(self, tool_use_id: str) -> dict[str, Any]:
        """The ``tool_result`` content block for the Messages API."""
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": self.content}
        if self.is_error:
            block["is_error"] = True
        return block

