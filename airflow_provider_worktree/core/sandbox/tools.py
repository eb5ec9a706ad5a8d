"""Tools confined to one worktree: the model's text editor and an allowlisted command runner.

Every path the model names goes through :func:`resolve_in_worktree`, which refuses

* absolute paths (``/etc/passwd``, even ``/repo/src/a.py``: the model is told to use repository-relative
  paths such as ``src/a.py``) and home-relative ones (``~/...``);
* ``..`` components, NUL and other control characters, backslashes;
* anything inside ``.git`` (the worktree's ``.git`` file and any nested repository's internals);
* symlinks, at any component, whose target leaves the worktree (each component is ``lstat``-ed and every
  symlink's ``realpath`` is checked against the worktree's ``realpath``).

Refusals are *tool errors* (:class:`ToolResult` with ``is_error=True``) returned to the model, never
exceptions out of the agent loop: the model reads the message and carries on inside the worktree.

The command tool runs argv (no shell) only when its prefix is on an allowlist, in the box
(:mod:`airflow_provider_worktree.core.sandbox.box`: the worktree the only writable path, an allowlisted environment,
limits, everything it started killed at the end). Every argument, and every value after ``=`` in it, that names
a path landing outside the worktree (symlinks followed) is refused before anything runs.

:func:`read_repo_bytes` is the package's one way to read repository content itself (conventions files,
metrics, the editor): it never leaves the worktree, never opens a FIFO or a device, and stops at a size cap.
Text given back to the model never carries lone surrogates (non-UTF-8 file names are shown with U+FFFD).

This module imports no Airflow.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError
from airflow_provider_worktree.core.sandbox.box import BoxLimits, is_within, run_boxed
from airflow_provider_worktree.core.sandbox.proc import ProcessHandle

TEXT_EDITOR_TYPE = "text_editor_20250728"
TEXT_EDITOR_NAME = "str_replace_based_edit_tool"
COMMAND_TOOL_NAME = "run_command"

#: Largest file the editor reads or writes (bytes).
DEFAULT_MAX_FILE_BYTES = 1_000_000
#: Largest text a single ``view`` returns to the model (characters); longer output is cut with a note.
DEFAULT_MAX_VIEW_CHARS = 100_000
#: Largest command output returned to the model (characters): head and tail are kept.
DEFAULT_MAX_OUTPUT_CHARS = 20_000
#: The last line of a ``view`` cut at ``max_view_chars`` starts with this.
CLIPPED_MARK = "<response clipped"
#: Entries listed at most when viewing a directory.
MAX_DIR_ENTRIES = 1_000

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class SandboxViolation(WorktreeProviderError):
    """A path or command the model asked for is not allowed in the worktree. Returned as a tool error."""


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


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate (from a non-UTF-8 file name or a hostile input) replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def read_repo_bytes(root: str | os.PathLike[str], path: str | os.PathLike[str], *, max_bytes: int,
                    truncate: bool = False) -> bytes:
    """The bytes of a regular file of the repository at ``root``: the package's one way to read repository content.

    ``path`` is relative to ``root`` or absolute; symlinks are followed, and the real path must stay inside
    ``root``'s real path. Only a regular file is read: it is opened with ``O_NONBLOCK`` (a FIFO cannot hang us)
    and checked with ``fstat`` (a device, a FIFO or a socket is refused). More than ``max_bytes`` is refused
    (``truncate=True``: the first ``max_bytes`` are returned).

    :raises FileNotFoundError: there is no such file.
    :raises SandboxViolation: it leaves the repository, is not a regular file, or is too large.
    """
    real_root = os.path.realpath(os.fspath(root))
    name = os.fspath(path)
    real = os.path.realpath(name if os.path.isabs(name) else os.path.join(real_root, name))
    shown = os.path.relpath(real, real_root) if is_within(real, real_root) else name
    if not is_within(real, real_root):
        raise SandboxViolation(f"{clean_text(name)} resolves outside the repository; it is not read.")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise SandboxViolation(f"{clean_text(shown)} is a directory.") from None
    except OSError as exc:
        raise SandboxViolation(f"{clean_text(shown)} cannot be opened: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SandboxViolation(f"{clean_text(shown)} is not a regular file (a directory, FIFO, socket or device);"
                                   " it is not read.")
        if st.st_size > max_bytes and not truncate:
            raise SandboxViolation(f"file {clean_text(shown)} is {st.st_size} bytes, over the {max_bytes}-byte limit.")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        if not truncate:
            raise SandboxViolation(f"file {clean_text(shown)} is over the {max_bytes}-byte limit.")
        data = data[:max_bytes]
    return data


def resolve_in_worktree(root: str | os.PathLike[str], user_path: object) -> Path:
    """Resolve a path the model named to a real path inside ``root``; raise :class:`SandboxViolation` if not.

    ``user_path`` must be repository-relative (``src/a.py``; ``.`` or ``""`` is the root itself). The returned
    path has every symlink resolved, and is guaranteed (at the time of the call) to lie inside ``root``'s real
    path. Components that do not exist yet are allowed (for ``create``), as long as no existing component
    escapes.
    """
    real_root = os.path.realpath(os.fspath(root))
    if not isinstance(user_path, str):
        raise SandboxViolation(f"path must be a string, got {type(user_path).__name__}.")
    if _CONTROL_CHARS.search(user_path):
        raise SandboxViolation("path contains a NUL or control character; use a plain repository-relative path.")
    if _SURROGATES.search(user_path):
        raise SandboxViolation("path contains a lone surrogate (not valid Unicode); name files with valid UTF-8.")
    if "\\" in user_path:
        raise SandboxViolation(f"path {user_path!r} contains a backslash; use '/' as the separator.")
    if user_path.startswith("/"):
        raise SandboxViolation(
            f"absolute path {user_path!r} refused: use a path relative to the repository root, "
            "e.g. 'src/module.py' (the repository root is '.')."
        )
    if user_path.startswith("~"):
        raise SandboxViolation(f"path {user_path!r} refused: use a path relative to the repository root.")
    parts = [p for p in PurePosixPath(user_path).parts if p not in ("", ".")]
    if ".." in parts:
        raise SandboxViolation(f"path {user_path!r} refused: '..' components are not allowed; stay inside the "
                               "repository and use repository-relative paths.")
    if ".git" in parts:
        raise SandboxViolation(f"path {user_path!r} refused: git internals (.git) are off limits.")

    current = real_root
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            # The rest does not exist yet: nothing there can be a symlink.
            current = os.path.join(candidate, *parts[index + 1:]) if index + 1 < len(parts) else candidate
            break
        except OSError as exc:
            raise SandboxViolation(f"path {user_path!r} cannot be inspected: {exc.strerror}.") from None
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(candidate)
            if not is_within(target, real_root):
                raise SandboxViolation(
                    f"path {user_path!r} refused: {'/'.join(parts[:index + 1])} is a symlink leading outside "
                    "the repository."
                )
            if ".git" in PurePosixPath(os.path.relpath(target, real_root)).parts:
                raise SandboxViolation(f"path {user_path!r} refused: it leads into git internals (.git).")
            current = target
        else:
            current = candidate
    final = os.path.realpath(current)
    if not is_within(final, real_root):  # belt and braces
        raise SandboxViolation(f"path {user_path!r} refused: it resolves outside the repository.")
    return Path(final)


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


class CommandTool:
    """A custom tool ``run_command``: runs allowlisted commands in the worktree, without a shell, in the box.

    :param root: the worktree (the command's working directory and its only writable path).
    :param allowlist: argv prefixes that may run, e.g. ``[["pytest"], ["python", "-m", "pytest"]]``; a string
        entry is split with :func:`shlex.split`. A command runs only if its argv starts with one of them.
    :param timeout: seconds before everything the command started is killed.
    :param max_output_chars: output (stdout and stderr interleaved) longer than this keeps its head and tail.
    :param env: explicit variables for the command, on top of the box's allowlisted environment (the worker's
        own environment is never passed: see :data:`~airflow_provider_worktree.core.sandbox.box.ENV_ALLOWLIST`).
    :param pass_env: names (or ``PREFIX*``) of worker variables the DAG author lets the command see.
    :param isolation: the box: ``"auto"``, ``"bwrap"`` or ``"none"``
        (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`); :attr:`last_isolation` tells which was in force.
    :param network: let the command use the network (default: none in bubblewrap).
    :param hide: more paths to hide from the command (other worktrees, clone caches).
    :param limits: the box's resource limits.
    :param confine_args: refuse arguments (and values after ``=``) naming a path that lands outside the
        worktree, symlinks followed, so an allowed program is not pointed outside it.

    The allowlist trusts the programs it names: ``python -m pytest`` runs the repository's own test code. The
    box decides what that code can reach; with the fallback box that is everything the worker's user can read.
    """

    name = COMMAND_TOOL_NAME

    def __init__(self, root: str | os.PathLike[str], allowlist: Iterable[Sequence[str] | str], timeout: float = 300,
                 *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS, env: Mapping[str, str] | None = None,
                 pass_env: Sequence[str] = (), isolation: str = "auto", network: bool = False,
                 hide: Sequence[str | os.PathLike[str]] = (), limits: BoxLimits | None = BoxLimits(),
                 confine_args: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigurationError(f"worktree {os.fspath(root)!r} is not a directory; create the worktree first.")
        self._root_real = os.path.realpath(self.root)
        prefixes: list[tuple[str, ...]] = []
        for entry in allowlist:
            argv = shlex.split(entry) if isinstance(entry, str) else [str(a) for a in entry]
            if not argv:
                raise ConfigurationError("allow_commands has an empty entry; give argv prefixes such as ['pytest'].")
            prefixes.append(tuple(argv))
        if not prefixes:
            raise ConfigurationError("allow_commands is empty; give at least one argv prefix such as ['pytest'], or "
                                     "leave commands disabled.")
        self.allowlist = prefixes
        self.timeout = float(timeout)
        self.max_output_chars = max_output_chars
        self.env = dict(env or {})
        self.pass_env = tuple(pass_env)
        self.isolation = isolation
        self.network = network
        self.hide = tuple(hide)
        self.limits = limits
        self.confine_args = confine_args
        #: The isolation the last command ran with ("bwrap", "fallback", "none"); None before the first.
        self.last_isolation: str | None = None
        # Timeout and cancel kill at once; the fallback box's reaper still gets its moment (see run_boxed).
        self._handle = ProcessHandle(grace_s=0)

    def definition(self) -> dict[str, Any]:
        """The custom tool definition to send in ``tools``."""
        allowed = "; ".join(shlex.join(p) for p in self.allowlist)
        return {
            "name": COMMAND_TOOL_NAME,
            "description": (
                "Run a command in the repository root (no shell: no pipes, redirections or variables). "
                f"Only commands starting with one of these are allowed: {allowed}. "
                f"The command is killed after {int(self.timeout)} seconds. Returns the exit code and output."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command line, e.g. 'pytest -q tests'."},
                },
                "required": ["command"],
            },
        }

    def cancel(self) -> None:
        """Kill the running command's process group, if any, and refuse further commands."""
        self._handle.cancel()

    def parse(self, tool_input: object) -> list[str]:
        """The argv of a tool call, or :class:`SandboxViolation` saying why it may not run."""
        if not isinstance(tool_input, Mapping):
            raise SandboxViolation("tool input must be a JSON object such as {\"command\": \"pytest -q\"}.")
        command = tool_input.get("command", tool_input.get("argv"))
        if isinstance(command, str):
            if _CONTROL_CHARS.search(command.replace("\t", " ")):
                raise SandboxViolation("command contains a NUL or control character.")
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                raise SandboxViolation(f"command could not be parsed ({exc}); quote arguments properly.") from None
        elif isinstance(command, list) and all(isinstance(a, str) for a in command):
            argv = list(command)
            if any("\x00" in a for a in argv):
                raise SandboxViolation("command contains a NUL character.")
        else:
            raise SandboxViolation("parameter 'command' is required and must be a string.")
        if not argv:
            raise SandboxViolation("command is empty.")
        if not any(tuple(argv[: len(p)]) == p for p in self.allowlist):
            allowed = "; ".join(shlex.join(p) for p in self.allowlist)
            raise SandboxViolation(f"command {shlex.join(argv)!r} is not allowed; allowed commands start with: "
                                   f"{allowed}.")
        if self.confine_args:
            prefix = next(len(p) for p in self.allowlist if tuple(argv[: len(p)]) == p)
            for arg in argv[prefix:]:
                for value in _path_candidates(arg):
                    if not self._lands_inside(value):
                        raise SandboxViolation(f"argument {clean_text(arg)!r} names a path outside the repository "
                                               f"({clean_text(value)!r}, symlinks followed); use repository-relative "
                                               "paths that stay inside it.")
        return argv

    def _lands_inside(self, value: str) -> bool:
        path = value if os.path.isabs(value) else os.path.join(self._root_real, value)
        return is_within(os.path.realpath(path), self._root_real)

    def execute(self, tool_input: object) -> ToolResult:
        """Run one tool call; refusals, timeouts and missing programs come back as tool errors."""
        try:
            argv = self.parse(tool_input)
        except SandboxViolation as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        try:
            done = run_boxed(argv, self.root, isolation=self.isolation, timeout=self.timeout, env=self.env,
                             pass_env=self.pass_env, network=self.network, hide=self.hide, limits=self.limits,
                             merge_stderr=True, max_output_chars=self.max_output_chars, grace_s=0,
                             handle=self._handle)
            self.last_isolation = done.isolation
        except FileNotFoundError:
            return ToolResult(f"Error: program {argv[0]!r} is not installed on this worker.", is_error=True)
        except OSError as exc:
            return ToolResult(f"Error: could not start {argv[0]!r}: {exc.strerror}", is_error=True)
        except ConfigurationError as exc:  # isolation='bwrap' unavailable, bad setting: the DAG's to fix
            return ToolResult(f"Error: {exc}", is_error=True)
        if not done.started:
            return ToolResult("Error: the run was cancelled; no more commands.", is_error=True)
        text = done.stdout
        if done.timed_out:
            return ToolResult(f"Error: command timed out after {self.timeout:g}s and was killed.\n{text}",
                              is_error=True)
        if done.cancelled:
            return ToolResult(f"Error: command killed because the run was cancelled.\n{text}", is_error=True)
        return ToolResult(f"exit code: {done.returncode}\n{text}")


def _path_candidates(arg: str) -> list[str]:
    """The parts of a command argument that may name a path: the argument itself, every value after an ``=``
    (``-o cache_dir=/abs``, ``--junitxml=link/x``), the value glued to a short option (``-o/abs``), each split
    at ``,`` and ``:`` (lists, ``PATH``-like values). ``~`` counts as absolute (a home directory)."""
    raw = [arg]
    raw += [arg[i + 1:] for i, ch in enumerate(arg) if ch == "="]
    if len(arg) > 2 and arg[0] == "-" and arg[1] != "-":
        raw.append(arg[2:])
    out: list[str] = []
    for item in raw:
        for piece in re.split(r"[,:]", item):
            if piece and piece not in out:
                out.append("/" if piece.startswith("~") else piece)
    return out
