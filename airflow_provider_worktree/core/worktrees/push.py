"""Pushing a shard branch, optionally as a compare-and-swap: the remote branch must be where the caller expects.

``push(..., expect=sha)`` runs ``git push --force-with-lease=refs/heads/<b>:<sha>``; ``expect=None`` means the
branch must not exist on the remote yet (``--force-with-lease=refs/heads/<b>:``). When the remote moved, git
refuses and :class:`~airflow_provider_worktree.core.errors.PushRejected` says what was expected and what the
remote holds, so a worker fenced out of its lease can never replace a newer attempt's result.
"""

from __future__ import annotations

import logging
import os
import re

from airflow_provider_worktree.core.errors import ConfigurationError, GitError, PushRejected
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE
from airflow_provider_worktree.core.worktrees.results import PushResult

log = logging.getLogger("airflow_provider_worktree.core.worktrees.manager")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Default of ``push(expect=...)``: no compare-and-swap.
UNSET = _Unset()
_SHA_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")


class WorktreePusher:
    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo

    @staticmethod
    def _check_remote(remote: object) -> str:
        if not isinstance(remote, str) or not remote or remote.startswith("-") or CONTROL_RE.search(remote):
            raise ConfigurationError(f"Remote {remote!r} is invalid. Give a remote name such as 'origin'.")
        return remote

    def remote_branch_sha(self, branch: str, remote: str = "origin") -> str | None:
        self.repo.check_branch_name(branch)
        self._check_remote(remote)
        out = self.repo.git(["ls-remote", "--refs", "--", remote, f"refs/heads/{branch}"],
                            cwd=self.repo.common_dir).stdout
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def push(self, branch: str, remote: str = "origin", path: str | os.PathLike[str] | None = None,
             force: bool = False, *, expect: str | None | _Unset = UNSET) -> PushResult:
        repo = self.repo
        repo.check_branch_name(branch)
        self._check_remote(remote)
        if expect is not UNSET and expect is not None and (not isinstance(expect, str) or
                                                         not _SHA_RE.match(expect)):
            raise ConfigurationError(f"expect={expect!r} is not a full commit sha. Pass the 40-character sha the "
                                     "remote branch must have (remote_branch_sha()), or None for 'must not exist'.")
        cwd = repo.check_worktree(path) if path is not None else repo.repo_path
        sha = repo.branch_sha(branch, cwd=cwd)
        if not sha:
            raise ConfigurationError(f"Branch {branch!r} does not exist in {repo.repo}; nothing to push. Commit "
                                     "first, or check the branch name.")
        ref = f"refs/heads/{branch}"
        if expect is UNSET:
            mode = ["--force"] if force else []
        else:
            mode = [f"--force-with-lease={ref}:{expect or ''}"]
        try:
            out = repo.git(["push", "--porcelain", *mode, "--", remote, f"{ref}:{ref}"], cwd=cwd).stdout
        except GitError as exc:
            if expect is UNSET or not re.search(r"stale info|\[rejected\]|fetch first|non-fast-forward",
                                                exc.stderr or str(exc)):
                raise
            try:
                actual = self.remote_branch_sha(branch, remote)
            except GitError:
                actual = None
            raise PushRejected(
                f"Push of {branch} to {remote} refused: the remote branch is at {actual or 'nothing (absent)'}, "
                f"expected {expect or 'no branch'}. Another attempt changed it; this result was not pushed "
                "(re-read the shard's state before retrying).",
                branch=branch, remote=remote, expected=expect, actual=actual, args=exc.git_args,
                returncode=exc.returncode, stderr=exc.stderr,
            ) from None
        log.info("Pushed %s (%s) to %s%s", branch, sha[:12], remote,
                 "" if expect is UNSET else f" (expected {expect or 'absent'})")
        return PushResult(remote=remote, branch=branch, sha=sha, output=out.strip(),
                          expected=None if expect is UNSET else expect)
