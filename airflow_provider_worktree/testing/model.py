"""The offline server's models: deterministic TEST DOUBLES that stand in for Claude, not Claude.

:class:`RuleBasedModel` answers the built-in maintenance tasks from the ``<shard>`` block of the first user
message; :class:`ScriptedModel` replays canned replies. A model's contract with the server is one method,
``reply(request) -> {"content": [...], "stop_reason": ..., "usage"?: {...}}`` in the non-streaming Messages API
shape; the server turns that into JSON or server-sent events (or, for a Message Batch entry, one line of its results).

A request whose last user turn contains :data:`~airflow_provider_worktree.core.runners.batch.ONE_RESPONSE_INSTRUCTION`
(batch mode: the files were viewed in the request itself and there is no second turn) is answered in one response
with every edit.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import math
import re
import threading
import tokenize
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from airflow_provider_worktree.core.runners.batch import ONE_RESPONSE_INSTRUCTION
from airflow_provider_worktree.core.sandbox.tools import CLIPPED_MARK
from airflow_provider_worktree.core.tasks.catalog import _TODO_LEADER_RE, _TODO_WORD_RE, _dotted, parse_shard_block

EDITOR = "str_replace_based_edit_tool"

#: What the rule-based model calls itself in its summaries (it is never mistaken for Claude).
DOUBLE = "offline rule-based test double, not Claude"
#: Edits per reply at most; the rest follow in the next turns.
MAX_EDITS_PER_TURN = 30
#: Share of the request's ``max_tokens`` one reply's tool calls may use (estimated), the rest is margin.
TURN_SHARE = 0.6
#: An edit larger than this (estimated tokens) is left alone: a careful model does not rewrite a screenful of
#: code to change one comment.
MAX_EDIT_TOKENS = 600
#: Context lines added at most around an edit to make its ``old_str`` unique.
MAX_CONTEXT_LINES = 12
#: Lines per Claude Code ``Read`` (halved after a "too large" refusal); the CLI refuses big outputs.
CC_READ_LINES = 500
#: Views of one file at most (a guard against a tool that never reaches the end).
MAX_VIEWS_PER_FILE = 40
#: One-response (batch) replies: tokens of ``max_tokens`` kept for the reply's text block and framing.
ONE_RESPONSE_MARGIN = 200

_VIEW_LINE = re.compile(r"^\s*(\d+)\t(.*)$")
_CC_LINE = re.compile(r"^\s*(\d+)(?:\t|\u2192)(.*)$")
_CC_TOO_LARGE = re.compile(r"exceeds maximum allowed|too large|token", re.I)
_CWD_RE = re.compile(r"(?:Primary working directory|Working directory|cwd)\s*:\s*(/[^\n\"'<>]*)", re.I)
_MARKER_SUB = re.compile(_TODO_WORD_RE.pattern + r"(?:\([^)]*\))?:?[ \t]*")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(b.get("text") if b.get("type") == "text" else b.get("content", ""))
                         for b in content if isinstance(b, dict))
    return ""


@functools.lru_cache(maxsize=256)
def _numbered(text: str, claude_code: bool) -> tuple[tuple[int, str], ...]:
    """The ``(number, text)`` lines of a view/Read result (cached: every turn re-reads the whole conversation)."""
    pattern = _CC_LINE if claude_code else _VIEW_LINE
    return tuple((int(m.group(1)), m.group(2)) for row in text.split("\n") if (m := pattern.match(row)))


def _one_response(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the last user turn asks for every edit in this one reply (a batch request: no second turn)."""
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return ONE_RESPONSE_INSTRUCTION in _text_of(m.get("content"))
    return False


def _estimate_tokens(obj: Any) -> int:
    """A deliberately generous size estimate (3 bytes of compact JSON per token)."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return max(1, math.ceil(len(raw.encode("utf-8")) / 3))


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
def text_reply(text: str, stop_reason: str = "end_turn") -> dict[str, Any]:
    """A canned reply with one text block."""
    return {"content": [{"type": "text", "text": text}], "stop_reason": stop_reason}


def tool_use_reply(name: str, tool_input: Any, *, tool_id: str | None = None, text: str | None = None) -> dict[str, Any]:
    """A canned reply calling one tool."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": tool_id or f"toolu_{uuid.uuid4().hex[:20]}", "name": name,
                    "input": tool_input})
    return {"content": content, "stop_reason": "tool_use"}


class ScriptedModel:
    """Replies from a list, in order: dicts ``{"content": [...], "stop_reason": ..., "usage": {...}?}`` or callables
    ``f(request) -> dict``. When the list is exhausted it answers ``end_turn`` "(no more scripted replies)"."""

    def __init__(self, replies: Iterable[Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]]) -> None:
        self._replies = list(replies)
        self._lock = threading.Lock()
        self.calls = 0

    def reply(self, request: dict[str, Any]) -> Mapping[str, Any]:
        with self._lock:
            self.calls += 1
            item = self._replies.pop(0) if self._replies else None
        if item is None:
            return text_reply("(no more scripted replies)")
        return item(request) if callable(item) else item


# ---------------------------------------------------------------------------------------------------------------
# Tool sets: the Messages API text editor, or Claude Code's Read/Edit/Write
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Chunk:
    """What one view/Read returned: lines by number, whether the end of the file was reached, or a failure."""

    lines: dict[int, str] = field(default_factory=dict)
    at_end: bool = False
    error: str | None = None
    too_large: bool = False


class _EditorTools:
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

    def parse_view(self, tool_input: Mapping[str, Any], result: Mapping[str, Any]) -> _Chunk:
        if result["is_error"]:
            return _Chunk(error=result["text"][:300])
        text = result["text"]
        tail = text[text.rfind("\n") + 1:]
        clipped = tail.startswith(CLIPPED_MARK)
        lines = dict(_numbered(text[:len(text) - len(tail)] if clipped else text, False))
        if clipped and lines:  # the last line shown may be cut in the middle
            lines.pop(max(lines))
        return _Chunk(lines=lines, at_end=not clipped)

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


class _ClaudeCodeTools:
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

    def parse_view(self, tool_input: Mapping[str, Any], result: Mapping[str, Any]) -> _Chunk:
        text = result["text"]
        if result["is_error"]:
            return _Chunk(error=text[:300], too_large=bool(_CC_TOO_LARGE.search(text)))
        lines = dict(_numbered(text, True))
        limit = tool_input.get("limit")
        at_end = not isinstance(limit, int) or len(lines) < limit
        if at_end and lines and lines[max(lines)] == "":  # the CLI shows the empty "line" after a final newline
            lines.pop(max(lines))
        return _Chunk(lines=lines, at_end=at_end)

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


def _toolset(request: Mapping[str, Any]) -> _EditorTools | _ClaudeCodeTools | None:
    names = {t.get("name") for t in request.get("tools") or [] if isinstance(t, dict)}
    if EDITOR in names:
        return _EditorTools()
    if {"Read", "Edit"} <= names:
        system = request.get("system")
        text = system if isinstance(system, str) else _text_of(system)
        m = _CWD_RE.search(text or "")
        return _ClaudeCodeTools(m.group(1).strip() if m else None)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Edit planning: changes on the file as read, rendered bottom-up into small tool calls
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Change:
    """Replace lines ``[start, end)`` (0-based, of the file as read) by ``new``; ``start == end`` inserts."""

    start: int
    end: int
    new: tuple[str, ...]


def _in_range(changes: list[_Change], lines: Any) -> list[_Change]:
    """The changes a range shard may make: those starting in its ``lines`` ``[first, last]`` (1-based, as the
    planner gives them for one big file split into several shards); all of them when the shard has no range."""
    if not (isinstance(lines, (list, tuple)) and len(lines) == 2 and all(isinstance(n, int) for n in lines)):
        return changes
    first, last = lines
    return [ch for ch in changes if first - 1 <= ch.start <= last - 1]


def _char_col(line: str, byte_col: int) -> int:
    """``ast`` columns are UTF-8 byte offsets; string indexes are characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def _resolve_markers(comment: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return "NOTE(resolved):" if m.end() == len(comment) else "NOTE(resolved): "
    return _MARKER_SUB.sub(sub, comment)


# Python comments, and the string literals that may hold a "#": on the real corpora of the tests (mypy, flask,
# click, attrs, requests) this finds exactly the comments tokenize finds, at a fifteenth of its cost.
_PY_SCAN = re.compile(
    r"(?P<c>#[^\r\n]*)"
    r'|"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)'  # unterminated: the read so far ends inside this string
    r"|'''(?:[^'\\]|\\.|'(?!''))*(?:'''|\Z)"
    r'|"(?:[^"\\\r\n]|\\.)*"'
    r"|'(?:[^'\\\r\n]|\\.)*'", re.S)


def _python_comments(lines: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(row, col, text)`` (0-based) of every comment of a Python source; strings are skipped."""
    text = "\n".join(lines)
    out, row, row_start = [], 0, 0
    for m in _PY_SCAN.finditer(text):
        if m.group("c") is None:
            continue
        while m.start() > row_start + len(lines[row]):
            row_start += len(lines[row]) + 1
            row += 1
        out.append((row, m.start() - row_start, m.group("c")))
    return out


def _plan_todo(path: str, lines: tuple[str, ...]) -> list[_Change]:
    """One change per line with a marker in a comment: the marker becomes ``NOTE(resolved):``. In Python files
    only comments are touched (never strings or code), so the file stays valid Python."""
    new_lines: dict[int, str] = {}
    if path.endswith((".py", ".pyi")):
        for row, col, comment in _python_comments(lines):
            if _TODO_WORD_RE.search(comment):
                line = lines[row]
                new_lines[row] = line[:col] + _resolve_markers(comment) + line[col + len(comment):]
    else:
        for row, line in enumerate(lines):
            leader = _TODO_LEADER_RE.search(line)
            if leader and _TODO_WORD_RE.search(line[leader.start():]):
                new_lines[row] = line[:leader.start()] + _resolve_markers(line[leader.start():])
    return [_Change(row, row + 1, (new,)) for row, new in sorted(new_lines.items()) if new != lines[row]]


def _is_overload(node: ast.AST) -> bool:
    return any(_dotted(d).rsplit(".", 1)[-1] == "overload" for d in getattr(node, "decorator_list", ()))


def _doc_targets(tree: ast.Module) -> list[ast.AST]:
    """The definitions the docstrings metric counts (core.tasks._docstring_report: public, module level or in
    public classes, recursively), minus ``@overload`` stubs: the implementation carries the docstring (the first
    stub does when a scope has no implementation)."""
    targets: list[ast.AST] = []

    def visit(body: list[ast.stmt]) -> None:
        implemented = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and not _is_overload(n)}
        stubbed: set[str] = set()
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                if _is_overload(node):
                    if node.name not in implemented and node.name not in stubbed:
                        targets.append(node)
                    stubbed.add(node.name)
                else:
                    targets.append(node)
            if isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return targets


def _indent_unit(lines: Sequence[str]) -> str:
    for line in lines:
        if line[:1] in (" ", "\t") and line.strip():
            return "\t" if line[0] == "\t" else "    "
    return "    "


def _header_colon(lines: Sequence[str], node: ast.AST) -> tuple[int, int] | None:
    """(row, char col) of the ``:`` that ends a ``def``/``class`` header, found without tokenizing the file: start
    after the header's last part that ``ast`` locates (return annotation, last parameter or default, last base or
    keyword, else the name) and skip what may follow it (spaces, comments, line continuations, ``, ( ) * /``).
    None when something else is met; the caller then tokenizes."""
    if isinstance(node, ast.ClassDef):
        parts: list[ast.AST] = [*node.bases, *node.keywords]
    elif node.returns is not None:
        parts = [node.returns]
    else:
        a = node.args
        parts = [x for x in (*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg, *a.defaults, *a.kw_defaults)
                 if x is not None]
    if parts:
        last = max(parts, key=lambda x: (x.end_lineno, x.end_col_offset))
        row = last.end_lineno
        col = _char_col(lines[row - 1], last.end_col_offset)
    else:
        row = node.lineno
        line = lines[row - 1]
        m = re.compile(r"(?:async\s+)?(?:def|class)\s+" + re.escape(node.name)).match(line, _char_col(line, node.col_offset))
        if m is None:
            return None
        col = m.end()
    while row <= len(lines):
        line = lines[row - 1]
        while col < len(line):
            ch = line[col]
            if ch == ":":
                return row, col
            if ch == "#" or (ch == "\\" and col == len(line) - 1):
                break
            if not (ch.isspace() or ch in ",()*/"):
                return None
            col += 1
        row, col = row + 1, 0
    return None


def _header_colon_tokenized(text: str, row: int, col: int) -> tuple[int, int] | None:
    """The same by tokenizing (slow on big files; only for headers the scan above cannot read)."""
    depth, started = 0, False
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if not started:
                started = tok.start == (row, col) and tok.type == tokenize.NAME
                if not started:
                    continue
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ":" and depth == 0:
                    return tok.start
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    return None


def _plan_docstrings(path: str, lines: tuple[str, ...], partial: bool = False) -> list[_Change]:
    """One change per definition missing a docstring (as the metric counts them): a docstring line right after
    the full header (decorators and multi-line signatures included), indented like the body; a one-line body
    (``def f(): ...``) is split so the docstring comes first. The module docstring goes after the leading
    comments (shebang, encoding, licence), before any ``from __future__`` import."""
    if not path.endswith(".py"):
        return []
    text = "\n".join(lines) + "\n"
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    unit = _indent_unit(lines)
    changes: list[_Change] = []
    for node in _doc_targets(tree):
        if partial and _is_overload(node):
            continue
        kind = "Class" if isinstance(node, ast.ClassDef) else "Function"
        doc = f'"""{kind} {node.name}."""'
        head = lines[node.lineno - 1]
        col = _char_col(head, node.col_offset)
        node_indent = head[:col]
        if node_indent.strip():
            continue
        colon = _header_colon(lines, node) or _header_colon_tokenized(text, node.lineno, col)
        if colon is None:
            continue
        row, ccol = colon
        body0 = node.body[0]
        if body0.lineno > row:
            body_line = lines[body0.lineno - 1]
            indent = body_line[:_char_col(body_line, body0.col_offset)]
            if indent.strip() or len(indent) <= len(node_indent):
                indent = node_indent + unit
            changes.append(_Change(row, row, (indent + doc,)))
        else:  # one-line body on the header's last line: split it
            line = lines[row - 1]
            bcol = _char_col(line, body0.col_offset)
            if line[ccol + 1:bcol].strip():
                continue
            indent = node_indent + unit
            changes.append(_Change(row - 1, row, (line[:ccol + 1], indent + doc, indent + line[bcol:])))
    if tree.body and ast.get_docstring(tree) is None:
        top = 0
        while top < len(lines) and lines[top].startswith("#"):
            top += 1
        name = re.sub(r"[^0-9A-Za-z_.-]", "_", PurePosixPath(path).stem)
        changes.append(_Change(top, top, (f'"""Module {name}."""',)))
    return changes


def _line_delta(tool_input: Mapping[str, Any]) -> int:
    """Lines an edit call added (text editor or Claude Code)."""
    if "insert_text" in tool_input:
        text = tool_input["insert_text"]
        return text.count("\n") + (0 if text.endswith("\n") else 1)
    old = tool_input.get("old_str", tool_input.get("old_string"))
    new = tool_input.get("new_str", tool_input.get("new_string"))
    if isinstance(old, str) and isinstance(new, str):
        return new.count("\n") - old.count("\n")
    return 0


def _apply(lines: Sequence[str], changes: Iterable[_Change]) -> list[str]:
    out = list(lines)
    for ch in sorted(changes, key=lambda c: (-c.start, -c.end)):
        out[ch.start:ch.end] = ch.new
    return out


def _parses(lines: Sequence[str]) -> bool:
    try:
        ast.parse("\n".join(lines) + "\n")
        return True
    except (SyntaxError, ValueError):
        return False


def _keep_python_valid(path: str, lines: tuple[str, ...], changes: list[_Change]) -> list[_Change]:
    """Drop the changes that would make a parsing Python file stop parsing (checked once for all; one by one only
    when the whole set fails). Docstring plans only: they exist for files that parse, and TODO changes stay inside
    comment tokens."""
    if not changes:
        return changes
    if _parses(_apply(lines, changes)):
        return changes
    return [ch for ch in changes if _parses(_apply(lines, [ch]))]


@dataclass(frozen=True)
class _Edit:
    name: str
    input: dict[str, Any]
    tokens: int
    row: int = -1   # first line (0-based) of the change, as read


def _render(path: str, lines: tuple[str, ...], changes: list[_Change], tools: Any,
            done: Sequence[_Change] = (), margin: int = 0) -> list[_Edit]:
    """Tool calls for ``changes`` (lines as read) on the file with the ``done`` changes applied, bottom-up (so line
    numbers above stay valid), each made unique with the least context read from the file as it will be when the
    call runs, plus ``margin`` lines (the unread rest of a file may repeat a short text). Changes that cannot be
    made small are left out."""
    cur = _apply(lines, done)
    out: list[_Edit] = []
    for orig in sorted(changes, key=lambda c: (-c.start, -c.end)):
        shift = sum(len(d.new) - (d.end - d.start) for d in done if d.start < orig.start)
        ch = _Change(orig.start + shift, orig.end + shift, orig.new)
        if ch.start == ch.end and tools.can_insert:
            name, inp = tools.insert(path, ch.start, "\n".join(ch.new))
        else:
            text = "\n".join(cur)
            up, down = (1, 0) if ch.start == ch.end and ch.start > 0 else (0, 0 if ch.start < ch.end else 1)
            found = None
            while up + down <= MAX_CONTEXT_LINES:
                a, b = ch.start - up, min(len(cur), ch.end + down)
                old = "\n".join(cur[a:b])
                if old.strip() and text.count(old) == 1:
                    for _ in range(margin):
                        if a > 0 and (ch.start - a <= b - ch.end or b >= len(cur)):
                            a -= 1
                        elif b < len(cur):
                            b += 1
                    found = (a, b, "\n".join(cur[a:b]))
                    break
                can_up, can_down = a > 0, b < len(cur)
                if not (can_up or can_down):
                    break
                if can_up and (up <= down or not can_down):
                    up += 1
                else:
                    down += 1
            if found is None:
                continue
            a, b, old = found
            name, inp = tools.replace(path, old, "\n".join(cur[a:ch.start] + list(ch.new) + cur[ch.end:b]))
        block = {"type": "tool_use", "id": "toolu_x" * 3, "name": name, "input": inp}
        tokens = _estimate_tokens(block)
        if tokens > MAX_EDIT_TOKENS:
            continue
        cur[ch.start:ch.end] = ch.new
        out.append(_Edit(name, inp, tokens, orig.start))
    return out


_STATEMENT_START = re.compile(r"\s*(?:@|def |async def |class )")


@functools.lru_cache(maxsize=64)
def _changes(task: str, path: str, lines: tuple[str, ...], complete: bool) -> tuple[_Change, ...]:
    """The changes of one file from what was read of it (cached: the model is stateless, every turn recomputes
    them from the conversation). ``todo`` plans any prefix. ``docstrings`` on a file read in part plans the prefix
    that ends before the last ``def``/``class``/decorator line where it parses (all headers there are whole),
    leaving ``@overload`` choices to the full read."""
    if task == "todo":
        return tuple(_plan_todo(path, lines))
    if complete:
        return tuple(_keep_python_valid(path, lines, _plan_docstrings(path, lines)))
    tries = 0
    for cut in range(len(lines) - 1, 0, -1):
        if not _STATEMENT_START.match(lines[cut]) or (cut and lines[cut - 1].lstrip().startswith("@")):
            continue
        prefix = lines[:cut]
        if _parses(prefix):
            return tuple(_keep_python_valid(path, prefix, _plan_docstrings(path, prefix, partial=True)))
        tries += 1
        if tries >= 6:
            break
    return ()


# ---------------------------------------------------------------------------------------------------------------
# The rule-based model
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _FileState:
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
        return tuple(self.lines[i] for i in range(1, self.upto + 1))


class RuleBasedModel:
    """A deterministic stand-in for Claude (a TEST DOUBLE, not Claude) for the built-in tasks, driven by the
    ``<shard>`` block of the first user message, that works like a careful model on real files.

    It uses whichever tool set the request offers: the Messages API text editor (``str_replace_based_edit_tool``:
    repository-relative paths, ``view`` with ``view_range``, ``str_replace``, ``insert``, ``create``) or Claude
    Code's tools (``Read`` with ``offset``/``limit``, ``Edit``, ``Write``, absolute paths under the working
    directory named in the system prompt). Without either it answers in text.

    Turns: it reads the shard's files, large ones chunk by chunk (the editor cuts a view at ``max_characters``;
    the next view starts where it was cut, counting the lines its edits added above), and makes one small targeted
    edit per marker or definition of what it has read so far, in the same reply as the next view (so a big file
    makes progress before a budget runs out): bottom-up within a file so earlier line numbers stay valid, at most
    :data:`MAX_EDITS_PER_TURN` per reply and within :data:`TURN_SHARE` of the request's ``max_tokens`` (the rest
    follows next turn). It ends with a summary that says it is a test double.

    * ``todo``: each TODO/FIXME/XXX/HACK in a comment becomes ``NOTE(resolved):``; the ``old_str`` is the comment's
      line plus the least context that makes it unique. Python strings and code are never touched.
    * ``docstrings``: the definitions the metric counts get ``\"\"\"Function f.\"\"\"`` / ``\"\"\"Class C.\"\"\"``
      right after their full header (never between a decorator and its ``def``); ``@overload`` stubs are left to
      the implementation; one-line bodies are split; the module gets ``\"\"\"Module m.\"\"\"`` after its leading
      comments. A Python file that parsed keeps parsing (every plan is checked with ``ast``).
    * ``tests``: creates ``tests/test_<module>.py`` that imports the module. ``lint`` and ``custom`` view and end.

    One response (batch mode): when the last user turn contains
    :data:`~airflow_provider_worktree.core.runners.batch.ONE_RESPONSE_INSTRUCTION`, the files were viewed in the request
    itself and there is no second turn, so the reply holds every edit of what was shown (a file shown in part gets
    the edits of that part), with no ``view`` calls and no per-turn cut, only the request's ``max_tokens`` (less
    :data:`ONE_RESPONSE_MARGIN`): edits that do not fit are left out and counted in the reply's text. It stops with
    ``tool_use`` when it made edits, else ``end_turn`` with a summary.

    Stateless: the phase is read from the conversation (which calls were made, what they returned), so injected
    faults in between do not confuse it.
    """

    def reply(self, request: dict[str, Any]) -> Mapping[str, Any]:
        messages = request.get("messages") or []
        shard = None
        for m in messages:
            if m.get("role") == "user":
                shard = parse_shard_block(_text_of(m.get("content")))
                break
        if shard is None:
            return text_reply("No <shard> block found in the first user message; nothing to do.")
        files = [f for f in shard.get("files") or [] if isinstance(f, str)]
        task = str(shard.get("task") or "custom")
        tools = _toolset(request)
        if tools is None:
            return text_reply(f"Shard {shard.get('shard_id')}: the request offers neither the text editor nor "
                              f"Claude Code's Read/Edit tools, so nothing was changed ({DOUBLE}).")
        calls, results = self._history(messages)
        mine = [c for c in calls if tools.rel(c) in files]
        states = self._read_states(files, mine, results, tools)
        one = _one_response(messages)

        if task in ("todo", "docstrings"):
            return self._edit_turn(task, request, shard, files, states, calls, results, tools, one_response=one)

        # tests, lint, custom: a first look at each file, then (tests) one new test module per module, then end.
        # In one response there is no look: a test module needs only the module's path.
        views = [] if one else [tools.view(f, 1, 0) for f in files if not states[f].views]
        if views:
            return self._tool_reply(f"Reading {len(views)} file(s) of shard {shard.get('shard_id')}.", "rbview", views)
        issued = {k for c in calls if (k := tools.edit_key(c)) is not None}
        plan: list[tuple[str, dict[str, Any]]] = []
        if task == "tests":
            plan = [tools.create(p, body) for p, body in _plan_tests(
                [f for f in files if (one or states[f].views) and not states[f].failed])]
        todo = [(n, i) for n, i in plan if tools.edit_key({"name": n, "input": i}) not in issued]
        left = 0
        if one:
            edits = [_Edit(n, i, _estimate_tokens({"type": "tool_use", "id": "toolu_x" * 4, "name": n, "input": i}))
                     for n, i in todo]
            batch, left = self._fit(edits, self._one_response_room(request), 0, None, strict=True)
            batch_calls = [(e.name, e.input) for e in batch]
        else:
            batch_calls = todo[:MAX_EDITS_PER_TURN]
        if batch_calls:
            return {"content": [{"type": "text", "text": f"Making {len(batch_calls)} edit(s)"
                                 + (f" ({left} more did not fit max_tokens)." if left else ".")}]
                    + [self._block("rbedit_r0_", i, n, inp) for i, (n, inp) in enumerate(batch_calls)],
                    "stop_reason": "tool_use"}
        return self._summary(task, shard, files, calls, results, states, left, one)

    @staticmethod
    def _one_response_room(request: Mapping[str, Any]) -> int:
        """Tokens the edits of a one-response reply may use: the request's ``max_tokens`` less the margin."""
        return max(0, int(request.get("max_tokens") or 4096) - ONE_RESPONSE_MARGIN)

    @staticmethod
    def _fit(edits: Iterable[_Edit], room: int, used: int, max_edits: int | None,
             strict: bool = False) -> tuple[list[_Edit], int]:
        """The edits that fit in ``room`` tokens (``used`` already taken) and ``max_edits``; and how many did not.
        ``strict``: after the first edit that does not fit, none is taken (the edits of one file are rendered
        bottom-up on the file with the edits below applied, so an edit above may quote one left out)."""
        batch: list[_Edit] = []
        left = 0
        for e in edits:
            if strict and left:
                left += 1
            elif (max_edits is None or len(batch) < max_edits) and used + e.tokens <= room:
                batch.append(e)
                used += e.tokens
            else:
                left += 1
        return batch, left

    def _edit_turn(self, task: str, request: Mapping[str, Any], shard: Mapping[str, Any], files: list[str],
                   states: dict[str, _FileState], calls: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                   tools: Any, *, one_response: bool = False) -> Mapping[str, Any]:
        """One turn of ``todo``/``docstrings``: the next chunk of each file not read to the end, and the edits of
        what is read so far (bottom-up, bounded), in one reply: the views run first, then the edits, all above the
        unread part. The work is done early, before a budget can run out on a big file. An edit refused while its
        file was partly read is retried once when the file is read in full.

        ``one_response``: no views and no per-turn cut; every edit of what the request shows, within its
        ``max_tokens``."""
        if task == "docstrings":
            states = {f: st for f, st in states.items() if f.endswith(".py")}
        views = [] if one_response else [tools.view(f, st.next_line() + st.shift, st.errors)
                                         for f, st in states.items() if not st.failed and st.complete() is None]
        room = (self._one_response_room(request) if one_response
                else int(int(request.get("max_tokens") or 4096) * TURN_SHARE))
        max_edits = None if one_response else MAX_EDITS_PER_TURN
        used = sum(_estimate_tokens({"type": "tool_use", "id": "toolu_x" * 4, "name": n, "input": i}) for n, i in views)
        attempts: dict[tuple[str, int], list[bool]] = {}
        for c in calls:
            m = re.match(r"toolu_rbedit_r(\d+)_", str(c.get("id")))
            if m and tools.rel(c) in states:
                ok = c["id"] in results and not results[c["id"]]["is_error"]
                attempts.setdefault((tools.rel(c), int(m.group(1))), []).append(ok)
        batch: list[_Edit] = []
        left = 0
        for f, st in states.items():
            known = st.known()
            if st.failed or not known:
                continue
            complete = st.complete() is not None
            changes = _in_range(_changes(task, f, known, complete), shard.get("lines"))
            tried = {row: res for (ff, row), res in attempts.items() if ff == f}
            done = [ch for ch in changes if any(tried.get(ch.start, ()))]
            todo = [ch for ch in changes if not any(tried.get(ch.start, ()))
                    and len(tried.get(ch.start, ())) < (2 if complete else 1)]
            fitted, missed = self._fit(_render(f, known, todo, tools, done, margin=0 if complete else 2), room,
                                       used, None if max_edits is None else max_edits - len(batch),
                                       strict=one_response)
            batch += fitted
            used += sum(e.tokens for e in fitted)
            left += missed
        if not views and not batch:
            return self._summary(task, shard, files, calls, results, states, left, one_response)
        text = (f"Reading {len(views)} file(s) and " if views else "") + f"making {len(batch)} edit(s)" + (
            (f" ({left} more did not fit max_tokens)." if one_response else f" ({left} more to follow).")
            if left else ".")
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        content += [self._block("rbview", i, name, inp) for i, (name, inp) in enumerate(views)]
        content += [self._block(f"rbedit_r{e.row}_", i, e.name, e.input) for i, e in enumerate(batch)]
        return {"content": content, "stop_reason": "tool_use"}

    def _summary(self, task: str, shard: Mapping[str, Any], files: list[str], calls: list[dict[str, Any]],
                 results: dict[str, dict[str, Any]], states: dict[str, _FileState], left: int,
                 one_response: bool = False) -> dict[str, Any]:
        edits = [c for c in calls if str(c.get("id")).startswith("toolu_rbedit")]
        errors = [results[c["id"]]["text"] for c in edits if results.get(c["id"], {}).get("is_error")]
        done = len(edits) - len(errors)
        unread = [f"{f} ({st.failed})" for f, st in states.items() if st.failed]
        if one_response:
            unread += [f"{f} (not shown in the request)" for f, st in states.items() if not st.views]
        summary = (f"Task {task} on shard {shard.get('shard_id')}: {done} edit(s) applied to {len(files)} file(s)"
                   + (f"; {len(errors)} refused: " + " | ".join(e[:200] for e in errors) if errors else "")
                   + (f"; not read: {', '.join(unread)}" if unread else "")
                   + (f"; {left} planned edit(s) did not fit max_tokens" if left else "")
                   + f". ({DOUBLE}.)")
        return text_reply(summary)

    @staticmethod
    def _block(kind: str, index: int, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": f"toolu_{kind}{index}_{uuid.uuid4().hex[:12]}", "name": name,
                "input": tool_input}

    @staticmethod
    def _tool_reply(text: str, kind: str, calls: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": text}]
                + [{"type": "tool_use", "id": f"toolu_{kind}{i}_{uuid.uuid4().hex[:12]}", "name": name, "input": inp}
                   for i, (name, inp) in enumerate(calls)],
                "stop_reason": "tool_use"}

    @staticmethod
    def _read_states(files: list[str], calls: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                     tools: Any) -> dict[str, _FileState]:
        states = {f: _FileState() for f in files}
        for call in calls:  # in conversation order: a view sees the lines the edits before it added
            if call["id"] not in results:
                continue
            st = states[tools.rel(call)]
            if not tools.is_view(call):
                if tools.edit_key(call) is not None and not results[call["id"]]["is_error"]:
                    st.shift += _line_delta(call["input"])
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

    @staticmethod
    def _history(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
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
                    results[b.get("tool_use_id")] = {"text": _text_of(b.get("content")),
                                                     "is_error": bool(b.get("is_error"))}
        return calls, results


def _plan_tests(files: list[str]) -> list[tuple[str, str]]:
    """``tests/test_<module>.py`` for each Python module of the shard: a test that imports it."""
    out, used = [], set()
    for path in files:
        p = PurePosixPath(path)
        if p.suffix != ".py" or p.name.startswith("test_"):
            continue
        stem = p.stem if p.stem != "__init__" else (p.parent.name or "package")
        name = stem if stem not in used else "_".join(p.with_suffix("").parts)
        used.add(name)
        ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
        body = (
            f'"""Smoke test for {path} (written by the offline test double)."""\n'
            "import importlib.util\n"
            "import pathlib\n\n"
            "ROOT = pathlib.Path(__file__).resolve().parents[1]\n\n\n"
            f"def test_{ident}_imports():\n"
            f'    spec = importlib.util.spec_from_file_location("{ident}", ROOT / "{path}")\n'
            "    module = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(module)\n"
            "    assert module is not None\n"
        )
        out.append((f"tests/test_{name}.py", body))
    return out
