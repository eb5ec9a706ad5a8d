"""One repository's git calls: its environment and timeout, retried with backoff while git reports a lock file
(another git, a human, a killed process), each call's argv kept in :attr:`GitRunner.call_log`.

The base of :class:`~airflow_provider_worktree.core.git.repo.GitRepo`, and what clones a remote into the cache
before there is a repository to open (:mod:`~airflow_provider_worktree.core.git.remote`).
"""

from __future__ import annotations

import collections
import logging
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence

from airflow_provider_worktree.core.errors import GitError
from airflow_provider_worktree.core.git.command import DEFAULT_GIT_TIMEOUT, run_git

log = logging.getLogger("airflow_provider_worktree.core.worktrees.manager")

_LOCK_ERROR_RE = re.compile(
    r"index\.lock|could not lock config file|Unable to create '[^']*\.lock'|"
    r"unable to write new index file|packed-refs\.lock|shallow\.lock", re.IGNORECASE,
)


class GitRunner:
    """git with one environment (``git_env``, credentials included) and timeout; ``call_log`` starts with
    ``call_log`` (the calls made for this repository before it was opened)."""

    def __init__(self, git_env: Mapping[str, str] | None = None, git_timeout: float = DEFAULT_GIT_TIMEOUT, *,
                 call_log: Iterable[list[str]] = ()) -> None:
        self.git_timeout = float(git_timeout)
        self.git_env: dict[str, str] = dict(git_env or {})
        #: argv of every git call made (never contains credentials); for diagnostics and tests.
        self.call_log: collections.deque[list[str]] = collections.deque(call_log, maxlen=1000)
        #: Where :meth:`git` runs when no ``cwd`` is given (None: the current directory).
        self.repo_path: str | None = None

    def git(self, args: Sequence[str], cwd: str | None = None, *, check: bool = True, input: str | None = None,
            env: Mapping[str, str] | None = None, retries: int = 6) -> subprocess.CompletedProcess[str]:
        """Run git with this repository's env and timeout, retrying with backoff while git reports a lock file."""
        full_env = {**self.git_env, **(env or {})}
        argv = list(args)
        self.call_log.append(argv)
        log.debug("git %s (cwd=%s)", " ".join(argv), cwd)
        delay = 0.05
        for attempt in range(retries + 1):
            try:
                return run_git(argv, cwd=cwd or self.repo_path, timeout=self.git_timeout, env=full_env,
                               check=check, input=input)
            except GitError as exc:
                if attempt < retries and not exc.timed_out and _LOCK_ERROR_RE.search(exc.stderr or ""):
                    log.info("git %s hit a lock file, retrying in %.2fs: %s", argv[0], delay, exc.stderr)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise
        raise AssertionError("unreachable")
