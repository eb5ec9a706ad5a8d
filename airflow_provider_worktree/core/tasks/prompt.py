"""The prompt of a shard: the stable system prompt (:func:`system_prompt_for`, with the repository's conventions
from :func:`read_conventions`) and the shard part of the user message (:func:`render_shard_prompt`), which ends
with the machine-readable ``<shard>`` block that :func:`parse_shard_block` reads back."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox.paths import SandboxViolation, read_repo_bytes
from airflow_provider_worktree.core.tasks.catalog import LintTask, MaintenanceTask
from airflow_provider_worktree.core.tasks.registry import _as_task

__all__ = ["system_prompt_for", "render_shard_prompt", "parse_shard_block", "read_conventions", "CONVENTION_FILES"]

SHARD_BLOCK_RE = re.compile(r"<shard>\s*\n(.*?)\n\s*</shard>", re.S)
CONVENTION_FILES = ("CLAUDE.md", "AGENTS.md", "CONTRIBUTING.md", ".github/CONTRIBUTING.md")
DEFAULT_CONVENTIONS_CAP = 8_000


def _task_instructions(task: MaintenanceTask) -> str:
    if isinstance(task, LintTask):
        return task.instructions_with_command
    return task.instructions


def system_prompt_for(task: MaintenanceTask | str, conventions: str = "") -> str:
    """The stable, cacheable prefix: role and rules, the task's instructions, the repository conventions."""
    t = _as_task(task)
    t.validate()
    parts = [t.system_prompt, f"## Task: {t.name}\n{_task_instructions(t)}"]
    if conventions and conventions.strip():
        parts.append("## Repository conventions (follow them)\n" + conventions.strip())
    return "\n\n".join(parts) + "\n"


def render_shard_prompt(task: MaintenanceTask | str, shard: Mapping[str, Any],
                        custom_prompt: str | None = None) -> str:
    """The shard-specific part of the user message: directions, the file list, extra instructions, then
    the machine-readable ``<shard>`` block (compact JSON, sorted keys) as its last lines."""
    t = _as_task(task)
    files = list(shard.get("files") or [])
    if not files or "shard_id" not in shard:
        raise ConfigurationError("The shard needs 'shard_id' and a non-empty 'files' list (see plan_shards).")
    if shard.get("task", t.name) != t.name:
        raise ConfigurationError(f"Shard {shard['shard_id']} belongs to task {shard['task']!r}, not {t.name!r}. "
                                 "Render it with its own task.")
    span = _shard_lines(shard)
    lines = [f"Shard {shard['shard_id']} ({len(files)} file(s)). {t.shard_instructions(shard)}", "",
             "Files in this shard (edit only these):"]
    lines += [f"- {f}" for f in files]
    if span:
        lines += ["", f"Work only on lines {span[0]}-{span[1]} of {files[0]} (line numbers as committed). The "
                  "file is too large for one view: view that range with view_range, and leave the rest of the "
                  "file to other shards."]
    if custom_prompt and custom_prompt.strip():
        lines += ["", "Additional instructions:", custom_prompt.strip()]
    data: dict[str, Any] = {"files": files, "shard_id": shard["shard_id"], "task": t.name}
    if span:
        data["lines"] = span
    block = json.dumps(data, sort_keys=True, separators=(",", ":"))
    lines += ["", "<shard>", block, "</shard>"]
    return "\n".join(lines)


def parse_shard_block(text: str) -> dict[str, Any] | None:
    """The last ``<shard>`` block of ``text`` as a dict with shard_id, task, files (and ``lines``, ``[start,
    end]``, for a range of one big file); None if absent/invalid."""
    if not text:
        return None
    matches = SHARD_BLOCK_RE.findall(text)
    if not matches:
        return None
    try:
        data = json.loads(matches[-1])
    except ValueError:
        return None
    if (not isinstance(data, dict) or not isinstance(data.get("shard_id"), str)
            or not isinstance(data.get("task"), str) or not isinstance(data.get("files"), list)
            or not all(isinstance(f, str) for f in data["files"])):
        return None
    parsed = {"shard_id": data["shard_id"], "task": data["task"], "files": list(data["files"])}
    span = _shard_lines(data)
    if span and len(parsed["files"]) == 1:
        parsed["lines"] = span
    return parsed


def _shard_lines(shard: Mapping[str, Any]) -> list[int] | None:
    """The shard's ``[start, end]`` line range (1-based, inclusive) when it has a valid one."""
    span = shard.get("lines")
    if (isinstance(span, (list, tuple)) and len(span) == 2 and all(type(v) is int for v in span)
            and 1 <= span[0] <= span[1]):
        return [span[0], span[1]]
    return None


def read_conventions(repo_path: str | os.PathLike[str], cap: int = DEFAULT_CONVENTIONS_CAP) -> str:
    """The repository's CLAUDE.md, AGENTS.md and CONTRIBUTING.md (those present), each under a heading,
    truncated to ``cap`` characters in total. Files that resolve outside the repository are ignored."""
    root = Path(repo_path).resolve()
    parts: list[str] = []
    remaining = cap
    for name in CONVENTION_FILES:
        try:
            data = read_repo_bytes(root, name, max_bytes=max(remaining, 0) * 4, truncate=True)
        except (OSError, SandboxViolation):
            continue
        text = data.decode("utf-8", errors="replace").strip()
        if not text or remaining <= 0:
            continue
        header = f"### {name}\n"
        body_room = remaining - len(header)
        if body_room <= 0:
            break
        if len(text) > body_room:
            text = text[: max(0, body_room - 16)].rstrip() + "\n[... truncated]"
        parts.append(header + text)
        remaining -= len(parts[-1]) + 2
    return "\n\n".join(parts)
