"""The package's exception hierarchy, and :func:`summarize_error` for long tool output.

Every message names the problem and the fix. Output of git or of the system that goes into a message (and from
there into a log or a shard row) is summarised first: the cause first, then a few lines, bounded.
"""

from __future__ import annotations

import re
from typing import Any

#: Default bound (characters) of a summary made by :func:`summarize_error`.
DEFAULT_SUMMARY_LIMIT = 1200
#: Lines kept after the cause line.
DEFAULT_SUMMARY_LINES = 4

#: Known causes, most specific first: (pattern, the cause as the summary names it).
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), c) for p, c in (
    (r"no space left on device|ENOSPC|disk full", "No space left on device"),
    (r"disk quota exceeded|EDQUOT", "Disk quota exceeded"),
    (r"read-only file system|EROFS", "Read-only file system"),
    (r"too many open files|EMFILE", "Too many open files"),
    (r"cannot allocate memory|out of memory|ENOMEM", "Out of memory"),
    (r"permission denied|EACCES|operation not permitted", "Permission denied"),
    (r"detected dubious ownership|unsafe repository", "Repository owned by another user (safe.directory)"),
    (r"could not lock|unable to create '[^']*\.lock'|index\.lock|\.lock': file exists", "could not lock"),
    (r"not a git repository", "not a git repository"),
    (r"stale info|fetch first|non-fast-forward|\[rejected\]", "push rejected: the remote branch moved"),
    (r"authentication failed|could not read username|permission to .* denied|HTTP 401|HTTP 403",
     "Authentication failed"),
    (r"could not resolve host|name or service not known|temporary failure in name resolution",
     "Could not resolve host"),
    (r"connection refused|connection timed out|network is unreachable|failed to connect",
     "Could not connect"),
    (r"timed out", "Timed out"),
    (r"no such file or directory|ENOENT", "No such file or directory"),
))
_ERROR_LINE = re.compile(r"^\s*(fatal|error|warning|remote: error)\b", re.IGNORECASE)


def printable(text: str) -> str:
    """``text`` with undecodable bytes (surrogate escapes) shown as ``\\xNN``, so it can be stored and logged."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: What to do about each known cause, in a few words (the second half of a one-line error).
_FIXES: dict[str, str] = {
    "No space left on device": "free disk space there (the shard's work is kept; retry the task afterwards)",
    "Disk quota exceeded": "free space within the quota, or raise it",
    "Read-only file system": "make that file system writable, or point [worktree] worktree_root at a writable one",
    "Too many open files": "raise the worker's open-files limit (ulimit -n)",
    "Out of memory": "give the worker more memory, or run fewer tasks at once",
    "Permission denied": "run the worker as the owner of the repository and the worktree root, or fix their "
                         "permissions",
    "Repository owned by another user (safe.directory)": "run the worker as the repository's owner, or add it to "
                                                        "git's safe.directory",
    "could not lock": "another git command holds the lock, or a dead one left the .lock file: remove it once no git "
                      "runs there",
    "not a git repository": "point the task at a git repository (repo= or the git_worktree connection)",
    "push rejected: the remote branch moved": "fetch and retry; the shard's commit is kept on its branch",
    "Authentication failed": "check the credentials of the git_worktree connection",
    "Could not resolve host": "check the remote URL and the worker's DNS",
    "Could not connect": "check that the remote is reachable from the worker",
    "Timed out": "check the remote and the disk, or raise git_timeout",
    "No such file or directory": "check the path",
}


def error_fix(cause: str | None) -> str | None:
    """What to do about a cause named by :func:`error_cause`, or None."""
    return _FIXES.get(cause or "")


def error_cause(text: str) -> str | None:
    """The known cause named in ``text`` ("No space left on device", "Permission denied", ...), or None."""
    for pattern, cause in _CAUSES:
        if pattern.search(text or ""):
            return cause
    return None


def summarize_error(text: str, limit: int = DEFAULT_SUMMARY_LIMIT, max_lines: int = DEFAULT_SUMMARY_LINES) -> str:
    """Cause first, then at most ``max_lines`` distinct lines of ``text``, in at most ``limit`` characters.

    The first line is ``"<cause>: <the line that says so>"`` when a known cause ("No space left on device",
    "Permission denied", "could not lock", "not a git repository", ...) appears anywhere in ``text``, else the
    first ``fatal:``/``error:`` line, else the first line. Repeated lines (a 1,600-line error that says the same
    thing for every file) are kept once with a count of the rest.
    """
    text = printable(text or "")
    lines: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line and line not in seen:
            seen.add(line)
            lines.append(line)
    if not lines:
        return ""
    cause = error_cause(text)
    first = None
    if cause is not None:
        pattern = next(p for p, c in _CAUSES if c == cause)
        first = next((ln for ln in lines if pattern.search(ln)), None)
    if first is None:
        first = next((ln for ln in lines if _ERROR_LINE.match(ln)), lines[0])
    rest = [ln for ln in lines if ln != first]
    # Error lines first, then the rest, each in their original order.
    rest = [ln for ln in rest if _ERROR_LINE.match(ln)] + [ln for ln in rest if not _ERROR_LINE.match(ln)]
    head = f"{cause}: {first}" if cause and not first.lower().startswith(cause.lower()) else first
    out = [head[:limit]]
    budget = limit - len(out[0])
    for line in rest[:max_lines]:
        line = line if len(line) <= 300 else line[:297] + "..."
        if len(line) + 1 > budget:
            break
        out.append(line)
        budget -= len(line) + 1
    dropped = len(text.splitlines()) - len(out)
    if dropped > 0 and budget > 30:
        out.append(f"(+{dropped} more lines)")
    return "\n".join(out)


class WorktreeProviderError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(WorktreeProviderError, ValueError):
    """Bad input from a DAG author or operator: a parameter, a path, a connection."""


class GitError(WorktreeProviderError):
    """A git command failed, timed out, or git itself is missing or too old.

    ``stderr`` is git's own output, summarised and bounded (:func:`summarize_error`); ``timed_out`` is True
    when the command was killed by its timeout.
    """

    def __init__(self, message: str, *, args: list[str] | None = None, returncode: int | None = None,
                 stderr: str = "", timed_out: bool = False) -> None:
        super().__init__(message)
        self.git_args = args or []
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out


class PushRejected(GitError):
    """A compare-and-swap push was refused: the remote branch is not at the expected commit any more.

    ``expected`` is what the caller expected (None: the branch must not exist), ``actual`` what the remote
    holds now (None: absent, or unknown when it could not be read).
    """

    def __init__(self, message: str, *, branch: str, remote: str, expected: str | None, actual: str | None,
                 **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.branch = branch
        self.remote = remote
        self.expected = expected
        self.actual = actual


class ShardFailed(WorktreeProviderError):
    """The shard's work did not succeed; the reason is recorded in the shard database. ``result`` is the
    shard's ``ShardResult`` when one was recorded (``core.lifecycle``).

    ``permanent``: a retry cannot change the outcome (the metric did not improve, the change left the shard,
    the budget is spent, the API refused the request, bad configuration); the operator then fails the task
    without retries. Otherwise the failure is transient (lease lost, database or git trouble, rate limits,
    a cancelled run) and Airflow's retries apply.
    """

    def __init__(self, message: str, result: Any = None, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.result = result
        self.permanent = permanent
