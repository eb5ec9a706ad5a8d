"""Running git: no shell, a timeout, ``--`` before paths (callers' job), clear errors.

Every git invocation of the package goes through :func:`run_git`, so timeouts, the environment
(no prompts, no pager, fixed locale) and error messages are handled in one place.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from airflow_provider_worktree.core.errors import GitError

MIN_GIT_VERSION = (2, 20)
DEFAULT_GIT_TIMEOUT = 120.0

#: Environment that keeps git non-interactive and its output parseable.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "LC_ALL": "C",
    "LANG": "C",
    "GIT_OPTIONAL_LOCKS": "0",
}


def git_executable() -> str:
    """Path of the git binary, or a GitError that says how to install it."""
    exe = shutil.which("git")
    if not exe:
        raise GitError("git is not installed or not on PATH. Install git >= 2.20 (e.g. `apt-get install git`).")
    return exe


@functools.lru_cache(maxsize=1)
def git_version() -> tuple[int, int, int]:
    """The installed git's version; raises GitError when git is missing or older than 2.20."""
    out = subprocess.run([git_executable(), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    if not match:
        raise GitError(f"Could not read git's version from {out.stdout!r}. Install git >= 2.20.")
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
    if version[:2] < MIN_GIT_VERSION:
        raise GitError(
            f"git {'.'.join(map(str, version))} is too old: worktree support needs git >= 2.20. Upgrade git."
        )
    return version


def run_git(
    args: Sequence[str],
    cwd: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = DEFAULT_GIT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git *args`` in ``cwd`` without a shell and return the completed process.

    ``env`` adds to (never replaces) the process environment; secrets belong there, never in ``args``.
    Raises :class:`GitError` on a non-zero exit (when ``check``) and on timeout.
    """
    git_version()
    full_env = {**os.environ, **_BASE_ENV, **(env or {})}
    cmd = [git_executable(), *args]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(
            f"git {' '.join(args[:3])} timed out after {timeout}s in {cwd}. "
            "Check for a hung remote or a huge repository, or raise git_timeout.",
            args=list(args),
        ) from exc
    if check and proc.returncode != 0:
        stderr = (proc.stderr or proc.stdout).strip()
        raise GitError(
            f"git {' '.join(args[:3])} failed (exit {proc.returncode}) in {cwd}: {stderr}",
            args=list(args), returncode=proc.returncode, stderr=stderr,
        )
    return proc
