"""Remote repositories: reaching one (:func:`probe_repository`), and the per-host clone cache a remote URL is
opened from (:func:`locate_repository`, :class:`CloneCache`). URLs and credentials: :mod:`.urls`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from airflow_provider_worktree.core.errors import ConfigurationError, GitError
from airflow_provider_worktree.core.git.command import DEFAULT_GIT_TIMEOUT, git_version, run_git
from airflow_provider_worktree.core.git.locks import DEFAULT_LOCK_TIMEOUT, InterProcessLock
from airflow_provider_worktree.core.git.repo import default_root
from airflow_provider_worktree.core.git.runner import GitRunner
from airflow_provider_worktree.core.git.urls import credential_env, is_remote_url, redact_url, strip_url_credentials


@dataclass(frozen=True)
class RepositoryLocation:
    """Where a :class:`~airflow_provider_worktree.core.git.repo.GitRepo` opens a repository: ``path`` (a local
    path as given, or the cached clone of ``remote_url``), with the git environment (credentials included) and
    the calls made to get there. Pass the fields to ``GitRepo``."""

    path: str | os.PathLike[str]
    git_env: dict[str, str]
    remote_url: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    fetched: bool = False
    call_log: tuple[list[str], ...] = ()


def locate_repository(repo: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, *,
                      git_env: Mapping[str, str] | None = None, git_timeout: float = DEFAULT_GIT_TIMEOUT,
                      lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT) -> RepositoryLocation:
    """The local path ``repo`` as it is; a remote URL cloned (bare) into the per-host cache once and fetched.

    The URL's credentials are taken out of it and go to git through the environment (:func:`credential_env`);
    the cache is ``cache_dir`` (default ``$AIRFLOW_HOME/worktree-cache``, else ``~/.cache/airflow-worktree``).
    """
    env = dict(git_env or {})
    if repo is None or not is_remote_url(os.fspath(repo)):
        return RepositoryLocation(repo, env, cache_dir=cache_dir)
    git_version()  # git missing or < 2.20 -> GitError naming the fix
    clean, user, password = strip_url_credentials(os.fspath(repo))
    if password:
        env.update(credential_env(user, password, clean, base_env=env or None))
    cache = os.path.realpath(os.path.expanduser(os.fspath(cache_dir))) if cache_dir else \
        os.path.realpath(default_root("worktree-cache", os.path.expanduser("~/.cache/airflow-worktree")))
    runner = GitRunner(env, git_timeout)
    path, fetched = CloneCache(clean, cache, lock_timeout).ensure_clone(runner)
    return RepositoryLocation(path, env, remote_url=clean, cache_dir=cache, fetched=fetched,
                              call_log=tuple(runner.call_log))


def probe_repository(repo: str, git_env: Mapping[str, str] | None = None, timeout: float = 30) -> str:
    """Check that ``repo`` (path or URL) is reachable without changing anything; returns a short description."""
    if is_remote_url(repo):
        clean, user, password = strip_url_credentials(repo)
        env = dict(git_env or {})
        if password:
            env.update(credential_env(user, password, clean, base_env=env or None))
        out = run_git(["ls-remote", "--symref", "--", clean, "HEAD"], timeout=timeout, env=env).stdout
        head = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("ref:")), "HEAD")
        return f"remote {redact_url(clean)} reachable (default branch {head})"
    path = os.path.realpath(os.path.expanduser(repo))
    if not os.path.isdir(path):
        raise ConfigurationError(f"Repository path {path} does not exist. Point the connection's host at a clone.")
    try:
        out = run_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=path, timeout=timeout, env=git_env).stdout
    except GitError as exc:
        raise ConfigurationError(f"{path} is not a git repository ({exc.stderr}). Point the connection's host "
                                 "at a clone.") from None
    return f"local repository {path} (HEAD {out.strip()})"


class CloneCache:
    """A bare clone of a remote per host (``<cache_dir>/<name>-<hash>.git``), made once and fetched."""

    def __init__(self, remote_url: str, cache_dir: str, lock_timeout: float | None) -> None:
        self.remote_url = remote_url
        self.cache_dir = cache_dir
        self.lock_timeout = lock_timeout

    def key(self) -> str:
        name = re.sub(r"\.git$", "", self.remote_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:40] or "repo"
        return f"{name}-{hashlib.sha256(self.remote_url.encode()).hexdigest()[:16]}"

    def ensure_clone(self, repo: GitRunner) -> tuple[str, bool]:
        """Clone the remote (bare) into the cache once per host, atomically, under a lock.

        Returns (path of the clone, whether it was fetched just now).
        """
        key = self.key()
        os.makedirs(self.cache_dir, exist_ok=True)
        target = os.path.join(self.cache_dir, key + ".git")
        with InterProcessLock(os.path.join(self.cache_dir, key + ".clone.lock"), timeout=self.lock_timeout,
                              purpose=f"clone {self.remote_url}"):
            if os.path.isdir(target):
                return target, False
            tmp = tempfile.mkdtemp(prefix=".clone-", dir=self.cache_dir)
            try:
                staging = os.path.join(tmp, "repo.git")
                repo.git(["clone", "--bare", "--quiet", "--", self.remote_url, staging], cwd=self.cache_dir)
                repo.git(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], cwd=staging)
                repo.git(["fetch", "--quiet", "--prune", "origin"], cwd=staging)
                head = repo.git(["symbolic-ref", "-q", "HEAD"], cwd=staging, check=False).stdout.strip()
                if head.startswith("refs/heads/"):
                    repo.git(["symbolic-ref", "refs/remotes/origin/HEAD",
                              "refs/remotes/origin/" + head[len("refs/heads/"):]], cwd=staging, check=False)
                os.rename(staging, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target, True
