"""A linter's findings read from its output, so the lint metric counts findings, not lines.

One parser per output a linter documents, picked from the output itself:

- JSON: ruff (``--output-format=json``: ``filename``, ``location.row``, ``code``, ``message``), pylint
  (``--output-format=json``: ``path``, ``line``, ``message-id``/``symbol``, ``message``; ``json2``: the same
  under ``messages``), eslint (``-f json``: per file ``filePath`` and ``messages``).
- ``path:line[:col]: message`` lines: flake8's default format, ruff's ``concise``, pycodestyle, mypy, pyflakes,
  shellcheck's ``gcc`` format, most compilers. Lines that are not findings (ruff's "Found 4 errors." and
  "[*] 2 fixable", flake8's ``--count`` total, mypy's "Success"/"Found N errors in M files") do not count.
- ruff's default ("full") format: a ``CODE message`` line, then `` --> path:line:col`` (the snippet below it and
  the summary do not count).
- Anything else: each non-empty line is one finding (the fallback, as before), unless a ``finding_pattern``
  is given, which then decides. What linters print when all is well ("All checks passed!", mypy's "Success:
  no issues found", pylint's rating and rules) is never a finding.

Hand-written: no library reads several linters' outputs; the formats are each linter's documented ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "parse_findings"]

# path:line[:col]: message -- the path has no colon-space, the message starts after the position.
_LINE_RE = re.compile(r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+)(?::(?P<col>\d+))?:\s*(?P<message>.+)$")
# ruff's default ("full") format: "CODE message" on one line, " --> path:line:col" on the next.
_ARROW_RE = re.compile(r"^\s*-->\s*(?P<path>[^\s:][^:]*?):(?P<line>\d+):(?P<col>\d+)\s*$")
_HEAD_RE = re.compile(r"^(?P<code>[A-Z]+[0-9]+)\s+(?:\[\*\]\s+)?(?P<message>.+)$")
# What linters print when there is nothing to report: never a finding.
_CLEAN_RE = re.compile(r"^(All checks passed!|Success: no issues found.*|Your code has been rated at .*|[-=*]+)$")


@dataclass(frozen=True)
class Finding:
    """One finding: the file (as the linter named it), its line (0 when unknown), the rule and the message."""

    path: str
    line: int = 0
    code: str = ""
    message: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.code + ' ' if self.code else ''}{self.message}".rstrip()


def _strip(path: str, prefixes: Iterable[str]) -> str:
    for prefix in prefixes:
        if prefix and path.startswith(prefix):
            return path[len(prefix):]
    return path[2:] if path.startswith("./") else path


def _from_json(data: Any, prefixes: Sequence[str]) -> list[Finding] | None:
    if isinstance(data, dict) and isinstance(data.get("messages"), list):   # pylint json2
        data = data["messages"]
    if not isinstance(data, list):
        return None
    out: list[Finding] = []
    for item in data:
        if not isinstance(item, dict):
            return None
        if "filePath" in item and isinstance(item.get("messages"), list):     # eslint: one entry per file
            path = _strip(str(item["filePath"]), prefixes)
            out += [Finding(path, int(m.get("line") or 0), str(m.get("ruleId") or ""), str(m.get("message") or ""))
                    for m in item["messages"] if isinstance(m, dict)]
            continue
        path = item.get("filename") or item.get("path") or item.get("file")
        if not isinstance(path, str):
            return None
        location = item.get("location") if isinstance(item.get("location"), dict) else {}
        line = location.get("row") or item.get("line") or 0
        code = item.get("code") or item.get("message-id") or item.get("messageId") or item.get("symbol") or ""
        out.append(Finding(_strip(path, prefixes), int(line) if str(line).isdigit() else 0, str(code),
                           str(item.get("message") or "")))
    return out


def parse_findings(output: str, *, prefixes: Sequence[str] = (),
                   pattern: re.Pattern[str] | None = None) -> list[Finding]:
    """The findings in a linter's ``output`` (see the module docstring for the formats). ``prefixes`` are
    stripped from the paths (a scratch or worktree directory a linter printed absolutely); ``pattern``, when
    given, decides which lines are findings (the path is read from a ``path:line:`` start when there is one)."""
    text = output.strip()
    if pattern is None and text[:1] in "[{":
        try:
            found = _from_json(json.loads(text), prefixes)
        except ValueError:
            found = None
        if found is not None:
            return found
    lines = [ln for ln in output.splitlines() if ln.strip()]
    arrows = [(i, _ARROW_RE.match(ln)) for i, ln in enumerate(lines)]
    if pattern is None and any(m for _, m in arrows):
        out = []
        for i, m in arrows:
            if m is None:
                continue
            head = _HEAD_RE.match(lines[i - 1].strip()) if i else None
            out.append(Finding(_strip(m.group("path"), prefixes), int(m.group("line")),
                               head.group("code") if head else "", head.group("message") if head else ""))
        return out
    if pattern is None:
        lines = [ln for ln in lines if not _CLEAN_RE.match(ln.strip())]
    if pattern is not None:
        lines = [ln for ln in lines if pattern.search(ln)]
    located = [(ln, _LINE_RE.match(ln.strip())) for ln in lines]
    if pattern is None and any(m for _, m in located):
        located = [(ln, m) for ln, m in located if m]           # summary and context lines are not findings
    out = []
    for ln, m in located:
        if m is None:
            out.append(Finding(_strip(ln.split(":", 1)[0].strip(), prefixes), 0, "", ln.strip()))
            continue
        message = m.group("message").strip()
        code, _, rest = message.partition(" ")
        if not re.fullmatch(r"[A-Z]+[0-9]+|[a-z]+(?:-[a-z]+)+", code):
            code, rest = "", message
        out.append(Finding(_strip(m.group("path"), prefixes), int(m.group("line")), code, rest.strip()))
    return out
