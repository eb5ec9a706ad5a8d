"""The repository a :class:`~airflow_provider_worktree.core.worktrees.manager.WorktreeManager` works on, and what git
knows about it: paths, the per-repository lock, refs, status, the worktree list (git calls: :class:`GitRunner
<airflow_provider_worktree.core.git.runner.GitRunner>`).

A :class:`GitRepo` opens a local path; a remote URL is cloned into the per-host cache first
(:func:`~airflow_provider_worktree.core.git.remote.locate_repository`). The worktree collaborators (create,
commit, push, salvage, remove, prune) share one :class:`GitRepo`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from airflow_provider_worktree.core.errors import ConfigurationError, GitError
from airflow_provider_worktree.core.git.command import DEFAULT_GIT_TIMEOUT, git_version, run_git
from airflow_provider_worktree.core.git.locks import DEFAULT_LOCK_TIMEOUT, InterProcessLock
from airflow_provider_worktree.core.git.records import WorktreeInfo, parse_owner
from airflow_provider_worktree.core.git.refs import check_ref_arg
from airflow_provider_worktree.core.git.runner import GitRunner
from airflow_provider_worktree.core.git.status import STATUS_ARGS, WorktreeStatus, parse_status
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE, SandboxViolation, is_within, read_repo_bytes

log = logging.getLogger("airflow_provider_worktree.core.worktrees.manager")

#: Name of the per-repository lock file inside the git common dir.
LOCK_FILE_NAME = "airflow-worktree.lock"


def default_root(sub: str, fallback: str) -> str:
    """``$AIRFLOW_HOME/<sub>`` when ``AIRFLOW_HOME`` is set, else ``fallback``."""
    home = os.environ.get("AIRFLOW_HOME")
    if home:
        return os.path.join(home, sub)
    return fallback


def default_worktree_root() -> str:
    """Where worktrees go when no ``worktree_root`` is configured: ``$AIRFLOW_HOME/worktrees``, else a directory of
    this user under the temporary directory. The dashboard's Health page reads the same default."""
    return default_root("worktrees", os.path.join(tempfile.gettempdir(), f"airflow-worktrees-{os.getuid()}"))


def lock_file_in_use(path: str) -> bool:
    """Whether a live process on this host has ``path`` open (git keeps its ``*.lock`` files open while it
    works on them). Processes whose file descriptors cannot be read (other users') are not counted."""
    target = os.path.realpath(path)
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return True
            except OSError:
                continue
    return False


class GitRepo(GitRunner):
    """One repository at a local path (for a remote, its clone in the per-host cache) and its worktree root.

    ``remote_url`` says that ``repo`` is the cached clone of that remote (``fetched``: fetched just now);
    ``call_log`` holds the git calls made before (the clone).
    """

    def __init__(self, repo: str | os.PathLike[str], worktree_root: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, author_name: str = "airflow-worktree",
                 author_email: str = "airflow-worktree@localhost", git_timeout: float = DEFAULT_GIT_TIMEOUT,
                 git_env: Mapping[str, str] | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, *,
                 remote_url: str | None = None, fetched: bool = False, call_log: Iterable[list[str]] = ()) -> None:
        git_version()  # git missing or < 2.20 -> GitError naming the fix
        if repo is None or str(repo).strip() == "":
            raise ConfigurationError("repo is empty. Give a local repository path or a remote URL.")
        super().__init__(git_env, git_timeout, call_log=call_log)
        self.author_name = author_name
        self.author_email = author_email
        self.lock_timeout = lock_timeout
        self.remote_url = remote_url
        #: Whether the remote was fetched since this repository was opened (a fresh clone counts).
        self.fetched = fetched
        self.cache_dir = os.path.realpath(os.fspath(cache_dir)) if cache_dir else None
        repo_path = os.path.realpath(os.path.expanduser(os.fspath(repo)))
        self.repo = remote_url or repo_path
        if not os.path.isdir(repo_path):
            raise ConfigurationError(f"Repository path {repo_path} does not exist or is not a directory. "
                                     "Point repo at a local git clone or give a remote URL.")
        self._init_repo(repo_path)

        root = worktree_root or default_worktree_root()
        self.worktree_root = os.path.realpath(os.path.expanduser(os.fspath(root)))
        for inside in filter(None, (self.work_tree, self.common_dir)):
            if is_within(self.worktree_root, inside):
                raise ConfigurationError(
                    f"worktree_root {self.worktree_root} is inside the repository at {inside}; worktrees there "
                    "would show up as untracked files and nest repositories. Choose a directory outside it, "
                    "e.g. $AIRFLOW_HOME/worktrees."
                )
        self.lock = InterProcessLock(os.path.join(self.common_dir, LOCK_FILE_NAME), timeout=lock_timeout,
                                     purpose="git admin")
        v = git_version()
        self.lock_on_add = v[:2] >= (2, 31)       # worktree add --lock --reason
        self.add_sparse = v[:2] >= (2, 34)        # git add --sparse
        self.list_z = v[:2] >= (2, 36)            # worktree list -z

    def _init_repo(self, path: str) -> None:
        args = ["rev-parse", "--is-bare-repository", "--is-inside-git-dir", "--git-common-dir"]
        try:
            out = run_git(args, cwd=path, timeout=self.git_timeout, env=self.git_env).stdout.splitlines()
        except GitError as exc:
            raise ConfigurationError(
                f"{path} is not a git repository ({exc.stderr or exc}). Point repo at a git clone "
                "(or run `git init` there) or give a remote URL."
            ) from None
        self.call_log.append(args)
        self.is_bare = out[0].strip() == "true"
        self.common_dir = os.path.realpath(os.path.join(path, out[2].strip()))
        self.work_tree = None
        if not self.is_bare:
            cwd = os.path.dirname(self.common_dir) if out[1].strip() == "true" else path
            top = self.git(["rev-parse", "--show-toplevel"], cwd=cwd, check=False).stdout.strip()
            self.work_tree = os.path.realpath(top) if top else None
        self.repo_path = self.work_tree or self.common_dir

    # ------------------------------------------------------------------ git calls
    def author_env(self) -> dict[str, str]:
        """Environment that makes git commit as the configured author and committer."""
        return {"GIT_AUTHOR_NAME": self.author_name, "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name, "GIT_COMMITTER_EMAIL": self.author_email}

    def fetch(self) -> None:
        """Fetch the remote into the cached clone (remote repositories only), under the repository lock."""
        if self.remote_url is None:
            return
        with self.lock.held("fetch"):
            self.git(["fetch", "--quiet", "--prune", "origin"], cwd=self.common_dir)
        self.fetched = True

    # ------------------------------------------------------------------ refs
    def check_branch_name(self, branch: object) -> str:
        if not isinstance(branch, str) or not branch or branch.startswith("-") or CONTROL_RE.search(branch):
            raise ConfigurationError(f"Branch name {branch!r} is invalid (empty, leading '-' or control "
                                     "characters). Use a name such as 'worktree/my-run/shard-1'.")
        proc = self.git(["check-ref-format", "--branch", branch], check=False)
        if proc.returncode != 0 or proc.stdout.strip() != branch:
            raise ConfigurationError(
                f"Branch name {branch!r} is not a valid git branch name (see `git check-ref-format`: no spaces, "
                "'..', '~', '^', ':', '?', '*', '[', '\\', trailing '.lock' or '/'). Use e.g. 'worktree/run/shard-1'."
            )
        return branch

    def resolve_commit(self, base_ref: str) -> str:
        base_ref = check_ref_arg(base_ref, "base_ref")
        candidates = [base_ref]
        if self.remote_url is not None and not base_ref.startswith("refs/") and \
                not re.fullmatch(r"[0-9a-fA-F]{7,40}", base_ref):
            # In the cached clone the remote's branches live under refs/remotes/origin (kept fresh by fetch).
            candidates.insert(0, "refs/remotes/origin/" + base_ref)
        for ref in candidates:
            proc = self.git(["rev-parse", "--verify", "-q", "--end-of-options", ref + "^{commit}"], check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.strip()
        raise ConfigurationError(
            f"base_ref {base_ref!r} does not name a commit in {self.repo}. Use an existing branch, tag or "
            "commit (e.g. 'HEAD' or 'main'); for a remote repository make sure it was pushed."
        )

    def branch_sha(self, branch: str, cwd: str | None = None) -> str | None:
        """The commit ``refs/heads/<branch>`` points at, or None when there is no such branch."""
        proc = self.git(["rev-parse", "--verify", "-q", "refs/heads/" + branch], cwd=cwd, check=False)
        return proc.stdout.strip() or None

    def holds_no_work(self, head: str | None, base: str | None) -> bool:
        """Whether a branch at ``head`` holds no commit beyond ``base`` (unknown base: False)."""
        return bool(head and base and (head == base or self.git(["merge-base", "--is-ancestor", head, base],
                                                                check=False).returncode == 0))

    def delete_branch_if_unused(self, branch: str, head: str | None, base: str | None) -> bool | None:
        """Delete ``branch`` (at ``head``) when it holds no commit beyond ``base``: whether it is gone now, or
        None when it was kept (it holds commits beyond its base, or the base is unknown)."""
        if not self.holds_no_work(head, base):
            return None
        self.git(["branch", "-D", "--", branch], check=False)
        return self.branch_sha(branch) is None

    # ------------------------------------------------------------------ worktrees
    def admin_dir_of(self, path: str) -> str | None:
        """The ``.git/worktrees/<id>`` dir of the linked worktree at ``path`` if it belongs to this repo."""
        try:  # repository content (verify may have replaced it with a FIFO or a link): the safe read
            text = read_repo_bytes(path, ".git", max_bytes=65536).decode("utf-8")
        except (OSError, UnicodeDecodeError, SandboxViolation):
            return None
        if not text.startswith("gitdir:"):
            return None
        gitdir = text[len("gitdir:"):].strip()
        gitdir = os.path.realpath(os.path.join(path, gitdir))
        if os.path.dirname(gitdir) != os.path.join(self.common_dir, "worktrees"):
            return None
        return gitdir

    def check_worktree(self, path: str | os.PathLike[str]) -> str:
        p = os.path.realpath(os.fspath(path))
        if self.admin_dir_of(p) is None:
            raise ConfigurationError(f"{p} is not a linked worktree of {self.repo}. Pass the path returned by "
                                     "create_worktree.")
        return p

    @staticmethod
    def read_lock_reason(admin_dir: str) -> tuple[bool, str | None]:
        try:
            return True, Path(admin_dir, "locked").read_text().strip()
        except FileNotFoundError:
            return False, None
        except OSError:
            return True, None

    def clear_stale_locks(self, admin: str, branch: str | None) -> list[str]:
        """Remove the lock files of one worktree (its ``index.lock``/``HEAD.lock`` and its branch's ref lock)
        that no live process holds open: a git command killed with SIGKILL (a timeout, a dead worker) leaves
        them behind, and they would block the salvage commit and the removal for ever. The caller checks that
        the worktree's owner is this process or dead."""
        candidates = [os.path.join(admin, name) for name in ("index.lock", "HEAD.lock")]
        if branch:
            candidates.append(os.path.join(self.common_dir, "refs", "heads", *branch.split("/")) + ".lock")
        removed = []
        for lock in candidates:
            if os.path.exists(lock) and not lock_file_in_use(lock):
                log.warning("Removing stale %s (no live process holds it)", lock)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
                removed.append(lock)
        return removed

    def status(self, path: str) -> WorktreeStatus:
        """(branch, head sha, changed paths) of the worktree at ``path`` in one git call.

        Paths are decoded with ``surrogateescape``; renames count as a deletion plus an addition.
        """
        return parse_status(self.git([*STATUS_ARGS, "--no-renames"], cwd=path).stdout)

    def add_all(self, path: str, env: Mapping[str, str] | None = None) -> None:
        self.git(["add", "-A", "--sparse"] if self.add_sparse else ["add", "-A"], cwd=path, env=env)

    def rmdir_parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while is_within(parent, self.worktree_root) and parent != self.worktree_root:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    def list_worktrees(self) -> list[WorktreeInfo]:
        """Every worktree git knows for this repository (the main one first), with parsed lock owners."""
        if self.list_z:
            out = self.git(["worktree", "list", "--porcelain", "-z"]).stdout
            records = [r.split("\0") for r in out.split("\0\0") if r.strip("\0")]
        else:
            out = self.git(["worktree", "list", "--porcelain"]).stdout
            records = [r.split("\n") for r in out.split("\n\n") if r.strip()]
        result = []
        for i, rec in enumerate(records):
            info = WorktreeInfo(path="")
            for line in rec:
                key, _, value = line.partition(" ")
                if key == "worktree":
                    info.path = value
                elif key == "HEAD":
                    info.head = value
                elif key == "branch":
                    info.branch = value[len("refs/heads/"):] if value.startswith("refs/heads/") else value
                elif key == "detached":
                    info.detached = True
                elif key == "bare":
                    info.bare = True
                elif key == "locked":
                    info.locked = True
                    info.lock_reason = value or None
                elif key == "prunable":
                    info.prunable = True
                    info.prunable_reason = value or None
            if not info.path:
                continue
            info.is_main = i == 0
            info.managed = not info.is_main and is_within(os.path.realpath(info.path), self.worktree_root)
            owner = parse_owner(info.lock_reason)
            if owner:
                info.owner = owner
                info.run_id = owner.get("run_id")
                info.shard_id = owner.get("shard_id")
                info.attempt = owner.get("attempt")
                info.base_sha = owner.get("base")
                info.created_at = owner.get("created")
            result.append(info)
        return result

