"""The offline server's models: deterministic TEST DOUBLES that stand in for Claude, not Claude.

:class:`RuleBasedModel` answers the built-in maintenance tasks from the ``<shard>`` block of the first user
message; :class:`ScriptedModel` replays canned replies. A model's contract with the server is one method,
``reply(request) -> {"content": [...], "stop_reason": ..., "usage"?: {...}}`` in the non-streaming Messages API
shape; the server turns that into JSON or server-sent events (or, for a Message Batch entry, one line of its results).

A request whose last user turn contains :data:`~airflow_provider_worktree.core.runners.batch.ONE_RESPONSE_INSTRUCTION`
(batch mode: the files were viewed in the request itself and there is no second turn) is answered in one response
with every edit.

The rule-based model's parts: :mod:`.toolsets` (the text editor or Claude Code's tools), :mod:`.conversation`
(what the conversation shows), :mod:`.planners` (what each task changes in a file) and :mod:`.edits` (changes as
tool calls, within a reply's room). This module holds the turn policy.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_worktree.core.tasks import parse_shard_block
from airflow_provider_worktree.testing.conversation import FileState, asks_one_response, history, read_states
from airflow_provider_worktree.testing.edits import Edit, call_tokens, fit, render
from airflow_provider_worktree.testing.lint_fixes import plan_lint_fixes
from airflow_provider_worktree.testing.planners import in_range, plan_changes, plan_tests
from airflow_provider_worktree.testing.toolsets import ToolSet, text_of, toolset_for

#: What the rule-based model calls itself in its summaries (it is never mistaken for Claude).
DOUBLE = "offline rule-based test double, not Claude"
#: Edits per reply at most; the rest follow in the next turns.
MAX_EDITS_PER_TURN = 30
#: Share of the request's ``max_tokens`` one reply's tool calls may use (estimated), the rest is margin.
TURN_SHARE = 0.6
#: One-response (batch) replies: tokens of ``max_tokens`` kept for the reply's text block and framing.
ONE_RESPONSE_MARGIN = 200


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
    * ``lint``: once a Python file is read in full, the mechanical fixes of :mod:`.lint_fixes` (unused imports,
      trailing whitespace, ``== None``/``== True``, f-strings without placeholders); other findings stay.
    * ``tests``: creates ``tests/test_<module>.py`` that imports the module. ``custom`` views and ends.

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
                shard = parse_shard_block(text_of(m.get("content")))
                break
        if shard is None:
            return text_reply("No <shard> block found in the first user message; nothing to do.")
        files = [f for f in shard.get("files") or [] if isinstance(f, str)]
        task = str(shard.get("task") or "custom")
        tools = toolset_for(request)
        if tools is None:
            return text_reply(f"Shard {shard.get('shard_id')}: the request offers neither the text editor nor "
                              f"Claude Code's Read/Edit tools, so nothing was changed ({DOUBLE}).")
        calls, results = history(messages)
        mine = [c for c in calls if tools.rel(c) in files]
        states = read_states(files, mine, results, tools)
        one = asks_one_response(messages)

        if task in ("todo", "docstrings", "lint"):
            return self._edit_turn(task, request, shard, files, states, calls, results, tools, one_response=one)

        # tests, custom: a first look at each file, then (tests) one new test module per module, then end.
        # In one response there is no look: a test module needs only the module's path.
        views = [] if one else [tools.view(f, 1, 0) for f in files if not states[f].views]
        if views:
            return self._tool_reply(f"Reading {len(views)} file(s) of shard {shard.get('shard_id')}.",
                                    self._blocks("rbview", views))
        issued = {k for c in calls if (k := tools.edit_key(c)) is not None}
        plan: list[tuple[str, dict[str, Any]]] = []
        if task == "tests":
            plan = [tools.create(p, body) for p, body in plan_tests(
                [f for f in files if (one or states[f].views) and not states[f].failed])]
        todo = [(n, i) for n, i in plan if tools.edit_key({"name": n, "input": i}) not in issued]
        left = 0
        if one:
            edits = [Edit(n, i, call_tokens(n, i)) for n, i in todo]
            batch, left = fit(edits, self._one_response_room(request), 0, None, strict=True)
            batch_calls = [(e.name, e.input) for e in batch]
        else:
            batch_calls = todo[:MAX_EDITS_PER_TURN]
        if batch_calls:
            return self._tool_reply(f"Making {len(batch_calls)} edit(s)"
                                    + (f" ({left} more did not fit max_tokens)." if left else "."),
                                    self._blocks("rbedit_r0_", batch_calls))
        return self._summary(task, shard, files, calls, results, states, left, one)

    @staticmethod
    def _one_response_room(request: Mapping[str, Any]) -> int:
        """Tokens the edits of a one-response reply may use: the request's ``max_tokens`` less the margin."""
        return max(0, int(request.get("max_tokens") or 4096) - ONE_RESPONSE_MARGIN)

    def _edit_turn(self, task: str, request: Mapping[str, Any], shard: Mapping[str, Any], files: list[str],
                   states: dict[str, FileState], calls: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                   tools: ToolSet, *, one_response: bool = False) -> Mapping[str, Any]:
        """One turn of ``todo``/``docstrings``: the next chunk of each file not read to the end, and the edits of
        what is read so far (bottom-up, bounded), in one reply: the views run first, then the edits, all above the
        unread part. The work is done early, before a budget can run out on a big file. An edit refused while its
        file was partly read is retried once when the file is read in full.

        ``one_response``: no views and no per-turn cut; every edit of what the request shows, within its
        ``max_tokens``."""
        if task in ("docstrings", "lint"):
            states = {f: st for f, st in states.items() if f.endswith(".py")}
        views = [] if one_response else [tools.view(f, st.next_line() + st.shift, st.errors)
                                         for f, st in states.items() if not st.failed and st.complete() is None]
        room = (self._one_response_room(request) if one_response
                else int(int(request.get("max_tokens") or 4096) * TURN_SHARE))
        max_edits = None if one_response else MAX_EDITS_PER_TURN
        used = sum(call_tokens(n, i) for n, i in views)
        attempts: dict[tuple[str, int], list[bool]] = {}
        for c in calls:
            m = re.match(r"toolu_rbedit_r(\d+)_", str(c.get("id")))
            if m and tools.rel(c) in states:
                ok = c["id"] in results and not results[c["id"]]["is_error"]
                attempts.setdefault((tools.rel(c), int(m.group(1))), []).append(ok)
        batch: list[Edit] = []
        left = 0
        for f, st in states.items():
            known = st.known()
            if st.failed or not known:
                continue
            complete = st.complete() is not None
            planned = (tuple(plan_lint_fixes(f, known)) if complete else ()) if task == "lint" else \
                plan_changes(task, f, known, complete)
            changes = in_range(list(planned), shard.get("lines"))
            tried = {row: res for (ff, row), res in attempts.items() if ff == f}
            done = [ch for ch in changes if any(tried.get(ch.start, ()))]
            todo = [ch for ch in changes if not any(tried.get(ch.start, ()))
                    and len(tried.get(ch.start, ())) < (2 if complete else 1)]
            fitted, missed = fit(render(f, known, todo, tools, done, margin=0 if complete else 2), room, used,
                                 None if max_edits is None else max_edits - len(batch), strict=one_response)
            batch += fitted
            used += sum(e.tokens for e in fitted)
            left += missed
        if not views and not batch:
            return self._summary(task, shard, files, calls, results, states, left, one_response)
        text = (f"Reading {len(views)} file(s) and " if views else "") + f"making {len(batch)} edit(s)" + (
            (f" ({left} more did not fit max_tokens)." if one_response else f" ({left} more to follow).")
            if left else ".")
        return self._tool_reply(text, self._blocks("rbview", views)
                                + [self._block(f"rbedit_r{e.row}_", i, e.name, e.input) for i, e in enumerate(batch)])

    def _summary(self, task: str, shard: Mapping[str, Any], files: list[str], calls: list[dict[str, Any]],
                 results: dict[str, dict[str, Any]], states: dict[str, FileState], left: int,
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

    @classmethod
    def _blocks(cls, kind: str, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        return [cls._block(kind, i, name, inp) for i, (name, inp) in enumerate(calls)]

    @staticmethod
    def _tool_reply(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": text}, *blocks], "stop_reason": "tool_use"}
