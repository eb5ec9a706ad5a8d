"""Changes rendered into the rule-based model's edit calls, and the edits one reply has room for.

A change (:class:`~airflow_provider_worktree.testing.planners.Change`, on the lines as read) becomes a
``str_replace``/``Edit`` whose old text is made unique with the least context, or an ``insert``; the edits of a
file are rendered bottom-up so the line numbers above stay valid. Sizes are estimated generously (3 bytes of
compact JSON a token) so that a reply stays within the request's ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_worktree.testing.planners import Change, apply_changes
from airflow_provider_worktree.testing.tokens import json_tokens
from airflow_provider_worktree.testing.toolsets import ToolSet

#: An edit larger than this (estimated tokens) is left alone: a careful model does not rewrite a screenful of
#: code to change one comment.
MAX_EDIT_TOKENS = 600
#: Context lines added at most around an edit to make its ``old_str`` unique.
MAX_CONTEXT_LINES = 12


def call_tokens(name: str, tool_input: Any, *, id_chars: int = 28) -> int:
    """A deliberately generous size estimate of a ``tool_use`` block (an id of ``id_chars`` characters) calling
    ``name`` with ``tool_input``: 3 bytes of compact JSON a token."""
    return json_tokens({"type": "tool_use", "id": "x" * id_chars, "name": name, "input": tool_input}, 3)


@dataclass(frozen=True)
class Edit:
    """One tool call that makes a change, its estimated size in tokens, and the first line it changes."""

    name: str
    input: dict[str, Any]
    tokens: int
    row: int = -1   # first line (0-based) of the change, as read


def render(path: str, lines: tuple[str, ...], changes: list[Change], tools: ToolSet,
           done: Sequence[Change] = (), margin: int = 0) -> list[Edit]:
    """Tool calls for ``changes`` (lines as read) on the file with the ``done`` changes applied, bottom-up (so line
    numbers above stay valid), each made unique with the least context read from the file as it will be when the
    call runs, plus ``margin`` lines (the unread rest of a file may repeat a short text). Changes that cannot be
    made small are left out."""
    cur = apply_changes(lines, done)
    out: list[Edit] = []
    for orig in sorted(changes, key=lambda c: (-c.start, -c.end)):
        shift = sum(len(d.new) - (d.end - d.start) for d in done if d.start < orig.start)
        ch = Change(orig.start + shift, orig.end + shift, orig.new)
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
        tokens = call_tokens(name, inp, id_chars=21)
        if tokens > MAX_EDIT_TOKENS:
            continue
        cur[ch.start:ch.end] = ch.new
        out.append(Edit(name, inp, tokens, orig.start))
    return out


def fit(edits: Iterable[Edit], room: int, used: int, max_edits: int | None,
        strict: bool = False) -> tuple[list[Edit], int]:
    """The edits that fit in ``room`` tokens (``used`` already taken) and ``max_edits``; and how many did not.
    ``strict``: after the first edit that does not fit, none is taken (the edits of one file are rendered
    bottom-up on the file with the edits below applied, so an edit above may quote one left out)."""
    batch: list[Edit] = []
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
