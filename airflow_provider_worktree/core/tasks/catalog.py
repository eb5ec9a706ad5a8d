"""The maintenance task catalog: tasks, shard planning, the shard prompt, success metrics, scope checks.

Plain Python (no Airflow). A *task* says what Claude does to a shard's files (``instructions``), which
files are candidates (``discover``), how success is measured (``measure`` before and after, then
``evaluate``) and which paths it may touch (``allowed_paths``). :func:`plan_repository` turns the candidates
into a :class:`Plan` (shard dicts, see docs/architecture.md "The shard dict", plus the files it skipped and
why; the skip rules live in :mod:`~airflow_provider_worktree.core.files.listing`), :func:`plan_shards` into the
shard dicts alone; :func:`render_shard_prompt` produces the shard part of the user message, ending with the
``<shard>`` block that :func:`parse_shard_block` reads back.

Built-in tasks: ``todo``, ``docstrings``, ``lint`` (needs ``lint_command``), ``tests``, ``custom``
(needs ``prompt``). Add your own with a :class:`MaintenanceTask` subclass and :func:`register_task`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError, GitError, WorktreeProviderError
from airflow_provider_worktree.core.git.command import run_git
from airflow_provider_worktree.core.files import listing as R
from airflow_provider_worktree.core.sandbox.box import run_boxed
from airflow_provider_worktree.core.files.listing import Listing, match_glob
from airflow_provider_worktree.core.sandbox.tools import DEFAULT_MAX_FILE_BYTES as EDITOR_MAX_FILE_BYTES
from airflow_provider_worktree.core.sandbox.tools import DEFAULT_MAX_VIEW_CHARS, SandboxViolation, read_repo_bytes

__all__ = [
    "TASKS", "MaintenanceTask", "TodoTask", "DocstringsTask", "LintTask", "TestsTask", "CustomTask",
    "register_task", "get_task", "plan_shards", "plan_repository", "Plan", "DEFAULT_MAX_FILE_BYTES", "shard_id_for",
    "render_shard_prompt", "parse_shard_block",
    "system_prompt_for", "read_conventions", "check_scope", "ScopeViolation", "PathScope", "run_verify",
    "VerifyResult", "match_glob", "count_todo_markers",
]

TASK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SHARD_BLOCK_RE = re.compile(r"<shard>\s*\n(.*?)\n\s*</shard>", re.S)
CONVENTION_FILES = ("CLAUDE.md", "AGENTS.md", "CONTRIBUTING.md", ".github/CONTRIBUTING.md")
DEFAULT_CONVENTIONS_CAP = 8_000
DEFAULT_VERIFY_TIMEOUT = 600.0
_OUTPUT_CAP = 10_000_000          # characters of command output read back (the lint metric counts lines)
_TAIL_CHARS = 4_000

# --------------------------------------------------------------------------------------------- globs


def _matches_globs(path: str, globs: Sequence[str]) -> bool:
    """Included by at least one glob and excluded by none (``!pattern`` excludes)."""
    includes = [g for g in globs if not g.startswith("!")]
    excludes = [g[1:] for g in globs if g.startswith("!")]
    if includes and not any(match_glob(path, g) for g in includes):
        return False
    return not any(match_glob(path, g) for g in excludes)


def _normalise_globs(globs: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if globs is None:
        return list(default)
    if isinstance(globs, str):
        globs = [globs]
    globs = [g.strip() for g in globs if g and g.strip()]
    if not globs:
        raise ConfigurationError("globs is empty. Pass at least one glob such as '**/*.py', or None for the default.")
    return globs


# ------------------------------------------------------------------------------------- git helpers


def _resolve_ref(repo_path: str | os.PathLike[str], ref: str) -> str:
    if not Path(repo_path).exists():
        raise ConfigurationError(f"Repository path {repo_path} does not exist. Pass the path of a git clone.")
    try:
        return run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo_path).stdout.strip()
    except GitError as exc:
        raise ConfigurationError(
            f"Cannot resolve ref {ref!r} in {repo_path}: {exc.stderr or 'unknown revision'}. "
            "Pass an existing branch, tag or commit of that repository as ref."
        ) from exc


# ------------------------------------------------------------------------------------------ metrics

# A marker counts only inside a comment: after a comment leader on the same line.
_TODO_WORDS = ("TODO", "FIXME", "XXX", "HACK")
_TODO_LINE_RE = re.compile(
    r"(?:#|//|/\*|<!--|--|^[ \t]*\*)(?:.*?)(?<![A-Za-z0-9_])(?:TODO|FIXME|XXX|HACK)(?![A-Za-z0-9_])", re.M
)
_TODO_LEADER_RE = re.compile(r"#|//|/\*|<!--|--|^[ \t]*\*")
_TODO_WORD_RE = re.compile(r"(?<![A-Za-z0-9_])(?:TODO|FIXME|XXX|HACK)(?![A-Za-z0-9_])")
#: The same rule as an ERE for ``git grep -E`` (discovery), kept equivalent to _TODO_LINE_RE.
_TODO_GREP_ERE = r"(#|//|/\*|<!--|--|^[[:space:]]*\*)(.*[^A-Za-z0-9_])?(TODO|FIXME|XXX|HACK)([^A-Za-z0-9_]|$)"


def count_todo_markers(text: str) -> int:
    """Number of TODO/FIXME/XXX/HACK markers inside comments (after ``#``, ``//``, ``/*``, ``<!--``,
    ``--`` or a leading ``*``) in ``text``."""
    total = 0
    for match in _TODO_LINE_RE.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.start())
        line = text[line_start:len(text) if line_end == -1 else line_end]
        leader = _TODO_LEADER_RE.search(line)
        total += len(_TODO_WORD_RE.findall(line[leader.start():])) if leader else 1
    return total


def _read_text(path: Path, root: Path | None = None) -> str | None:
    """The text of a repository file (invalid UTF-8 replaced; "" for binary); None when it is missing, leaves
    ``root`` (default: its directory), is not a regular file or is over :data:`_METRIC_MAX_BYTES`."""
    try:
        data = read_repo_bytes(root if root is not None else path.parent, path, max_bytes=_METRIC_MAX_BYTES)
    except (OSError, SandboxViolation):
        return None
    if b"\0" in data[:8192]:
        return ""
    return data.decode("utf-8", errors="replace")


#: Largest file a metric reads (bytes); a larger one counts as missing.
_METRIC_MAX_BYTES = 8_000_000


def _missing_docstrings(source: str) -> list[tuple[str, int]]:
    """``(name, line)`` of the public module/class/function docstrings missing in ``source`` (the module is
    ``<module>`` at line 1). Raises SyntaxError. Private names (leading ``_``) and functions nested in functions
    are not counted; an empty module is not counted."""
    tree = R.parse_python(source)
    missing: list[tuple[str, int]] = []
    if tree.body and ast.get_docstring(tree) is None:
        missing.append(("<module>", 1))

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                qual = f"{prefix}{node.name}"
                if ast.get_docstring(node) is None:
                    missing.append((qual, node.lineno))
                if isinstance(node, ast.ClassDef):
                    visit(node.body, qual + ".")

    visit(tree.body, "")
    return missing


def _docstring_report(source: str) -> tuple[int, list[str]]:
    """(missing count, names) of the public docstrings missing in ``source`` (see _missing_docstrings)."""
    missing = _missing_docstrings(source)
    return len(missing), [name for name, _ in missing]


_SKIP_NAMES = {"skip", "skipif", "skipIf", "skipUnless", "xfail", "skipTest"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _is_skip(node: ast.AST) -> bool:
    name = _dotted(node)
    return bool(name) and name.rsplit(".", 1)[-1] in _SKIP_NAMES


def _test_report(source: str, rel: str) -> tuple[list[str], int]:
    """(test ids, skip markers) of a test module: ``test*`` functions at module level or in ``Test*``
    classes; skips are skip/skipif/xfail decorators, ``pytest.skip()``/``self.skipTest()`` calls and a
    skipping ``pytestmark``."""
    tree = ast.parse(source)
    ids: list[str] = []
    skips = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skips += sum(1 for d in node.decorator_list if _is_skip(d))
        elif isinstance(node, ast.Call) and _is_skip(node.func) and _dotted(node.func) in {
                "pytest.skip", "self.skipTest", "pytest.xfail", "unittest.skip"}:
            skips += 1
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                  for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            skips += sum(1 for v in values if _is_skip(v))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            ids.append(f"{rel}::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    ids.append(f"{rel}::{node.name}::{item.name}")
    return ids, skips


def _is_test_path(path: str) -> bool:
    p = PurePosixPath(path)
    return (any(part in ("tests", "test") for part in p.parts[:-1]) or p.name.startswith("test_")
            or p.name.endswith("_test.py") or p.name == "conftest.py")


# ------------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verify (or lint) command. ``returncode`` is None when the command did not run to an
    exit status (missing executable, timeout)."""

    ok: bool
    returncode: int | None
    output_tail: str
    duration_s: float
    timed_out: bool = False
    command: tuple[str, ...] = ()
    #: The box the command ran in: "bwrap", "fallback" or "none" (None: it did not run).
    isolation: str | None = None


def _argv(command: str | Sequence[str], what: str = "command") -> list[str]:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigurationError(f"Cannot parse the {what} {command!r}: {exc}. Fix its quoting.") from exc
    else:
        argv = [str(a) for a in command]
    if not argv or not argv[0]:
        raise ConfigurationError(f"The {what} is empty. Pass an argv list such as ['pytest', '-q'].")
    return argv


def _run_command(argv: list[str], cwd: str | os.PathLike[str], timeout: float | None,
                 env: Mapping[str, str] | None = None, *, isolation: str = "auto",
                 pass_env: Sequence[str] = (), network: bool = False,
                 hide: Sequence[str | os.PathLike[str]] = ()) -> tuple[VerifyResult, str]:
    """Run ``argv`` (no shell) in the box (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`) with ``cwd`` as
    its only writable path: stdout and stderr interleaved; on timeout everything it started is killed.
    Returns the result and the (last ``_OUTPUT_CAP`` characters of the) output."""
    start = time.monotonic()
    # The command is the DAG author's: files it names by absolute path (a lint script) are shown read-only.
    named = [a for a in argv if os.path.isabs(a) and os.path.exists(a)]
    try:
        done = run_boxed(argv, cwd, isolation=isolation, timeout=timeout, env=env, pass_env=pass_env,
                         network=network, hide=hide, ro_binds=named, merge_stderr=True, max_output_chars=_OUTPUT_CAP, keep="tail",
                         grace_s=2.0)
    except FileNotFoundError:
        msg = (f"executable not found: {argv[0]!r}. Install it, put it on PATH, or fix the command "
               f"{shlex.join(argv)!r}.")
        if not Path(cwd).is_dir():
            msg = f"working directory {cwd} does not exist. Check the worktree path."
        return VerifyResult(False, None, msg, time.monotonic() - start, False, tuple(argv)), msg
    except PermissionError as exc:
        msg = f"cannot execute {argv[0]!r}: {exc}. Make it executable or fix the command."
        return VerifyResult(False, None, msg, time.monotonic() - start, False, tuple(argv)), msg
    text = done.stdout
    if done.timed_out:
        text += f"\n[timed out after {timeout}s; the command's process group was killed]"
    tail = text[-_TAIL_CHARS:]
    ok = done.returncode == 0 and not done.timed_out
    return VerifyResult(ok, done.returncode, tail, done.duration_s, done.timed_out, tuple(argv),
                        isolation=done.isolation), text


def run_verify(command: str | Sequence[str], cwd: str | os.PathLike[str],
               timeout: float | None = DEFAULT_VERIFY_TIMEOUT, *,
               env: Mapping[str, str] | None = None, isolation: str = "auto", pass_env: Sequence[str] = (),
               network: bool = False, hide: Sequence[str | os.PathLike[str]] = ()) -> VerifyResult:
    """Run a verify command in ``cwd`` without a shell (a string is split with :func:`shlex.split`), in the box.

    ``ok`` is True only for exit status 0. On timeout everything the command started is killed. A missing
    executable is a result (``ok=False``, ``returncode=None``, the reason in ``output_tail``), not an exception.
    The command never sees the worker's environment: it gets the box's allowlist, the ``pass_env`` names and
    the ``env`` values. ``isolation`` (``"auto"``, ``"bwrap"``, ``"none"``), ``network`` and ``hide`` are the
    box's (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`); the result's ``isolation`` says which one was
    in force. ``isolation="bwrap"`` where bubblewrap does not work raises
    :class:`~airflow_provider_worktree.core.sandbox.box.IsolationUnavailable`.
    """
    if timeout is not None and timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}. Pass seconds, e.g. 600.")
    result, _ = _run_command(_argv(command, "verify command"), cwd, timeout, env, isolation=isolation,
                             pass_env=pass_env, network=network, hide=hide)
    return result


# -------------------------------------------------------------------------------------------- scope


class ScopeViolation(WorktreeProviderError):
    """The shard changed files outside its scope; the shard's result is rejected."""

    def __init__(self, paths: Iterable[str], shard_id: str | None = None) -> None:
        self.paths = sorted(paths)
        where = f"Shard {shard_id}" if shard_id else "The shard"
        listed = ", ".join(self.paths[:20]) + (f" (+{len(self.paths) - 20} more)" if len(self.paths) > 20 else "")
        super().__init__(
            f"{where} changed {len(self.paths)} file(s) outside its scope: {listed}. The result is rejected; "
            "the model may edit only the shard's files (and what the task allows). Re-run the shard, or "
            "widen the task's allowed_paths if these edits are intended."
        )


@dataclass(frozen=True)
class PathScope:
    """What a shard may change: its own files plus the task's extra glob patterns. Call it with a path."""

    files: frozenset[str]
    patterns: tuple[str, ...] = ()

    def __call__(self, path: str) -> bool:
        path = _clean_path(path)
        if path is None:
            return False
        return path in self.files or any(match_glob(path, p) for p in self.patterns)


def _clean_path(path: str) -> str | None:
    """Repository-relative POSIX form of ``path``; None for absolute paths or paths leaving the repo."""
    p = path.replace("\\", "/")
    if p.startswith("/"):
        return None
    parts: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/".join(parts) or None


def check_scope(changed_files: Iterable[str], shard: Mapping[str, Any],
                task: MaintenanceTask | str) -> list[str]:
    """The changed paths (sorted) that lie outside the shard's files and the task's allowed paths."""
    scope = _as_task(task).allowed_paths(shard)
    return sorted({f for f in changed_files if not scope(f)})


# -------------------------------------------------------------------------------------------- tasks

BASE_SYSTEM_PROMPT = """\
You are a careful senior software engineer doing one maintenance task on a shard of a git repository.
A shard is a fixed set of files; you work in an isolated git worktree of the repository.

Rules:
1. Edit only the files listed in the shard, plus the files the task explicitly allows you to create.
   Do not rename, move or delete files.
2. Keep behaviour unchanged unless the task says otherwise: no new features, no unrelated refactors,
   no formatting churn, no changes to public names or signatures.
3. Use repository-relative paths (for example src/app.py) with the str_replace_based_edit_tool; never
   absolute paths and never "..". View a file before you edit it.
4. Do not run git and do not commit; the pipeline verifies and commits your work.
5. If a change would be unsafe or needs information you do not have, leave the code as it is and say so.
6. Finish with a one-paragraph summary of what you changed and why, and what you left alone."""


class MaintenanceTask:
    """A maintenance task. Subclass it, set ``name``, ``description``, ``instructions`` and
    ``default_globs``, override ``_file_weight`` (the discovery criterion), ``measure`` and ``evaluate``,
    then :func:`register_task` an instance. Options go into ``__init__`` keyword arguments; ``get_task(name,
    **options)`` builds a configured copy with ``type(task)(**options)``."""

    name: str = ""
    description: str = ""
    instructions: str = ""
    default_globs: tuple[str, ...] = ("**/*",)
    #: Glob patterns (besides the shard's own files) the task may change; see :meth:`allowed_paths`.
    extra_allowed: tuple[str, ...] = ()
    #: Whether discovery must read file contents (``_file_weight`` receives the text).
    needs_content: bool = False
    #: Whether the task works on source code only (other files are skipped as "not a source file").
    code_task: bool = False
    #: Whether discover_weights costs the same on the whole tree (one ``git grep``): the plan then reports only
    #: the skipped files that had work; otherwise every skipped file matching the globs.
    scans_whole_tree: bool = False
    #: Whether a file too large for one editor view is split into line ranges (one shard per range with work)
    #: rather than left out; the task's :meth:`range_weights` says which ranges have work.
    splits_large_files: bool = False

    @property
    def system_prompt(self) -> str:
        """The stable role and rules shared by every shard of every task (the cached prefix)."""
        return BASE_SYSTEM_PROMPT

    def validate(self) -> None:
        """Raise ConfigurationError when a required option is missing."""

    def configure(self, **options: Any) -> MaintenanceTask:
        """A copy of this task with ``options`` (the subclass's ``__init__`` keywords)."""
        if not options:
            return self
        try:
            return type(self)(**options)
        except TypeError as exc:
            raise ConfigurationError(
                f"Task {self.name!r} does not accept the options {sorted(options)}: {exc}. "
                "Check the task's documented options (docs/tasks.md)."
            ) from exc

    # -- discovery ---------------------------------------------------------------------------------

    def discover(self, repo_path: str | os.PathLike[str], globs: Sequence[str] | None = None, *,
                 ref: str = "HEAD", include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None) -> list[str]:
        """Sorted candidate files of ``repo_path`` at ``ref`` matching ``globs`` (default ``default_globs``),
        not left out by the default skip rules (see :func:`plan_repository`), and meeting the task's criterion."""
        commit = _resolve_ref(repo_path, ref)
        _, whole, ranged, _ = _discover(repo_path, self, commit, globs, include, exclude, True,
                                        DEFAULT_MAX_FILE_BYTES)
        return sorted({*whole, *(s["files"][0] for s in ranged)})

    def discover_weights(self, repo_path: str | os.PathLike[str], commit: str, listing: Mapping[str, int],
                         globs: Sequence[str] | None = None) -> dict[str, int]:
        """``{path: weight}`` of the candidates among ``listing`` (a :class:`~.repofiles.Listing`, already
        filtered by the skip rules); the weight orders shards (higher first). Binary files are never candidates
        of a task that reads content."""
        globs = _normalise_globs(globs, self.default_globs)
        paths = [p for p in sorted(listing) if _matches_globs(p, globs) and self._path_candidate(p)]
        if not self.needs_content:
            return {p: w for p in paths if (w := self._file_weight(p, listing[p], None)) > 0}
        if not isinstance(listing, Listing):
            raise ConfigurationError("discover_weights needs the Listing of core.repofiles.tree_listing "
                                     "(it holds the blob ids); call discover() or plan_repository() instead.")
        weights: dict[str, int] = {}
        for blobs in R.read_blob_chunks(repo_path, paths, listing):     # bounded memory on large repositories
            for p, data in blobs.items():
                text = R.decode_text(data)
                if text is not None and (w := self._file_weight(p, listing[p], text)) > 0:
                    weights[p] = w
        return weights

    def _path_candidate(self, path: str) -> bool:
        """Cheap path-only filter applied before any content is read."""
        return True

    def _skip_reason(self, path: str) -> str | None:
        """A task-specific reason to leave ``path`` out of the plan (reported in the Plan), or None."""
        return None

    def _file_weight(self, path: str, size: int, text: str | None) -> int:
        """0 excludes the file; otherwise its weight. The default: every file, weighted by size."""
        return max(1, size)

    def range_weights(self, text: str, ranges: Sequence[tuple[int, int]]) -> list[int]:
        """The weight of each line range (1-based, inclusive) of a big file ``text``; 0 leaves the range out.
        Only called for tasks with ``splits_large_files``."""
        return [1] * len(ranges)

    # -- scope ------------------------------------------------------------------------------------

    def allowed_paths(self, shard: Mapping[str, Any]) -> PathScope:
        """The shard's files plus ``extra_allowed`` patterns."""
        return PathScope(frozenset(shard.get("files", ())), tuple(self.extra_allowed))

    # -- metric -----------------------------------------------------------------------------------

    def measure(self, worktree_path: str | os.PathLike[str], files: Sequence[str]) -> dict[str, Any]:
        """The success metric on ``files`` in ``worktree_path`` (JSON-serialisable)."""
        root = Path(worktree_path)
        return {"missing_files": sorted(f for f in files if not (root / f).is_file())}

    def evaluate(self, before: Mapping[str, Any], after: Mapping[str, Any],
                 verify_ok: bool | None) -> tuple[bool, str]:
        """(ok, reason) from the metric before and after and the verify result (None: no verify command)."""
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        return True, "verify passed" if verify_ok else "no verify command; accepted on the scope check"

    @staticmethod
    def _common_failure(before: Mapping[str, Any], after: Mapping[str, Any], verify_ok: bool | None) -> str:
        if verify_ok is False:
            return "the verify command failed"
        lost = sorted(set(after.get("missing_files", ())) - set(before.get("missing_files", ())))
        if lost:
            return f"files of the shard were deleted: {', '.join(lost)}"
        return ""

    @staticmethod
    def _decreased(before: Mapping[str, Any], after: Mapping[str, Any], key: str, label: str) -> tuple[bool, str]:
        """Success when the metric ``key`` went down: the shared rule of todo, docstrings and lint."""
        b, a = before.get(key, 0), after.get(key, 0)
        if a >= b:
            return False, f"{label} did not decrease ({b} -> {a})"
        return True, f"{label} {b} -> {a}"

    # -- prompt -----------------------------------------------------------------------------------

    def shard_instructions(self, shard: Mapping[str, Any]) -> str:
        """The task's directions for one shard (the shard part of the prompt, before the file list)."""
        return f"Do the `{self.name}` task ({self.description}) on the files of this shard."

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class TodoTask(MaintenanceTask):
    name = "todo"
    description = "resolve TODO/FIXME/XXX/HACK comments"
    instructions = (
        "Resolve the TODO, FIXME, XXX and HACK comments in the shard's files. For each marker, make the "
        "smallest correct change that does what the comment asks and remove the comment. When a marker "
        "cannot be resolved safely inside these files (it needs a design decision, another file, or "
        "information you do not have), leave it in place. Keep behaviour otherwise unchanged."
    )
    default_globs = ("**/*",)

    code_task = True
    splits_large_files = True
    scans_whole_tree = True

    def discover_weights(self, repo_path, commit, listing, globs=None):
        # One `git grep` over the tree: faster than reading every blob in Python on large repositories.
        globs = _normalise_globs(globs, self.default_globs)
        out = R.git_bytes(repo_path, ["grep", "-c", "-z", "-I", "-E", "-e", _TODO_GREP_ERE, commit],
                          ok_codes=(0, 1))
        weights: dict[str, int] = {}
        prefix = f"{commit}:"
        for line in out.split(b"\n"):
            raw_name, _, count = line.rpartition(b"\0")
            name = os.fsdecode(raw_name)
            path = name[len(prefix):] if name.startswith(prefix) else name
            if path in listing and _matches_globs(path, globs) and count.strip().isdigit():
                weights[path] = int(count)
        return weights

    def range_weights(self, text, ranges):
        lines = text.split("\n")
        return [count_todo_markers("\n".join(lines[start - 1:end])) for start, end in ranges]

    def measure(self, worktree_path, files):
        root = Path(worktree_path)
        per_file: dict[str, int] = {}
        for f in files:
            text = _read_text(root / f, root)
            if text is not None:
                per_file[f] = count_todo_markers(text)
        return {"markers": sum(per_file.values()), "per_file": per_file,
                "missing_files": sorted(f for f in files if f not in per_file)}

    def evaluate(self, before, after, verify_ok):
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        ok, reason = self._decreased(before, after, "markers", "TODO markers")
        return ok, reason + ("" if verify_ok or not ok else " (no verify command)")

    def shard_instructions(self, shard):
        return ("Resolve the TODO/FIXME/XXX/HACK comments in these files; leave a marker in place when it "
                "cannot be resolved safely here.")


class DocstringsTask(MaintenanceTask):
    name = "docstrings"
    description = "add missing docstrings to Python modules, classes and functions"
    instructions = (
        "Add the missing docstrings to the public modules, classes, functions and methods of the shard's "
        "Python files (names starting with '_' are private and optional). Describe what the code does, its "
        "arguments, return value and raised errors, in the style the file already uses (default: concise "
        "PEP 257). Do not change any code, only add docstrings; the files must still parse."
    )
    default_globs = ("**/*.py",)
    needs_content = True
    code_task = True
    splits_large_files = True

    def _path_candidate(self, path):
        return path.endswith(".py")

    def _skip_reason(self, path):
        return "test code (docstrings not wanted)" if path.endswith(".py") and _is_test_path(path) else None

    def range_weights(self, text, ranges):
        try:
            missing = [line for _, line in _missing_docstrings(text)]
        except (SyntaxError, ValueError):
            return [0] * len(ranges)
        return [sum(1 for line in missing if start <= line <= end) for start, end in ranges]

    def _file_weight(self, path, size, text):
        try:
            return _docstring_report(text or "")[0]
        except (SyntaxError, ValueError):
            return 0

    def measure(self, worktree_path, files):
        root = Path(worktree_path)
        per_file: dict[str, int] = {}
        syntax_errors: dict[str, str] = {}
        missing_files = []
        for f in files:
            text = _read_text(root / f, root)
            if text is None:
                missing_files.append(f)
                continue
            try:
                per_file[f] = _docstring_report(text)[0]
            except (SyntaxError, ValueError) as exc:
                syntax_errors[f] = f"{type(exc).__name__}: {exc}"
        return {"missing": sum(per_file.values()), "per_file": per_file, "syntax_errors": syntax_errors,
                "missing_files": sorted(missing_files)}

    def evaluate(self, before, after, verify_ok):
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        if after.get("syntax_errors"):
            return False, f"syntax errors after the change: {', '.join(sorted(after['syntax_errors']))}"
        return self._decreased(before, after, "missing", "missing docstrings")

    def shard_instructions(self, shard):
        return "Add the missing docstrings in these Python files without changing any code."


#: Linters that fix by default or through their config, and the argument that turns fixing off.
_NO_FIX = {"ruff": ("--no-fix", ("--fix", "--fix-only", "--unsafe-fixes")), "eslint": (None, ("--fix",)),
           "autopep8": (None, ("--in-place", "-i")), "black": ("--check", ()), "isort": ("--check-only", ()),
           "prettier": ("--check", ("--write", "-w"))}


def _without_fix(argv: Sequence[str]) -> list[str]:
    """``argv`` with fixing switched off for the linters that can fix (ruff, eslint, autopep8, black, isort,
    prettier), whether invoked directly or as ``python -m NAME``; other commands unchanged."""
    argv = list(argv)
    names = [PurePosixPath(a).name for a in argv[:3]]
    tool = next((n for n in names if n in _NO_FIX), None)
    if tool is None:
        return argv
    switch, drop = _NO_FIX[tool]
    if tool == "ruff" and "format" in argv:        # `ruff format` rewrites unless told to check
        switch = "--check"
    out = [a for a in argv if a not in drop and not any(a.startswith(d + "=") for d in drop if d.startswith("--"))]
    if switch and switch not in out:
        at = len(out)
        if "{files}" in out:
            at = out.index("{files}")
        out.insert(at, switch)
    return out


class LintTask(MaintenanceTask):
    """Fix a linter's findings. ``lint_command`` is an argv list (or a string, split with shlex) run in the
    worktree without a shell; the shard's files are appended, or substituted for a ``{files}`` argument.
    Each non-empty output line is a finding (or each line matching ``finding_pattern`` when given)."""

    name = "lint"
    description = "fix the findings of the project's linter"
    instructions = (
        "Fix the linter findings in the shard's files. Change only what a finding requires, keep behaviour "
        "unchanged, and do not silence findings with disable comments unless the finding is a false positive "
        "(then say so in your summary)."
    )
    default_globs = ("**/*.py",)
    code_task = True

    def __init__(self, lint_command: str | Sequence[str] | None = None, *, timeout: float = 300.0,
                 finding_pattern: str | None = None, append_files: bool = True) -> None:
        self.lint_command = None if lint_command is None else _argv(lint_command, "lint_command")
        self.timeout = timeout
        self.finding_pattern = finding_pattern
        self.append_files = append_files
        self._finding_re = re.compile(finding_pattern) if finding_pattern else None

    def validate(self):
        if not self.lint_command:
            raise ConfigurationError(
                "The lint task needs lint_command. Use get_task('lint', lint_command=['ruff', 'check', "
                "'--output-format=concise']) or task_options={'lint_command': [...]}.")

    @property
    def instructions_with_command(self) -> str:
        return self.instructions + (f" The linter is: {shlex.join(self.lint_command)}" if self.lint_command else "")

    def _lint(self, cwd, files: Sequence[str], *, no_fix: bool = False) -> tuple[VerifyResult, list[str]]:
        self.validate()
        assert self.lint_command is not None
        command = _without_fix(self.lint_command) if no_fix else list(self.lint_command)
        if "{files}" in command:
            argv = []
            for a in command:
                argv.extend(files if a == "{files}" else [a])
        else:
            argv = [*command, *files] if self.append_files else command
        result, output = _run_command(argv, cwd, self.timeout)
        if result.returncode is None:
            reason = "timed out" if result.timed_out else result.output_tail
            raise ConfigurationError(f"The lint command {shlex.join(argv[:6])} did not run: {reason}. "
                                     "Fix lint_command or raise its timeout.")
        lines = [ln for ln in output.splitlines() if ln.strip()]
        if self._finding_re is not None:
            lines = [ln for ln in lines if self._finding_re.search(ln)]
        return result, lines

    @staticmethod
    def _per_file(lines: Sequence[str], files: Sequence[str]) -> dict[str, int]:
        counts = dict.fromkeys(files, 0)
        for ln in lines:
            head = ln[2:] if ln.startswith("./") else ln
            path = head.split(":", 1)[0]
            if path in counts:
                counts[path] += 1
        return counts

    def discover_weights(self, repo_path, commit, listing, globs=None):
        """Runs the linter once over the files matching the globs and keeps the files its output names
        (``path:...`` lines). Without lint_command, every matching file.

        The linter runs on a scratch copy of the commit (its files written from the committed blobs into a
        temporary directory, removed afterwards) with fixing switched off where the linter has a switch, so a
        repository whose config says ``fix = true`` cannot rewrite the user's checkout."""
        candidates = MaintenanceTask.discover_weights(self, repo_path, commit, listing, globs)
        if not self.lint_command or not candidates:
            return candidates
        full = R.tree_listing(repo_path, commit)       # the whole tree: linters read config and imports
        with R.scratch_dir("worktree-lint-") as scratch:
            R.materialize(repo_path, full, scratch)
            _, lines = self._lint(scratch, sorted(candidates), no_fix=True)
        for prefix in {scratch + "/", os.path.realpath(scratch) + "/"}:    # linters that print absolute paths
            lines = [ln[len(prefix):] if ln.startswith(prefix) else ln for ln in lines]
        return {p: n for p, n in self._per_file(lines, sorted(candidates)).items() if n > 0}

    def measure(self, worktree_path, files):
        missing = sorted(f for f in files if not (Path(worktree_path) / f).is_file())
        present = [f for f in files if f not in missing]
        result, lines = self._lint(worktree_path, present)
        return {"findings": len(lines), "per_file": self._per_file(lines, present),
                "returncode": result.returncode, "sample": lines[:20], "missing_files": missing}

    def evaluate(self, before, after, verify_ok):
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        return self._decreased(before, after, "findings", "lint findings")

    def shard_instructions(self, shard):
        cmd = f" The linter command is `{shlex.join(self.lint_command)}`." if self.lint_command else ""
        return "Fix the linter findings in these files." + cmd


class TestsTask(MaintenanceTask):
    name = "tests"
    description = "write unit tests for Python modules"
    instructions = (
        "Write focused pytest unit tests for the shard's Python modules, in tests/test_<module>.py (create "
        "tests/__init__.py or tests/conftest.py only if the project needs them). Test the public behaviour as "
        "it is; do not change the modules under test. Never delete, weaken or skip existing tests. Tests must "
        "be deterministic, fast, and need no network."
    )
    default_globs = ("**/*.py",)
    code_task = True
    __test__ = False  # not a pytest test class

    def _path_candidate(self, path):
        name = PurePosixPath(path).name
        return (path.endswith(".py") and not _is_test_path(path) and name not in ("__init__.py", "setup.py",
                                                                                   "__main__.py"))

    def allowed_paths(self, shard):
        patterns = {"tests/__init__.py", "tests/conftest.py", "conftest.py"}
        for f in shard.get("files", ()):
            patterns.add(f"tests/test_{PurePosixPath(f).stem}.py")
        return PathScope(frozenset(shard.get("files", ())), tuple(sorted(patterns)))

    def measure(self, worktree_path, files):
        out = R.git_bytes(worktree_path, ["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        root = Path(worktree_path)
        test_ids: list[str] = []
        skips = 0
        syntax_errors: dict[str, str] = {}
        for rel in sorted({os.fsdecode(name) for name in out.split(b"\0") if name}):
            if not rel.endswith(".py") or not _is_test_path(rel) or PurePosixPath(rel).name == "conftest.py":
                continue
            text = _read_text(root / rel, root)
            if text is None:
                continue
            try:
                ids, n_skips = _test_report(text, rel)
            except (SyntaxError, ValueError) as exc:
                syntax_errors[rel] = f"{type(exc).__name__}: {exc}"
                continue
            test_ids.extend(ids)
            skips += n_skips
        return {"tests": len(test_ids), "skips": skips, "test_ids": sorted(test_ids),
                "syntax_errors": syntax_errors,
                "missing_files": sorted(f for f in files if not (root / f).is_file())}

    def evaluate(self, before, after, verify_ok):
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        if after.get("syntax_errors"):
            return False, f"test files do not parse: {', '.join(sorted(after['syntax_errors']))}"
        removed = sorted(set(before.get("test_ids", ())) - set(after.get("test_ids", ())))
        if removed or after.get("tests", 0) < before.get("tests", 0):
            return False, f"tests were deleted or renamed: {', '.join(removed) or 'count dropped'}"
        if after.get("skips", 0) > before.get("skips", 0):
            return False, f"skip markers increased ({before.get('skips', 0)} -> {after.get('skips', 0)})"
        added = after.get("tests", 0) - before.get("tests", 0)
        tail = "verify passed" if verify_ok else "no verify command, tests not run"
        return True, f"{added} test(s) added, none deleted or skipped; {tail}"

    def shard_instructions(self, shard):
        targets = ", ".join(f"tests/test_{PurePosixPath(f).stem}.py" for f in shard.get("files", ()))
        return f"Write pytest tests for these modules, in {targets}. Do not modify the modules themselves."


class CustomTask(MaintenanceTask):
    """Any prompt over the files matching ``globs``; success is the verify command passing."""

    name = "custom"
    description = "a maintenance prompt given by the DAG author"
    default_globs = ("**/*",)

    def __init__(self, prompt: str | None = None, globs: str | Sequence[str] | None = None) -> None:
        self.prompt = prompt.strip() if isinstance(prompt, str) else prompt
        if globs is not None:
            self.default_globs = tuple(_normalise_globs(globs, ()))

    @property
    def instructions(self) -> str:  # type: ignore[override]
        return self.prompt or ""

    def validate(self):
        if not self.prompt:
            raise ConfigurationError(
                "The custom task needs a prompt. Use CustomTask(prompt='...', globs=['**/*.py']) or "
                "get_task('custom', prompt='...', globs=[...]).")

    def shard_instructions(self, shard):
        return "Apply the task's instructions to these files."


# ------------------------------------------------------------------------------------------ registry

TASKS: dict[str, MaintenanceTask] = {}


def register_task(task: MaintenanceTask | type[MaintenanceTask], *, replace: bool = False) -> MaintenanceTask:
    """Add a task (an instance, or a class instantiated without arguments) to :data:`TASKS`."""
    if isinstance(task, type):
        task = task()
    if not isinstance(task, MaintenanceTask):
        raise ConfigurationError(f"register_task expects a MaintenanceTask, got {type(task).__name__}. "
                                 "Subclass airflow_provider_worktree.core.tasks.catalog.MaintenanceTask.")
    if not TASK_NAME_RE.match(task.name or ""):
        raise ConfigurationError(f"Task name {task.name!r} is invalid: use lowercase letters, digits, '_' and "
                                 "'-', starting with a letter or digit (it prefixes shard ids).")
    if task.name in TASKS and not replace and type(TASKS[task.name]) is not type(task):
        raise ConfigurationError(f"A task named {task.name!r} is already registered "
                                 f"({type(TASKS[task.name]).__name__}). Pick another name or pass replace=True.")
    TASKS[task.name] = task
    return task


def get_task(name: str | MaintenanceTask, **options: Any) -> MaintenanceTask:
    """The registered task ``name``, configured with ``options`` when given
    (e.g. ``get_task("lint", lint_command=[...])``, ``get_task("custom", prompt=..., globs=...)``)."""
    if isinstance(name, MaintenanceTask):
        return name.configure(**options)
    try:
        task = TASKS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(f"Unknown maintenance task {name!r}. Known tasks: {', '.join(sorted(TASKS))}. "
                                 "Register your own with register_task().") from None
    return task.configure(**options)


def _as_task(task: MaintenanceTask | str, options: Mapping[str, Any] | None = None) -> MaintenanceTask:
    return get_task(task, **dict(options or {}))


for _cls in (TodoTask, DocstringsTask, LintTask, TestsTask, CustomTask):
    register_task(_cls)


# ------------------------------------------------------------------------------------------ planning


#: Default largest file planned whole: one editor view (core/sandbox.py's view cap). Larger files are split
#: into line ranges (todo, docstrings) or left out with a reason (other tasks).
DEFAULT_MAX_FILE_BYTES = DEFAULT_MAX_VIEW_CHARS


def shard_id_for(task_name: str, files: Iterable[str], lines: Sequence[int] | None = None) -> str:
    """``<task>-<10 hex>``: sha1 over the task name, the sorted files and the line range (if any); stable
    across runs and orders."""
    parts = [task_name, *sorted(files)]
    if lines:
        parts.append(f"lines:{int(lines[0])}-{int(lines[1])}")
    digest = hashlib.sha1("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{task_name}-{digest[:10]}"


@dataclass
class Plan:
    """What :func:`plan_repository` decided: the shards, the files it left out and why, and notes (for example
    that shards were grouped to fit ``max_shards``). ``counts`` has ``files`` (regular files at the commit),
    ``candidates`` (files with work), ``planned_files`` and ``shards``."""

    task: str
    commit: str
    shards: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    notes: list[str]
    counts: dict[str, int]

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """``{reason: number of files}``, most frequent first."""
        totals: dict[str, int] = {}
        for entry in self.skipped:
            totals[entry["reason"]] = totals.get(entry["reason"], 0) + 1
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        """One paragraph for a task log: shards, skipped files by reason, notes."""
        text = (f"{len(self.shards)} shard(s) for task {self.task} at {self.commit[:12]}: "
                f"{self.counts.get('planned_files', 0)} file(s) of {self.counts.get('files', 0)}.")
        if self.skipped:
            text += f" Skipped {len(self.skipped)} file(s): " + ", ".join(
                f"{reason} {n}" for reason, n in self.skipped_by_reason.items()) + "."
        if self.skipped and not self.shards:
            text += " Pass include=[globs] to plan files the default rules skip."
        return " ".join([text, *self.notes])

    def to_dict(self, max_skipped: int = 200) -> dict[str, Any]:
        """JSON-serialisable form (for XCom or a report); the skipped list is cut at ``max_skipped`` entries,
        ``skipped_by_reason`` always counts all."""
        return {"task": self.task, "commit": self.commit, "shards": self.shards, "notes": list(self.notes),
                "counts": dict(self.counts), "skipped_by_reason": self.skipped_by_reason,
                "skipped": self.skipped[:max_skipped], "skipped_total": len(self.skipped)}


def _optional_globs(globs: str | Sequence[str] | None, what: str) -> list[str]:
    if globs is None:
        return []
    if isinstance(globs, str):
        globs = [globs]
    if not all(isinstance(g, str) for g in globs):
        raise ConfigurationError(f"{what} must be a list of glob strings, got {globs!r}. Example: ['vendor/**'].")
    return [g.strip() for g in globs if g.strip()]


def _filter_paths(repo_path: str | os.PathLike[str], task: MaintenanceTask, listing: Listing,
                  globs: Sequence[str] | None, include: Sequence[str] | None, exclude: Sequence[str] | None,
                  default_skips: bool) -> tuple[Listing, list[dict[str, str]]]:
    """The files of ``listing`` matching the task's globs that survive the skip rules, and the skipped ones
    ``{path, reason}``. Order of the rules: unusable file name (always), ``exclude`` globs, then ``include``
    globs (a match keeps the file whatever the default rules say), then the default rules."""
    globs = _normalise_globs(globs, task.default_globs)
    include_globs = _optional_globs(include, "include")
    exclude_globs = _optional_globs(exclude, "exclude")
    attributes = R.GitAttributes.from_commit(repo_path, listing) if default_skips else None
    keep: list[str] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(listing):
        if not _matches_globs(path, globs) or not task._path_candidate(path):
            continue
        reason = None
        if R.name_problem(path):
            reason = R.R_NAME
        elif any(match_glob(path, g) for g in exclude_globs):
            reason = R.R_EXCLUDED
        elif default_skips and not any(match_glob(path, g) for g in include_globs):
            reason = R.skip_reason(path, code_task=task.code_task, attributes=attributes) or task._skip_reason(path)
        if reason:
            skipped.append({"path": path, "reason": reason})
        else:
            keep.append(path)
    skipped += [{"path": p, "reason": R.R_SYMLINK} for p in sorted(listing.other) if _matches_globs(p, globs)]
    return listing.subset(keep), skipped


def _pack(paths: Sequence[str], sizes: Mapping[str, int], max_files: int, max_bytes: int) -> list[list[str]]:
    groups: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for p in paths:
        size = sizes[p]
        if size > max_bytes:
            if current:
                groups.append(current)
                current, current_bytes = [], 0
            groups.append([p])
            continue
        if current and (len(current) >= max_files or current_bytes + size > max_bytes):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += size
    if current:
        groups.append(current)
    return groups


def _groups(paths: Sequence[str], sizes: Mapping[str, int], by: str, max_files: int,
            max_bytes: int) -> list[list[str]]:
    if by == "size":
        return _pack(paths, sizes, max_files, max_bytes)
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(str(PurePosixPath(p).parent), []).append(p)
    return [g for d in sorted(by_dir) for g in _pack(by_dir[d], sizes, max_files, max_bytes)]


def _make_shard(task_name: str, files: Sequence[str], priority: int, size: int,
                lines: Sequence[int] | None = None) -> dict[str, Any]:
    shard: dict[str, Any] = {"shard_id": shard_id_for(task_name, files, lines), "task": task_name,
                             "files": sorted(files), "priority": int(priority), "bytes": int(size)}
    if lines:
        shard["lines"] = [int(lines[0]), int(lines[1])]
    return shard


def _fit_shards(shards: list[dict[str, Any]], max_shards: int, task_name: str) -> tuple[list[dict[str, Any]], str]:
    """Merge consecutive shards so that at most ``max_shards`` remain (Airflow maps at most
    ``[core] max_map_length`` task instances). Line ranges of one file merge into one range; a merged shard
    with several files carries no range."""
    n = len(shards)
    k = -(-n // max_shards)
    merged: list[dict[str, Any]] = []
    for i in range(0, n, k):
        group = shards[i:i + k]
        files = sorted({f for s in group for f in s["files"]})
        lines = None
        if len(files) == 1 and all("lines" in s for s in group):
            lines = [min(s["lines"][0] for s in group), max(s["lines"][1] for s in group)]
        merged.append(_make_shard(task_name, files, sum(s["priority"] for s in group),
                                  sum(s["bytes"] for s in group), lines))
    note = (f"{n} shards exceed max_shards={max_shards}: every {k} consecutive shards were merged into one, "
            f"giving {len(merged)} larger shards (up to {max(len(s['files']) for s in merged)} files each). "
            "Raise [core] max_map_length (and max_shards) for smaller shards.")
    return merged, note


def plan_repository(repo_path: str | os.PathLike[str], task: MaintenanceTask | str, *, ref: str = "HEAD",
                    globs: Sequence[str] | None = None, include: Sequence[str] | None = None,
                    exclude: Sequence[str] | None = None, default_skips: bool = True, max_files: int = 10,
                    max_bytes: int = 200_000, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, by: str = "size",
                    max_shards: int | None = None, top: int | None = None,
                    task_options: Mapping[str, Any] | None = None) -> Plan:
    """Plan the task on ``repo_path`` at ``ref``: the shards, and every file left out with its reason.

    Candidates are the files at ``ref`` matching ``globs`` (default: the task's) that the task has work for.
    Left out, with a reason: vendored and generated paths (``.gitattributes`` ``linguist-vendored`` /
    ``linguist-generated``, vendored trees such as ``vendor/``, ``third_party/``, ``node_modules/``, bundled
    ``typeshed``), test fixtures and data (``fixtures/``, ``testdata/``, ``test-data/``, ``.test``, ``.patch``,
    ``.diff``, data files), CI configuration (``.github/``), generated files (``*_pb2.py``, lock files, an
    ``@generated``/``DO NOT EDIT`` header), non-source files for code tasks, file names that are not UTF-8.
    ``include`` globs keep a file whatever these default rules say; ``exclude`` globs leave more out;
    ``default_skips=False`` turns the default rules off.

    A file larger than ``max_file_bytes`` (default: one editor view) is split into line ranges that start at
    definitions, one shard per range with work (``"lines": [start, end]`` in the shard), by tasks that split
    (todo, docstrings); other tasks leave it out. Files above the editor's own limit are always left out.

    ``by="size"`` packs files in sorted path order into shards of at most ``max_files`` files and ``max_bytes``
    bytes; ``by="directory"`` packs each parent directory separately; range shards come last, in path and line
    order. ``max_shards`` (pass Airflow's ``[core] max_map_length``) merges consecutive shards until the count
    fits, and adds a note. ``top`` keeps only the ``top`` highest-priority shards (a sample run). The output
    is deterministic: the same commit and arguments give the same shards and ids.
    """
    t = _as_task(task, task_options)
    t.validate()
    if max_files < 1 or max_bytes < 1:
        raise ConfigurationError(f"max_files and max_bytes must be >= 1 (got {max_files}, {max_bytes}).")
    if max_file_bytes < 1_000:
        raise ConfigurationError(f"max_file_bytes must be >= 1000 (got {max_file_bytes}); the default is "
                                 f"{DEFAULT_MAX_FILE_BYTES}, one editor view.")
    if by not in ("size", "directory"):
        raise ConfigurationError(f"by={by!r} is not a planning mode. Use by='size' or by='directory'.")
    for name, value in (("max_shards", max_shards), ("top", top)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigurationError(f"{name} must be an integer >= 1 or None (got {value!r}).")
    commit = _resolve_ref(repo_path, ref)
    listing, whole, ranged, skipped = _discover(repo_path, t, commit, globs, include, exclude, default_skips,
                                                max_file_bytes)
    weights = listing.weights
    shards = [_make_shard(t.name, g, sum(weights[p] for p in g), sum(listing[p] for p in g))
              for g in _groups(whole, listing, by, max_files, max_bytes)] + ranged
    notes: list[str] = []
    if ranged:
        big = sorted({s["files"][0] for s in ranged})
        notes.append(f"{len(big)} file(s) larger than {max_file_bytes} bytes were split into {len(ranged)} "
                     "line-range shard(s).")
    if top is not None and len(shards) > top:
        keep = sorted(range(len(shards)), key=lambda i: (-shards[i]["priority"], i))[:top]
        notes.append(f"Kept the {top} highest-priority shard(s) of {len(shards)} (top={top}).")
        shards = [shards[i] for i in sorted(keep)]
    if max_shards is not None and len(shards) > max_shards:
        shards, note = _fit_shards(shards, max_shards, t.name)
        notes.append(note)
    skipped.sort(key=lambda e: (e["path"], e["reason"]))
    counts = {"files": len(listing), "candidates": len(whole) + len({s["files"][0] for s in ranged}),
              "shards": len(shards),
              "planned_files": len({f for s in shards for f in s["files"]})}
    return Plan(t.name, commit, shards, skipped, notes, counts)


def _discover(repo_path: str | os.PathLike[str], task: MaintenanceTask, commit: str, globs: Sequence[str] | None,
              include: Sequence[str] | None, exclude: Sequence[str] | None, default_skips: bool,
              max_file_bytes: int) -> tuple[Listing, list[str], list[dict[str, Any]], list[dict[str, str]]]:
    """Discovery shared by :func:`plan_repository` and :meth:`MaintenanceTask.discover`: the listing (with
    ``weights``), the files planned whole, the range shards of big files, and the skipped files."""
    listing = R.tree_listing(repo_path, commit)
    candidates, skipped = _filter_paths(repo_path, task, listing, globs, include, exclude, default_skips)
    if task.scans_whole_tree:
        # Discovery costs the same over the whole tree: report only skipped files that had work.
        all_weights = task.discover_weights(repo_path, commit, listing, globs)
        weights = {p: w for p, w in all_weights.items() if p in candidates}
        skipped = [e for e in skipped if all_weights.get(e["path"], 0) > 0]
    else:
        weights = task.discover_weights(repo_path, commit, candidates, globs)
    listing.weights = dict(weights)
    whole, ranged = _check_contents(repo_path, task, candidates, weights, _optional_globs(include, "include"),
                                    default_skips, max_file_bytes, skipped)
    return listing, whole, ranged, skipped


def _check_contents(repo_path: str | os.PathLike[str], task: MaintenanceTask, listing: Listing,
                    weights: Mapping[str, int], include_globs: Sequence[str], default_skips: bool,
                    max_file_bytes: int, skipped: list[dict[str, str]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Content rules on the candidates with work: generated headers, and big files split into line-range shards
    or left out. Returns the files planned whole and the range shards; appends to ``skipped``."""
    whole: list[str] = []
    ranged: list[dict[str, Any]] = []
    for blobs in R.read_blob_chunks(repo_path, sorted(weights), listing):
        for path, data in blobs.items():
            size = len(data)
            included = any(match_glob(path, g) for g in include_globs)
            if default_skips and not included and R.generated_header(data):
                skipped.append({"path": path, "reason": R.R_GENERATED})
            elif size > EDITOR_MAX_FILE_BYTES:
                skipped.append({"path": path, "reason": R.R_EDITOR_LIMIT})
            elif size <= max_file_bytes:
                whole.append(path)
            elif not task.splits_large_files:
                skipped.append({"path": path, "reason": R.R_TOO_LARGE})
            else:
                shards = _range_shards(task, path, R.decode_text(data) or "", max_file_bytes)
                if shards:
                    ranged += shards
                else:
                    skipped.append({"path": path, "reason": R.R_TOO_LARGE})
    return whole, ranged


def _range_shards(task: MaintenanceTask, path: str, text: str, max_file_bytes: int) -> list[dict[str, Any]]:
    """One shard per line range of ``text`` with work (half an editor view each, so a view of the range with
    line numbers fits)."""
    shards = []
    lines = text.split("\n")
    ranges = R.line_ranges(text, path, max(1, max_file_bytes // 2))
    for (start, end), weight in zip(ranges, task.range_weights(text, ranges)):
        if weight > 0:
            size = sum(len(ln.encode("utf-8", "surrogateescape")) + 1 for ln in lines[start - 1:end])
            shards.append(_make_shard(task.name, [path], weight, size, (start, end)))
    return shards


def plan_shards(repo_path: str | os.PathLike[str], task: MaintenanceTask | str, *, ref: str = "HEAD",
                globs: Sequence[str] | None = None, max_files: int = 10, max_bytes: int = 200_000,
                by: str = "size", max_shards: int | None = None,
                task_options: Mapping[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    """The shard dicts of :func:`plan_repository` (same arguments; ``options`` takes ``include``, ``exclude``,
    ``default_skips``, ``max_file_bytes`` and ``top``). Use :func:`plan_repository` to see what was skipped."""
    return plan_repository(repo_path, task, ref=ref, globs=globs, max_files=max_files, max_bytes=max_bytes, by=by,
                           max_shards=max_shards, task_options=task_options, **options).shards


# -------------------------------------------------------------------------------------------- prompt


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
