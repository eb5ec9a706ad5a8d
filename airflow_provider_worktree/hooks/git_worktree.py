"""``GitWorktreeHook``: the Airflow face of :class:`~airflow_provider_worktree.core.worktrees.manager.WorktreeManager`.

Connection (type ``git_worktree``):

* ``host`` — the repository: a local path or a remote URL (cloned into a per-worker cache);
* ``login`` / ``password`` — HTTPS credentials (username and access token) for a remote;
* ``extra`` — ``worktree_root``, ``cache_dir``, ``author_name``, ``author_email``, ``base_ref``, and
  ``git_conn_id``: the id of an official ``git`` provider connection whose credentials to use instead
  (its ``login``/``password``, a token embedded in its URL, or its ``key_file`` extra for SSH).

Explicit constructor arguments override the connection. When the connection does not exist and ``repo`` is
given, the hook works without one. Credentials reach git only through environment variables (never a file,
a command line, or a log line), and only the git commands that talk to the remote see them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError
from airflow_provider_worktree.core.git import (
    credential_env,
    is_remote_url,
    probe_repository,
    redact_url,
    strip_url_credentials,
)
from airflow_provider_worktree.core.worktrees import WorktreeManager
from airflow_provider_worktree.version_compat import AirflowNotFoundException

#: Connection extras this hook reads (keep in sync with ``conn-fields`` in get_provider_info.py).
EXTRA_FIELDS = ("worktree_root", "cache_dir", "author_name", "author_email", "base_ref", "git_conn_id")


def _conf_option(key: str) -> str | None:
    """``[worktree] <key>`` from Airflow's config (env ``AIRFLOW__WORKTREE__<KEY>``), or None."""
    from airflow_provider_worktree.version_compat import conf

    return conf.get("worktree", key, fallback=None) or None


class GitWorktreeHook(BaseHook):
    """The :class:`WorktreeManager` of the connection's repository (:meth:`get_manager`, or :meth:`get_conn`):
    create, commit in, push, list, remove and prune shard worktrees through it, e.g.
    ``GitWorktreeHook("git_worktree_default").get_manager().prune(dry_run=True)``. A worktree's default start
    is ``settings["base_ref"]`` (the connection's ``base_ref`` extra, else ``HEAD``)."""

    conn_name_attr = "git_worktree_conn_id"
    default_conn_name = "git_worktree_default"
    conn_type = "git_worktree"
    hook_name = "Git Worktree"

    def __init__(self, git_worktree_conn_id: str = default_conn_name, repo: str | None = None,
                 worktree_root: str | None = None, cache_dir: str | None = None, author_name: str | None = None,
                 author_email: str | None = None, base_ref: str | None = None, git_conn_id: str | None = None,
                 git_timeout: float = 120, git_env: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.git_worktree_conn_id = git_worktree_conn_id
        self._overrides = {"repo": repo, "worktree_root": worktree_root, "cache_dir": cache_dir,
                           "author_name": author_name, "author_email": author_email, "base_ref": base_ref,
                           "git_conn_id": git_conn_id}
        self.git_timeout = git_timeout
        self._extra_git_env = dict(git_env or {})
        self._settings: dict[str, Any] | None = None
        self._git_env: dict[str, str] | None = None
        self._manager: WorktreeManager | None = None

    # ------------------------------------------------------------------ configuration
    def _load_connection(self):
        try:
            return self.get_connection(self.git_worktree_conn_id)
        except AirflowNotFoundException:
            if self._overrides["repo"]:
                self.log.info("Connection %r not found; using repo=%s without a connection",
                              self.git_worktree_conn_id, redact_url(self._overrides["repo"]))
                return None
            raise ConfigurationError(
                f"Connection {self.git_worktree_conn_id!r} does not exist and no repo was given. Create it "
                f"(conn_type git_worktree, host = repository path or URL), e.g. AIRFLOW_CONN_"
                f"{self.git_worktree_conn_id.upper()}='{{\"conn_type\":\"git_worktree\",\"host\":\"/srv/repo\"}}', "
                "or pass repo=..."
            ) from None

    @property
    def settings(self) -> dict[str, Any]:
        """Effective settings (explicit arguments over connection extras over defaults); no secrets."""
        if self._settings is None:
            conn = self._load_connection()
            extra = conn.extra_dejson if conn is not None else {}
            unknown = sorted(set(extra) - set(EXTRA_FIELDS))
            if unknown:
                self.log.warning("Connection %r has unknown extra keys %s (known: %s)", self.git_worktree_conn_id,
                                 unknown, ", ".join(EXTRA_FIELDS))
            s: dict[str, Any] = {k: extra.get(k) for k in EXTRA_FIELDS}
            s["repo"] = conn.host if conn is not None else None
            for key, value in self._overrides.items():
                if value is not None:
                    s[key] = value
            for key in ("worktree_root", "cache_dir"):  # per-worker defaults: AIRFLOW__WORKTREE__<KEY>
                if not s.get(key):
                    s[key] = _conf_option(key)
            login = conn.login if conn is not None else None
            password = conn.password if conn is not None else None
            self._git_env = self._build_git_env(s, login, password)
            if not s.get("repo"):
                raise ConfigurationError(
                    f"No repository configured: set the host of connection {self.git_worktree_conn_id!r} to a "
                    "local path or URL, or pass repo=..."
                )
            s["author_name"] = s.get("author_name") or "airflow-worktree"
            s["author_email"] = s.get("author_email") or "airflow-worktree@localhost"
            s["base_ref"] = s.get("base_ref") or "HEAD"
            self._settings = s
        return self._settings

    def _build_git_env(self, s: dict[str, Any], login: str | None, password: str | None) -> dict[str, str]:
        env = dict(self._extra_git_env)
        key_file = None
        if s.get("git_conn_id"):
            gconn = self.get_connection(s["git_conn_id"])  # an official `git` provider connection
            gextra = gconn.extra_dejson
            if not s.get("repo") and gconn.host:
                s["repo"] = gconn.host
            if gconn.host and is_remote_url(gconn.host):
                _, user, token = strip_url_credentials(gconn.host)
                login, password = gconn.login or user or login, gconn.password or token or password
            else:
                login, password = gconn.login or login, gconn.password or password
            if gextra.get("private_key"):
                raise ConfigurationError(
                    f"Git connection {s['git_conn_id']!r} holds an inline private_key; this hook never writes "
                    "keys to disk. Use its key_file extra (a key file mounted on the worker), an ssh-agent, or "
                    "an HTTPS access token."
                )
            key_file = gextra.get("key_file")
            if key_file:
                strict = gextra.get("strict_host_key_checking") or "accept-new"
                cmd = ["ssh", "-i", key_file, "-o", "IdentitiesOnly=yes", "-o", f"StrictHostKeyChecking={strict}"]
                if gextra.get("known_hosts_file"):
                    cmd += ["-o", f"UserKnownHostsFile={gextra['known_hosts_file']}"]
                if gextra.get("ssh_port"):
                    cmd += ["-p", str(int(gextra["ssh_port"]))]
                env["GIT_SSH_COMMAND"] = " ".join(shlex.quote(c) for c in cmd)
        repo = s.get("repo")
        if repo and is_remote_url(repo):
            clean, user, token = strip_url_credentials(repo)
            s["repo"] = clean
            login, password = login or user, password or token
            if password and clean.lower().startswith(("http://", "https://")):
                env.update(credential_env(login, password, clean, base_env=env or None))
        return env

    # ------------------------------------------------------------------ manager
    def get_manager(self) -> WorktreeManager:
        """The (cached) :class:`WorktreeManager` for the configured repository."""
        if self._manager is None:
            s = self.settings
            self._manager = WorktreeManager(
                s["repo"], worktree_root=s.get("worktree_root"), cache_dir=s.get("cache_dir"),
                author_name=s["author_name"], author_email=s["author_email"], git_timeout=self.git_timeout,
                git_env=self._git_env,
            )
            self.log.info("Worktree manager ready: repository %s, worktree root %s",
                          redact_url(str(self._manager.repo)), self._manager.worktree_root)
        return self._manager

    def test_connection(self) -> tuple[bool, str]:
        """Check the repository is reachable (no clone, nothing written)."""
        try:
            s = self.settings
            root = s.get("worktree_root")
            if root and not os.path.isabs(os.path.expanduser(root)):
                return False, f"worktree_root {root!r} is not an absolute path. Use an absolute directory."
            message = probe_repository(s["repo"], git_env=self._git_env, timeout=min(self.git_timeout, 60))
            if not is_remote_url(s["repo"]):
                # Local: also validate the worktree root against the work tree (writes nothing).
                message += f"; worktrees under {self.get_manager().worktree_root}"
        except (WorktreeProviderError, AirflowNotFoundException) as exc:
            return False, str(exc)
        return True, message

    def get_conn(self) -> WorktreeManager:
        """Same as :meth:`get_manager` (BaseHook's generic accessor)."""
        return self.get_manager()
