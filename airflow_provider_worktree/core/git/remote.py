"""Remote repositories: URLs, credentials handed to git through the environment, the per-host clone cache.

Credentials reach git only through environment variables (:func:`credential_env`), never through a command
line, a file, a remote URL stored in ``.git/config``, or a log line; and only for the commands that talk to
the remote (see :mod:`~airflow_provider_worktree.core.git.safety`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

from airflow_provider_worktree.core.errors import ConfigurationError, GitError
from airflow_provider_worktree.core.git.command import git_version, run_git
from airflow_provider_worktree.core.git.locks import InterProcessLock

if TYPE_CHECKING:
    from airflow_provider_worktree.core.git.repo import GitRepo

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_RE = re.compile(r"[^/@:\s]+@[^/:\s]+:")


def is_remote_url(repo: str) -> bool:
    """Whether ``repo`` names a remote (``scheme://...`` or scp-like ``user@host:path``) rather than a path."""
    return bool(_URL_RE.match(repo) or _SCP_RE.match(repo))


def strip_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Split ``https://user:token@host/x`` into (``https://host/x``, user, token); other URLs pass unchanged."""
    m = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/]*)@(?P<rest>.*)\Z", url)
    if not m or m.group("scheme").lower() not in ("http://", "https://"):
        return url, None, None
    user, sep, password = m.group("userinfo").partition(":")
    if not sep:
        return url, None, None  # bare user@ carries no secret
    return m.group("scheme") + m.group("rest"), unquote(user) or None, unquote(password)


def redact_url(url: str) -> str:
    """``url`` with any embedded password replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def credential_env(username: str | None, password: str, url: str | None = None,
                   base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment that makes git send HTTP Basic credentials, without a file or a command-line argument.

    Uses git's ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_<n>``/``GIT_CONFIG_VALUE_<n>`` (git >= 2.31) to set
    ``http.<url>.extraHeader = Authorization: Basic <base64(user:password)>``, scoped to the URL's
    ``scheme://host/`` when ``url`` is given (so redirects to other hosts do not receive it). Entries already
    exported in ``base_env`` (default: ``os.environ``) are kept and appended to. Environment variables are
    not visible in ``ps`` output (only to the same user through ``/proc/<pid>/environ``); :func:`run_git`
    passes them to remote commands only.
    """
    if not password:
        raise ConfigurationError("credential_env needs a password or token. Set the connection's password.")
    if git_version()[:2] < (2, 31):
        raise GitError("Passing credentials through GIT_CONFIG_COUNT needs git >= 2.31. Upgrade git.")
    src = os.environ if base_env is None else base_env
    try:
        index = int(src.get("GIT_CONFIG_COUNT") or os.environ.get("GIT_CONFIG_COUNT") or "0")
    except ValueError:
        index = 0
    env = {k: v for k, v in src.items() if k.startswith("GIT_CONFIG_")} if base_env is not None else {}
    key = "http.extraHeader"
    if url:
        clean, _, _ = strip_url_credentials(url)
        m = re.match(r"(https?://[^/]+)", clean, re.IGNORECASE)
        if m:
            key = f"http.{m.group(1)}/.extraHeader"
    token = base64.b64encode(f"{username or 'x-access-token'}:{password}".encode()).decode()
    env.update({
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": key,
        f"GIT_CONFIG_VALUE_{index}": f"Authorization: Basic {token}",
        "GIT_TERMINAL_PROMPT": "0",
    })
    return env


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

    def ensure_clone(self, repo: GitRepo) -> tuple[str, bool]:
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
