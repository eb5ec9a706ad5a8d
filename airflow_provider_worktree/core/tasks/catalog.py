"""The task classes: :class:`MaintenanceTask` and the built-in ``todo``, ``docstrings``, ``lint``, ``tests`` and
``custom`` tasks.

A *task* says what Claude does to a shard's files (``instructions``), which files are candidates (``discover``,
through the hooks ``_path_candidate``, ``_skip_reason``, ``_file_weight``/``discover_weights`` and
``range_weights``), how success is measured (``measure`` before and after, then ``evaluate``) and which paths it
may touch (``allowed_paths``). The registry (``get_task``, ``register_task``) is in
:mod:`~airflow_provider_worktree.core.tasks.registry`; planning shards from the candidates is ``core.planning``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.files.globs import normalise_globs, selected_by
from airflow_provider_worktree.core.files.listing import (
    Listing,
    decode_text,
    git_bytes,
    materialize,
    read_blob_chunks,
    resolve_commit,
    scratch_dir,
    tree_listing,
)
from airflow_provider_worktree.core.tasks.discovery import DEFAULT_MAX_FILE_BYTES, discover
from airflow_provider_worktree.core.tasks.findings import Finding, parse_findings
from airflow_provider_worktree.core.tasks.metrics import (
    _TODO_GREP_ERE,
    _docstring_report,
    _is_test_path,
    _missing_docstrings,
    _read_text,
    _test_report,
    count_todo_markers,
)
from airflow_provider_worktree.core.tasks.scope import PathScope
from airflow_provider_worktree.core.tasks.verify import VerifyResult, _argv, _run_command

__all__ = ["MaintenanceTask", "TodoTask", "DocstringsTask", "LintTask", "TestsTask", "CustomTask", "BUILTIN_TASKS"]

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
    ``default_globs``, override ``_file_weight`` (the discovery criterion), ``measure`` and ``_judge`` (or
    ``evaluate`` whole), then ``register_task`` an instance. Options go into ``__init__`` keyword arguments; ``get_task(name,
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
    #: The reason a shard fails when its metric after the change reports ``syntax_errors`` (None: the task's
    #: metric does not parse files).
    syntax_error_reason: str | None = None

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
        not left out by the default skip rules (see ``core.planning.plan_repository``), and meeting the task's
        criterion (:func:`~airflow_provider_worktree.core.tasks.discovery.discover`)."""
        commit = resolve_commit(repo_path, ref)
        return discover(repo_path, self, commit, globs, include, exclude, True, DEFAULT_MAX_FILE_BYTES).files

    def discover_weights(self, repo_path: str | os.PathLike[str], commit: str, listing: Mapping[str, int],
                         globs: Sequence[str] | None = None) -> dict[str, int]:
        """``{path: weight}`` of the candidates among ``listing`` (a :class:`~..files.listing.Listing`, already
        filtered by the skip rules); the weight orders shards (higher first). Binary files are never candidates
        of a task that reads content."""
        globs = normalise_globs(globs, self.default_globs)
        paths = [p for p in sorted(listing) if selected_by(p, globs) and self._path_candidate(p)]
        if not self.needs_content:
            return {p: w for p in paths if (w := self._file_weight(p, listing[p], None)) > 0}
        if not isinstance(listing, Listing):
            raise ConfigurationError("discover_weights needs the Listing of core.files.tree_listing "
                                     "(it holds the blob ids); call discover() or plan_repository() instead.")
        weights: dict[str, int] = {}
        for blobs in read_blob_chunks(repo_path, paths, listing):       # bounded memory on large repositories
            for p, data in blobs.items():
                text = decode_text(data)
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
        """(ok, reason) from the metric before and after and the verify result (None: no verify command):
        the checks every task shares (:meth:`_common_failure`), then the task's own rule (:meth:`_judge`)."""
        failed = self._common_failure(before, after, verify_ok)
        if failed:
            return False, failed
        return self._judge(before, after, verify_ok)

    def _judge(self, before: Mapping[str, Any], after: Mapping[str, Any],
               verify_ok: bool | None) -> tuple[bool, str]:
        """The task's own success rule, once the shared checks passed. The default: accepted."""
        return True, "verify passed" if verify_ok else "no verify command; accepted on the scope check"

    def _common_failure(self, before: Mapping[str, Any], after: Mapping[str, Any], verify_ok: bool | None) -> str:
        """Why the shard failed whatever the task: the verify command failed, a file of the shard was deleted,
        or (with ``syntax_error_reason``) a file no longer parses. "" when none of these."""
        if verify_ok is False:
            return "the verify command failed"
        lost = sorted(set(after.get("missing_files", ())) - set(before.get("missing_files", ())))
        if lost:
            return f"files of the shard were deleted: {', '.join(lost)}"
        if self.syntax_error_reason and after.get("syntax_errors"):
            return f"{self.syntax_error_reason}: {', '.join(sorted(after['syntax_errors']))}"
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
        globs = normalise_globs(globs, self.default_globs)
        out = git_bytes(repo_path, ["grep", "-c", "-z", "-I", "-E", "-e", _TODO_GREP_ERE, commit],
                        ok_codes=(0, 1))
        weights: dict[str, int] = {}
        prefix = f"{commit}:"
        for line in out.split(b"\n"):
            raw_name, _, count = line.rpartition(b"\0")
            name = os.fsdecode(raw_name)
            path = name[len(prefix):] if name.startswith(prefix) else name
            if path in listing and selected_by(path, globs) and count.strip().isdigit():
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

    def _judge(self, before, after, verify_ok):
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
    syntax_error_reason = "syntax errors after the change"

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

    def _judge(self, before, after, verify_ok):
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
    Findings are read from the linter's output (:mod:`~airflow_provider_worktree.core.tasks.findings`: ruff's and
    pylint's JSON, ``path:line:col: message`` lines as flake8 prints them, else one per non-empty line), or are
    the lines matching ``finding_pattern`` when given."""

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

    def _lint(self, cwd, files: Sequence[str], *, no_fix: bool = False) -> tuple[VerifyResult, list[Finding]]:
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
        root = os.fspath(cwd)
        prefixes = sorted({root.rstrip("/") + "/", os.path.realpath(root) + "/"}, key=len, reverse=True)
        return result, parse_findings(output, prefixes=prefixes, pattern=self._finding_re)

    @staticmethod
    def _per_file(findings: Sequence[Finding], files: Sequence[str]) -> dict[str, int]:
        counts = dict.fromkeys(files, 0)
        for finding in findings:
            if finding.path in counts:
                counts[finding.path] += 1
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
        full = tree_listing(repo_path, commit)         # the whole tree: linters read config and imports
        with scratch_dir("worktree-lint-") as scratch:
            materialize(repo_path, full, scratch)
            _, findings = self._lint(scratch, sorted(candidates), no_fix=True)   # paths relative to the copy
        return {p: n for p, n in self._per_file(findings, sorted(candidates)).items() if n > 0}

    def measure(self, worktree_path, files):
        missing = sorted(f for f in files if not (Path(worktree_path) / f).is_file())
        present = [f for f in files if f not in missing]
        result, findings = self._lint(worktree_path, present)
        return {"findings": len(findings), "per_file": self._per_file(findings, present),
                "returncode": result.returncode, "sample": [str(f) for f in findings[:20]], "missing_files": missing}

    def _judge(self, before, after, verify_ok):
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
    syntax_error_reason = "test files do not parse"
    __test__ = False  # not a pytest test class

    def __init__(self, test_command: str | Sequence[str] | None = None, *, run_tests: bool = True,
                 timeout: float = 300.0) -> None:
        """``run_tests``: run the test files the shard wrote or changed (``test_command`` plus their paths, in
        the box, like verify) and fail the shard when they fail. ``test_command`` defaults to the worker's
        ``python -m pytest -q``; give the project's own (``["/srv/venv/bin/pytest", "-q"]``) when its
        dependencies live elsewhere."""
        self.test_command = (_argv(test_command, "test_command") if test_command is not None
                             else [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
        self.run_tests = bool(run_tests)
        self.timeout = timeout

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
        out = git_bytes(worktree_path, ["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
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
                "syntax_errors": syntax_errors, "written_tests": self._run_written(worktree_path, syntax_errors),
                "missing_files": sorted(f for f in files if not (root / f).is_file())}

    def _run_written(self, worktree_path, syntax_errors: Mapping[str, str]) -> dict[str, Any] | None:
        """Run the test files that differ from the commit (new or changed): None when there are none (the
        measure before the model ran) or ``run_tests`` is off; else ``{"files", "ok", "cause"}``."""
        if not self.run_tests:
            return None
        changed = git_bytes(worktree_path, ["status", "--porcelain=v1", "-z", "--untracked-files=all"])
        written = sorted(path for entry in changed.split(b"\0") if len(entry) > 3
                         for path in [os.fsdecode(entry[3:])]
                         if path.endswith(".py") and _is_test_path(path) and PurePosixPath(path).name != "conftest.py"
                         and path not in syntax_errors and (Path(worktree_path) / path).is_file())
        if not written:
            return None
        result, _ = _run_command([*self.test_command, *written], worktree_path, self.timeout)
        return {"files": written, "ok": result.ok, "cause": result.cause if not result.ok else ""}

    def _judge(self, before, after, verify_ok):
        removed = sorted(set(before.get("test_ids", ())) - set(after.get("test_ids", ())))
        if removed or after.get("tests", 0) < before.get("tests", 0):
            return False, f"tests were deleted or renamed: {', '.join(removed) or 'count dropped'}"
        if after.get("skips", 0) > before.get("skips", 0):
            return False, f"skip markers increased ({before.get('skips', 0)} -> {after.get('skips', 0)})"
        written = after.get("written_tests")
        if written and not written.get("ok"):
            return False, f"the written tests fail ({', '.join(written['files'][:5])}): {written.get('cause')}"
        added = after.get("tests", 0) - before.get("tests", 0)
        ran = f"the written tests pass ({len(written['files'])} file(s))" if written else "written tests not run"
        tail = "verify passed" if verify_ok else (ran if written else "no verify command, tests not run")
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
            self.default_globs = tuple(normalise_globs(globs, ()))

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


#: The built-in task classes, registered by :mod:`~airflow_provider_worktree.core.tasks.registry`.
BUILTIN_TASKS: tuple[type[MaintenanceTask], ...] = (TodoTask, DocstringsTask, LintTask, TestsTask, CustomTask)
