"""The model's text editor (``text_editor_20250728``), confined to one worktree.

Every path goes through :func:`~airflow_provider_worktree.core.sandbox.paths.resolve_in_worktree` and every read
through :func:`~airflow_provider_worktree.core.sandbox.paths.read_repo_bytes`; refusals come back to the model as
tool errors (:class:`~airflow_provider_worktree.core.sandbox.tool_result.ToolResult`). Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox.paths import (
    SandboxViolation,
    clean_text,
    read_repo_bytes,
    resolve_in_worktree,
)
from airflow_provider_worktree.core.sandbox.tool_result import ToolResult

TEXT_EDITOR_TYPE = "text_editor_20250728"
TEXT_EDITOR_NAME = "str_replace_based_edit_tool"

#: Largest file the editor reads or writes (bytes).
DEFAULT_MAX_FILE_BYTES = 1_000_000
#: Largest text a single ``view`` returns to the model (characters); longer output is cut with a note.
DEFAULT_MAX_VIEW_CHARS = 100_000
#: The last line of a ``view`` cut at ``max_view_chars`` starts with this.
CLIPPED_MARK = "<response clipped"
#: Entries listed at most when viewing a directory.
MAX_DIR_ENTRIES = 1_000


def _relative(root_real: str, path: Path) -> str:
    rel = os.path.relpath(os.fspath(path), root_real)
    return "." if rel == "." else PurePosixPath(*Path(rel).parts).as_posix()


class TextEditorTool:
    """The Anthropic-defined text editor (``text_editor_20250728``) executed inside one worktree.

    Commands: ``view`` (file with line numbers, optional ``view_range``; or a directory listing two levels
    deep, hidden entries skipped), ``create`` (new files only), ``str_replace`` (exactly one match),
    ``insert`` (after ``insert_line``; 0 inserts at the top). ``undo_edit`` does not exist in this tool
    version and is answered with a tool error.

    :param root: the worktree directory.
    :param allowed_write: optional predicate on the repository-relative POSIX path of the file about to be
        written; ``False`` refuses the write (the shard's scope).
    :param max_file_bytes: files larger than this are neither read nor written.
    :param max_view_chars: ``view`` output is cut at this many characters (and the definition's
        ``max_characters`` tells the model so).
    """

    name = TEXT_EDITOR_NAME

    def __init__(self, root: str | os.PathLike[str], allowed_write: Callable[[str], bool] | None = None, *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_view_chars: int = DEFAULT_MAX_VIEW_CHARS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigurationError(f"worktree {os.fspath(root)!r} is not a directory; create the worktree first.")
        self._root_real = os.path.realpath(self.root)
        self.allowed_write = allowed_write
        self.max_file_bytes = max_file_bytes
        self.max_view_chars = max_view_chars
        self._written: list[str] = []
        self._lock = threading.Lock()

    # -- API surface -------------------------------------------------------------------------------------------
    def definition(self) -> dict[str, Any]:
        """The tool definition to send in ``tools``."""
        return {"type": TEXT_EDITOR_TYPE, "name": TEXT_EDITOR_NAME, "max_characters": self.max_view_chars}

    @property
    def files_written(self) -> list[str]:
        """Repository-relative POSIX paths written so far, in first-write order, without duplicates."""
        with self._lock:
            return list(self._written)

    def execute(self, tool_input: object) -> ToolResult:
        """Run one tool call; every problem comes back as ``ToolResult(is_error=True)``."""
        try:
            if not isinstance(tool_input, Mapping):
                raise SandboxViolation(
                    "tool input must be a JSON object such as {\"command\": \"view\", \"path\": \"src/a.py\"}."
                )
            command = tool_input.get("command")
            handler = {"view": self._view, "create": self._create, "str_replace": self._str_replace,
                       "insert": self._insert}.get(command)  # type: ignore[arg-type]
            if handler is None:
                if command == "undo_edit":
                    raise SandboxViolation("undo_edit is not available in this tool version; use str_replace to "
                                           "put the previous text back.")
                raise SandboxViolation(f"unknown command {command!r}: use one of view, create, str_replace, insert.")
            return handler(tool_input)
        except SandboxViolation as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        except OSError as exc:
            return ToolResult(f"Error: {exc.strerror or exc}", is_error=True)
        except Exception as exc:  # noqa: BLE001 - a tool must never crash the agent loop
            return ToolResult(f"Error: {type(exc).__name__}: {exc}", is_error=True)

    # -- helpers ------------------------------------------------------------------------------------------------
    @staticmethod
    def _require_str(tool_input: Mapping, key: str, *, allow_empty: bool = True) -> str:
        value = tool_input.get(key)
        if not isinstance(value, str):
            raise SandboxViolation(f"parameter {key!r} is required and must be a string.")
        if not allow_empty and not value:
            raise SandboxViolation(f"parameter {key!r} must not be empty.")
        return value

    def _path(self, tool_input: Mapping) -> Path:
        return resolve_in_worktree(self._root_real, tool_input.get("path"))

    def _read_text(self, path: Path) -> str:
        if path.is_dir():
            raise SandboxViolation(f"{_relative(self._root_real, path)} is a directory.")
        try:
            data = read_repo_bytes(self._root_real, path, max_bytes=self.max_file_bytes)
        except FileNotFoundError:
            raise SandboxViolation(f"file {_relative(self._root_real, path)} does not exist; use create to make it.") \
                from None
        if b"\x00" in data[:8192]:
            raise SandboxViolation(f"file {_relative(self._root_real, path)} is binary; only text files can be edited.")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SandboxViolation(f"file {_relative(self._root_real, path)} is not UTF-8 text.") from None

    def _check_write(self, path: Path) -> str:
        rel = _relative(self._root_real, path)
        if rel == ".":
            raise SandboxViolation("the repository root is a directory, not a file.")
        if self.allowed_write is not None and not self.allowed_write(rel):
            raise SandboxViolation(f"writing {rel} is outside this shard's scope; edit only the files you were given.")
        return rel

    def _write_text(self, path: Path, text: str, rel: str, *, new: bool) -> None:
        data = text.encode("utf-8")
        if len(data) > self.max_file_bytes:
            raise SandboxViolation(f"the new content of {rel} is {len(data)} bytes, over the "
                                   f"{self.max_file_bytes}-byte limit.")
        if new:
            # Parents were validated by resolve_in_worktree: they are inside the root or do not exist yet.
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        else:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            fd, tmp = tempfile.mkstemp(prefix=".wt-edit-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        with self._lock:
            if rel not in self._written:
                self._written.append(rel)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_view_chars:
            return text
        return text[: self.max_view_chars] + f"\n{CLIPPED_MARK}: use view_range to see the rest of the file>"

    # -- commands -----------------------------------------------------------------------------------------------
    def _view(self, tool_input: Mapping) -> ToolResult:
        path = self._path(tool_input)
        rel = _relative(self._root_real, path)
        if path.is_dir():
            if tool_input.get("view_range") is not None:
                raise SandboxViolation("view_range applies to files, not directories.")
            return ToolResult(self._cut(self._listing(path, rel)))
        text = self._read_text(path)
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        start, end = 1, len(lines)
        view_range = tool_input.get("view_range")
        if view_range is not None:
            if (not isinstance(view_range, (list, tuple)) or len(view_range) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in view_range)):
                raise SandboxViolation("view_range must be two integers [start_line, end_line] (end -1 = to the end).")
            start, end = view_range
            if end == -1:
                end = len(lines)
            if start < 1 or start > max(len(lines), 1) or end < start or end > len(lines):
                raise SandboxViolation(f"view_range {list(view_range)} is invalid: {rel} has {len(lines)} lines; "
                                       "lines are numbered from 1.")
        numbered = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))
        return ToolResult(self._cut(numbered))

    def _listing(self, path: Path, rel: str) -> str:
        entries: list[str] = []

        def walk(directory: Path, depth: int) -> None:
            try:
                children = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                return
            for entry in children:
                if entry.name.startswith(".") or entry.name == "node_modules":
                    continue
                if len(entries) >= MAX_DIR_ENTRIES:
                    return
                child_rel = clean_text(_relative(self._root_real, Path(entry.path)))
                is_dir = entry.is_dir(follow_symlinks=False)
                entries.append(child_rel + ("/" if is_dir else ""))
                if is_dir and depth < 2:
                    walk(Path(entry.path), depth + 1)

        walk(path, 1)
        head = f"Files and directories up to 2 levels deep in {rel}, excluding hidden items:\n"
        tail = f"\n<listing cut at {MAX_DIR_ENTRIES} entries>" if len(entries) >= MAX_DIR_ENTRIES else ""
        return head + "\n".join(entries) + tail

    def _create(self, tool_input: Mapping) -> ToolResult:
        path = self._path(tool_input)
        file_text = self._require_str(tool_input, "file_text")
        rel = self._check_write(path)
        if os.path.lexists(path):
            raise SandboxViolation(f"{rel} already exists; create makes new files only, use str_replace or insert "
                                   "to change it.")
        self._write_text(path, file_text, rel, new=True)
        return ToolResult(f"File created successfully at: {rel}")

    def _str_replace(self, tool_input: Mapping) -> ToolResult:
        path = self._path(tool_input)
        old = self._require_str(tool_input, "old_str", allow_empty=False)
        new = tool_input.get("new_str", "")
        if new is None:
            new = ""
        if not isinstance(new, str):
            raise SandboxViolation("parameter 'new_str' must be a string.")
        rel = self._check_write(path)
        text = self._read_text(path)
        count = text.count(old)
        if count == 0:
            raise SandboxViolation(f"no match for old_str in {rel}; it must match the file exactly, whitespace "
                                   "included (view the file first).")
        if count > 1:
            starts, idx = [], text.find(old)
            while idx != -1:
                starts.append(text.count("\n", 0, idx) + 1)
                idx = text.find(old, idx + 1)
            raise SandboxViolation(f"old_str occurs {count} times in {rel} (lines {starts[:20]}); include more "
                                   "context so that it matches exactly once.")
        updated = text.replace(old, new, 1)
        self._write_text(path, updated, rel, new=False)
        first = text[: text.find(old)].count("\n") + 1
        return ToolResult(f"The file {rel} has been edited: 1 replacement at line {first}.\n"
                          + self._snippet(updated, first, new.count("\n") + 1))

    def _insert(self, tool_input: Mapping) -> ToolResult:
        path = self._path(tool_input)
        line = tool_input.get("insert_line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise SandboxViolation("parameter 'insert_line' is required and must be an integer (0 = top of file).")
        key = "new_str" if "insert_text" not in tool_input and "new_str" in tool_input else "insert_text"
        insert_text = self._require_str(tool_input, key)
        rel = self._check_write(path)
        text = self._read_text(path)
        lines = text.split("\n")
        trailing_newline = text.endswith("\n")
        if lines[-1] == "":
            lines.pop()
        if line < 0 or line > len(lines):
            raise SandboxViolation(f"insert_line {line} is out of range: {rel} has {len(lines)} lines "
                                   f"(use 0 to {len(lines)}).")
        new_lines = insert_text.split("\n")
        if insert_text.endswith("\n"):
            new_lines.pop()
        result = lines[:line] + new_lines + lines[line:]
        updated = "\n".join(result) + ("\n" if trailing_newline or not text else "")
        self._write_text(path, updated, rel, new=False)
        return ToolResult(f"The file {rel} has been edited: {len(new_lines)} line(s) inserted after line {line}.\n"
                          + self._snippet(updated, line + 1, len(new_lines)))

    @staticmethod
    def _snippet(text: str, first_line: int, n_lines: int, context: int = 3) -> str:
        lines = text.split("\n")
        lo = max(1, first_line - context)
        hi = min(len(lines), first_line + n_lines - 1 + context)
        return "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(lo, hi + 1))

