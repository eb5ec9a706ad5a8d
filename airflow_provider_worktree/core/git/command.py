"""Running git: no shell, hardened (:mod:`~airflow_provider_worktree.core.git.safety`), a timeout, clear errors.

Every git invocation of the package goes through :func:`run_git`, so what git may execute, which environment
it sees (credentials only for remote commands), timeouts and error messages are handled in one place.
Output is decoded as UTF-8 with ``surrogateescape`` (and input encoded the same way), so a file name that is
not valid UTF-8 survives a round trip through git (``os.fsencode(name)`` gives its bytes back).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from airflow_provider_worktree.core.errors import GitError, error_cause, error_fix, printable, summarize_error
from airflow_provider_worktree.core.git.safety import git_environment, harden
from airflow_provider_worktree.core.sandbox.proc import kill_process_group

MIN_GIT_VERSION = (2, 20)
DEFAULT_GIT_TIMEOUT = 120.0
#: Seconds a timed-out git gets after SIGTERM to remove its lock files before SIGKILL.
TIMEOUT_GRACE_S = 2.0
#: Bound on the git output kept in a :class:`GitError`.
STDERR_LIMIT = 4000


def git_executable() -> str:
    """Path of the git binary, or a GitError that says how to install it."""
    exe = shutil.which("git")
    if not exe:
        raise GitError("git is not installed or not on PATH. Install git >= 2.20 (e.g. `apt-get install git`).")
    return exe


@functools.lru_cache(maxsize=1)
def git_version() -> tuple[int, int, int]:
    """The installed git's version; raises GitError when git is missing or older than 2.20."""
    out = subprocess.run([git_executable(), "--version"], capture_output=True, text=True, timeout=30,
                         env=git_environment(None, remote=False), stdin=subprocess.DEVNULL)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    if not match:
        raise GitError(f"Could not read git's version from {out.stdout!r}. Install git >= 2.20.")
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
    if version[:2] < MIN_GIT_VERSION:
        raise GitError(
            f"git {'.'.join(map(str, version))} is too old: worktree support needs git >= 2.20. Upgrade git."
        )
    return version


#: git often reports a full disk only as "unable to write file x"; such failures get the free space checked.
_WRITE_FAILURE = re.compile(r"unable to (write|create)|could not write|write error|cannot create|failed to write|"
                            r"short write|unable to append", re.IGNORECASE)
#: Below this many free bytes a failed write is put down to a full disk.
LOW_SPACE_BYTES = 1 << 20


def disk_full_hint(path: str | os.PathLike[str] | None, output: str) -> str | None:
    """"No space left on device (...)" when git's ``output`` reports a failed write and the file system of
    ``path`` is (nearly) full or out of inodes; None otherwise (also when git named the cause itself)."""
    if not path or error_cause(output) is not None or not _WRITE_FAILURE.search(output):
        return None
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free < LOW_SPACE_BYTES:
        return f"No space left on device ({free} bytes free on the file system of {printable(os.fspath(path))})"
    if st.f_files and st.f_favail == 0:
        return f"No space left on device (no free inodes on the file system of {printable(os.fspath(path))})"
    return None


def _describe(args: Sequence[str]) -> str:
    return printable(" ".join(a for a in args[:3]))


def run_git(
    args: Sequence[str],
    cwd: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = DEFAULT_GIT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,  # noqa: A002 - same name as subprocess.run
) -> subprocess.CompletedProcess[str]:
    """Run ``git *args`` in ``cwd`` without a shell, hardened, and return the completed process.

    ``env`` adds to an allowlisted environment (see :func:`gitsafety.git_environment`); secrets belong there,
    never in ``args``, and reach git only for ``clone``/``fetch``/``push``/``ls-remote``. On timeout the
    command's process group gets SIGTERM (git then removes its lock files), SIGKILL after a grace.
    Raises :class:`GitError` (message: the cause first, bounded) on a non-zero exit (when ``check``) and on
    timeout.
    """
    git_version()
    argv, full_env = harden(git_executable(), args, cwd, env, timeout)
    data = input.encode("utf-8", "surrogateescape") if input is not None else None
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.PIPE if data is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise GitError(f"git {_describe(args)} could not start in {cwd}: {summarize_error(str(exc))}",
                       args=list(args), stderr=str(exc)) from None
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc, TIMEOUT_GRACE_S)
        out, err = proc.communicate()
        stderr = summarize_error(err.decode("utf-8", "surrogateescape"), STDERR_LIMIT)
        raise GitError(
            f"git {_describe(args)} timed out after {timeout}s in {cwd} and was stopped. Check for a hung "
            "remote, a huge repository or a full disk, or raise git_timeout.",
            args=list(args), stderr=stderr, timed_out=True,
        ) from None
    except BaseException:
        kill_process_group(proc, 0)
        raise
    stdout = out.decode("utf-8", "surrogateescape")
    stderr_text = err.decode("utf-8", "surrogateescape")
    result = subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr_text)
    if check and proc.returncode != 0:
        raw = "\n".join(t for t in (stderr_text.strip(), stdout.strip()) if t)  # push --porcelain: stdout
        hint = disk_full_hint(cwd, raw)
        if hint:
            raw = f"{hint}\n{raw}"
        # One line, the cause and what to do; git's own output stays in .stderr (and the task log).
        summary = summarize_error(raw, max_lines=0)
        first = summary.splitlines()[0] if summary else "git printed nothing"
        fix = error_fix(error_cause(raw))
        raise GitError(
            f"git {_describe(args)} failed (exit {proc.returncode}) in {printable(os.fspath(cwd or '.'))}: "
            f"{first}" + (f"; {fix}" if fix else ""),
            args=list(args), returncode=proc.returncode, stderr=summarize_error(raw, STDERR_LIMIT, 40),
        )
    return result
