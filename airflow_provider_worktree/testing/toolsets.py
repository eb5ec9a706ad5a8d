"""The tool sets the rule-based model can drive, read from the request's ``tools``: the Messages API text editor
(``str_replace_based_edit_tool``) or Claude Code's ``Read``/``Edit``/``Write``. Each knows how to call its tools
(view a file from a line on, replace, insert, create) and how to read what a view returned.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_worktree.core.sandbox import CLIPPED_MARK

#: The Messages API text editor's name (the API requires it for the ``text_editor_*`` tool types).
EDITOR = "str_replace_based_edit_tool"
#: Lines per Claude Code ``Read`` (halved after a "too large" refusal); the CLI refuses big outputs.
CC_READ_LINES = 500

_VIEW_LINE = re.compile(r"^\s*(\d+)\t(.*)$")
_CC_LINE = re.compile(r"^\s*(\d+)(?:\t|\u2192)(.*)$")
_CC_TOO_LARGE = re.compile(r"exceeds maximum allowed|too large|token", re.I)
_CWD_RE = re.compile(r"(?:Primary working directory|Working directory|cwd)\s*:\s*(/[^\n\"'<>]*)", re.I)


def text_of(content: Any) -> str:
    """The text of a message's or a tool result's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(b.get("text") if b.get("type") == "text" else b.get("content", ""))
                         for b in content if isinstance(b, dict))
    return ""


@functools.lru_cache(maxsize=256)
def numbered(text: str, claude_code: bool) -> tuple[tuple[int, str], ...]:
    """The ``(number, text)`` lines of a view/Read result (cached: every turn re-reads the whole conversation)."""
    pattern = _CC_LINE if claude_code else _VIEW_LINE
    return tuple((int(m.group(1)), m.group(2)) for row in text.split("\n") if (m := pattern.match(row)))


@dataclass
class ViewChunk:
    """What one view/Read returned: lines by number, whether the end of the file was reached, or a failure."""

    lines: dict[int, str] = field(default_factory=dict)
    at_end: bool = False
    error: str | None = None
    too_large: bool = False


class EditorTools:
    """``str_replace_based_edit_tool`` (text_editor_20250728): repository-relative paths, ``view`` with
    ``view_range`` (the output is cut at the tool's ``max_characters``), ``str_replace``, ``insert``, ``create``."""

    kind = "text_editor"
    can_insert = True

    def rel(self, call: Mapping[str, Any]) -> str | None:
        return call["input"].get("path") if call.get("name") == EDITOR else None

    def is_view(self, call: Mapping[str, Any]) -> bool:
        return call.get("name") == EDITOR and call["input"].get("command") == "view"

    def view(self, path: str, start: int, n_errors: int) -> tuple[str, dict[str, Any]]:
        if start <= 1:
            return EDITOR, {"command": "view", "path": path}
        return EDITOR, {"command": "view", "path": path, "view_range": [start, -1]}

    def parse_view(self, tool_input: Mapping[str, Any], result: Mapping[str, Any]) -> ViewChunk:
        if result["is_error"]:
            return ViewChunk(error=result["text"][:300])
        text = result["text"]
        tail = text[text.rfind("\n") + 1:]
        clipped = tail.startswith(CLIPPED_MARK)
        lines = dict(numbered(text[:len(text) - len(tail)] if clipped else text, False))
        if clipped and lines:  # the last line shown may be cut in the middle
            lines.pop(max(lines))
        return ViewChunk(lines=lines, at_end=not clipped)

    def replace(self, path: str, old: str, new: str) -> tuple[str, dict[str, Any]]:
        return EDITOR, {"command": "str_replace", "path": path, "old_str": old, "new_str": new}

    def insert(self, path: str, after_line: int, text: str) -> tuple[str, dict[str, Any]]:
        return EDITOR, {"command": "insert", "path": path, "insert_line": after_line, "insert_text": text}

    def create(self, path: str, text: str) -> tuple[str, dict[str, Any]]:
        return EDITOR, {"command": "create", "path": path, "file_text": text}

    def edit_key(self, call: Mapping[str, Any]) -> tuple | None:
        inp = call["input"]
        if call.get("name") != EDITOR or inp.get("command") not in ("str_replace", "insert", "create"):
            return None
        return (inp.get("command"), inp.get("path"), inp.get("old_str"), inp.get("new_str"), inp.get("insert_line"),
                inp.get("insert_text"), inp.get("file_text"))


class ClaudeCodeTools:
    """Claude Code's tools: absolute ``file_path`` under the session's working directory, ``Read`` with
    ``offset``/``limit`` (lines as ``N<TAB>text``, older CLIs ``     N→text``; a file must be read before
    ``Edit``), ``Edit`` (``old_string`` must be unique), ``Write``."""

    kind = "claude_code"
    can_insert = False

    def __init__(self, cwd: str | None) -> None:
        self.cwd = cwd.rstrip("/") if cwd else None

    def abs(self, path: str) -> str:
        return f"{self.cwd}/{path}" if self.cwd else path

    def rel(self, call: Mapping[str, Any]) -> str | None:
        path = call["input"].get("file_path")
        if not isinstance(path, str) or call.get("name") not in ("Read", "Edit", "Write"):
            return None
        if self.cwd and path.startswith(self.cwd + "/"):
            return path[len(self.cwd) + 1:]
        return path

    def is_view(self, call: Mapping[str, Any]) -> bool:
        return call.get("name") == "Read"

    @staticmethod
    def _limit(n_errors: int) -> int:
        return max(25, CC_READ_LINES >> n_errors)

    def view(self, path: str, start: int, n_errors: int) -> tuple[str, dict[str, Any]]:
        return "Read", {"file_path": self.abs(path), "offset": max(1, start), "limit": self._limit(n_errors)}

    def parse_view(self, tool_input: Mapping[str, Any], result: Mapping[str, Any]) -> ViewChunk:
        text = result["text"]
        if result["is_error"]:
            return ViewChunk(error=text[:300], too_large=bool(_CC_TOO_LARGE.search(text)))
        lines = dict(numbered(text, True))
        limit = tool_input.get("limit")
        at_end = not isinstance(limit, int) or len(lines) < limit
        if at_end and lines and lines[max(lines)] == "":  # the CLI shows the empty "line" after a final newline
            lines.pop(max(lines))
        return ViewChunk(lines=lines, at_end=at_end)

    def replace(self, path: str, old: str, new: str) -> tuple[str, dict[str, Any]]:
        return "Edit", {"file_path": self.abs(path), "old_string": old, "new_string": new}

    def insert(self, path: str, after_line: int, text: str) -> tuple[str, dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError("Claude Code has no insert; edits carry context instead")

    def create(self, path: str, text: str) -> tuple[str, dict[str, Any]]:
        return "Write", {"file_path": self.abs(path), "content": text}

    def edit_key(self, call: Mapping[str, Any]) -> tuple | None:
        inp = call["input"]
        if call.get("name") not in ("Edit", "Write"):
            return None
        # The CLI echoes inputs with defaults filled in (replace_all: false): compare what matters.
        return (call.get("name"), inp.get("file_path"), inp.get("old_string"), inp.get("new_string"),
                inp.get("content"))


ToolSet = EditorTools | ClaudeCodeTools


def toolset_for(request: Mapping[str, Any]) -> ToolSet | None:
    """The tool set ``request`` offers (the text editor if it offers both), or None."""
    names = {t.get("name") for t in request.get("tools") or [] if isinstance(t, dict)}
    if EDITOR in names:
        return EditorTools()
    if {"Read", "Edit"} <= names:
        system = request.get("system")
        text = system if isinstance(system, str) else text_of(system)
        m = _CWD_RE.search(text or "")
        return ClaudeCodeTools(m.group(1).strip() if m else None)
    return None


def line_delta(tool_input: Mapping[str, Any]) -> int:
    """Lines an edit call added (text editor or Claude Code)."""
    if "insert_text" in tool_input:
        text = tool_input["insert_text"]
        return text.count("\n") + (0 if text.endswith("\n") else 1)
    old = tool_input.get("old_str", tool_input.get("old_string"))
    new = tool_input.get("new_str", tool_input.get("new_string"))
    if isinstance(old, str) and isinstance(new, str):
        return new.count("\n") - old.count("\n")
    return 0
