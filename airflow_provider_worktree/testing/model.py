"""The offline server's models: deterministic TEST DOUBLES that stand in for Claude, not Claude.

:class:`RuleBasedModel` answers the built-in maintenance tasks from the ``<shard>`` block of the first user
message; :class:`ScriptedModel` replays canned replies. A model's contract with the server is one method,
``reply(request) -> {"content": [...], "stop_reason": ..., "usage"?: {...}}`` in the non-streaming Messages API
shape; the server turns that into JSON or server-sent events.
"""

from __future__ import annotations

import ast
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from airflow_provider_worktree.core.tasks import parse_shard_block

EDITOR = "str_replace_based_edit_tool"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(b.get("text") if b.get("type") == "text" else b.get("content", ""))
                         for b in content if isinstance(b, dict))
    return ""


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


_MARKER_RE = re.compile(r"\b(TODO|FIXME|XXX|HACK)\b(\([^)]*\))?:?[ \t]*")
_VIEW_LINE = re.compile(r"^\s*(\d+)\t(.*)$")


class RuleBasedModel:
    """A deterministic "model" for the built-in tasks, driven by the ``<shard>`` block of the first user message.

    Turn 1 views the shard's files; turn 2 edits them from what the views returned (``todo``: each marker
    comment becomes ``NOTE(resolved):``; ``docstrings``: module, class and function docstrings where missing,
    found with ``ast``; ``tests``: creates ``tests/test_<module>.py`` that imports the module); turn 3 ends with
    a summary. ``lint`` and ``custom`` view and end. Stateless: the phase is read from the conversation, so
    injected faults in between do not confuse it.
    """

    def reply(self, request: dict[str, Any]) -> Mapping[str, Any]:
        messages = request.get("messages") or []
        first = messages[0] if messages else {}
        shard = parse_shard_block(_text_of(first.get("content")))
        if shard is None:
            return text_reply("No <shard> block found in the first user message; nothing to do.")
        files = [f for f in shard.get("files") or [] if isinstance(f, str)]
        task = str(shard.get("task") or "custom")
        calls, results = self._history(messages)
        views = [c for c in calls if c["id"].startswith("toolu_rbview")]
        edits = [c for c in calls if c["id"].startswith("toolu_rbedit")]
        if not views and files:
            return {"content": [{"type": "text", "text": f"Looking at {len(files)} file(s) of shard "
                                 f"{shard.get('shard_id')}."}]
                    + [self._call("rbview", i, {"command": "view", "path": f}) for i, f in enumerate(files)],
                    "stop_reason": "tool_use"}
        if not edits and task in ("todo", "docstrings", "tests"):
            contents = {}
            for call in views:
                res = results.get(call["id"])
                if res and not res["is_error"]:
                    contents[call["input"]["path"]] = _unnumber(res["text"])
            planned = getattr(self, f"_plan_{task}")(files, contents)
            if planned:
                return {"content": [{"type": "text", "text": f"Making {len(planned)} edit(s)."}]
                        + [self._call("rbedit", i, inp) for i, inp in enumerate(planned)],
                        "stop_reason": "tool_use"}
        errors = [results[c["id"]]["text"] for c in edits if results.get(c["id"], {}).get("is_error")]
        done = len(edits) - len(errors)
        summary = (f"Task {task} on shard {shard.get('shard_id')}: {done} edit(s) applied to {len(files)} file(s)"
                   + (f"; {len(errors)} refused: " + " | ".join(e[:200] for e in errors) if errors else "") + ".")
        return text_reply(summary)

    @staticmethod
    def _call(kind: str, index: int, tool_input: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": f"toolu_{kind}{index}_{uuid.uuid4().hex[:12]}", "name": EDITOR,
                "input": tool_input}

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

    # -- planners: files -> tool inputs ---------------------------------------------------------------------------
    @staticmethod
    def _plan_todo(files: list[str], contents: dict[str, str]) -> list[dict[str, Any]]:
        edits = []
        for path in files:
            text = contents.get(path)
            if text is None:
                continue
            lines = text.split("\n")
            marked = [i for i, line in enumerate(lines) if _MARKER_RE.search(line)]
            if not marked:
                continue
            old = "\n".join(lines[marked[0]: marked[-1] + 1])
            new = "\n".join(_MARKER_RE.sub("NOTE(resolved): ", line) if i in marked else line
                            for i, line in enumerate(lines[marked[0]: marked[-1] + 1], start=marked[0]))
            edits.append({"command": "str_replace", "path": path, "old_str": old, "new_str": new})
        return edits

    @staticmethod
    def _plan_docstrings(files: list[str], contents: dict[str, str]) -> list[dict[str, Any]]:
        edits = []
        for path in files:
            text = contents.get(path)
            if text is None or not path.endswith(".py"):
                continue
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            lines = text.split("\n")
            inserts: list[tuple[int, str]] = []
            for node in ast.walk(tree):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                if ast.get_docstring(node) is not None or not node.body:
                    continue
                first = node.body[0]
                if first.lineno == node.lineno:  # one-line body: "def f(): return 1"
                    continue
                body_line = lines[first.lineno - 1]
                indent = body_line[: len(body_line) - len(body_line.lstrip())]
                kind = "Class" if isinstance(node, ast.ClassDef) else "Function"
                inserts.append((first.lineno - 1, f'{indent}"""{kind} {node.name}."""'))
            if ast.get_docstring(tree) is None:
                top = 0
                while top < len(lines) and top < 2 and (lines[top].startswith("#!") or
                                                       re.match(r"^#.*coding[:=]", lines[top])):
                    top += 1
                name = PurePosixPath(path).stem
                inserts.append((top, f'"""Module {name}."""'))
            for line, doc in sorted(inserts, key=lambda x: -x[0]):  # bottom-up: earlier positions stay valid
                edits.append({"command": "insert", "path": path, "insert_line": line, "insert_text": doc})
        return edits

    @staticmethod
    def _plan_tests(files: list[str], contents: dict[str, str]) -> list[dict[str, Any]]:
        edits, used = [], set()
        for path in files:
            p = PurePosixPath(path)
            if p.suffix != ".py" or p.name.startswith("test_") or path not in contents:
                continue
            stem = p.stem if p.stem != "__init__" else (p.parent.name or "package")
            name = stem if stem not in used else "_".join(p.with_suffix("").parts)
            used.add(name)
            body = (
                f'"""Smoke test for {path} (written by the offline test double)."""\n'
                "import importlib.util\n"
                "import pathlib\n\n"
                "ROOT = pathlib.Path(__file__).resolve().parents[1]\n\n\n"
                f"def test_{re.sub(r'[^0-9A-Za-z_]', '_', name)}_imports():\n"
                f'    spec = importlib.util.spec_from_file_location("{re.sub(r"[^0-9A-Za-z_]", "_", name)}", '
                f'ROOT / "{path}")\n'
                "    module = importlib.util.module_from_spec(spec)\n"
                "    spec.loader.exec_module(module)\n"
                "    assert module is not None\n"
            )
            edits.append({"command": "create", "path": f"tests/test_{name}.py", "file_text": body})
        return edits

    _plan_lint = _plan_custom = staticmethod(lambda files, contents: [])


def _unnumber(view_text: str) -> str:
    """File text from a ``view`` result (``     1\\tline`` per line)."""
    out = []
    for line in view_text.split("\n"):
        m = _VIEW_LINE.match(line)
        if m:
            out.append(m.group(2))
    return "\n".join(out) + ("\n" if out else "")
