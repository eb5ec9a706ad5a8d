"""Worktree lifecycle for shards (seed component *WorktreeManager*). Plain Python: no Airflow import.

One :class:`WorktreeManager` serves one repository, a local path or a remote URL (cloned bare into a per-worker
cache and fetched). Each shard gets its own linked worktree on its own branch::

    <worktree_root>/<run-slug>/<shard_id>-a<attempt>        branch worktree/<run-slug>/<shard_id>

Concurrency. Many worker processes share one repository. git's admin operations (``worktree add/remove/prune``,
branch creation and deletion, ``fetch``, sparse-checkout config writes) touch shared files (``config.lock``,
``packed-refs.lock``, ``.git/worktrees``), so they run under ONE :class:`InterProcessLock` per repository,
``<git-common-dir>/airflow-worktree.lock``, and are retried with backoff when git still reports a lock file
(a human or another tool running git). Critical sections are short: a worktree is registered with
``--no-checkout`` under the lock and populated outside it; staging and committing inside a worktree take no
global lock (they touch that worktree's own index and the shard branch's ref, which git locks per ref).

Safety. Every worktree is created locked (``git worktree add --lock --reason <json>``); the reason names the
tool, host, pid (and its start time), run id, shard id, attempt, base commit and creation time, so ``prune``
can tell a live owner from a dead one. Uncommitted work is never thrown away: a forced removal, ``prune`` and
``cleanup_all`` first save it as a commit on a ``worktree-salvage/...`` branch.

Retries. When the shard branch already exists (an earlier attempt), the retry starts again from ``base_ref``
(``worktree add -B``); if the old branch tip holds commits not in the base, they are first kept on a
``worktree-salvage/<run-slug>/<shard_id>-a<attempt>-previous-<sha>`` branch, so nothing is lost. If the branch
is still checked out by an earlier attempt's worktree whose owner process is dead on this host, that worktree
is salvaged and removed first; a live owner makes ``create_worktree`` fail with a clear error.

Credentials. They reach git only through environment variables (``git_env``; see :func:`credential_env`),
never through a command line, a file, a remote URL stored in ``.git/config``, or a log line.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

from airflow_provider_worktree.core.errors import ConfigurationError, GitError, WorktreeProviderError
from airflow_provider_worktree.core.gitcmd import git_version, run_git
from airflow_provider_worktree.core.locks import DEFAULT_LOCK_TIMEOUT, InterProcessLock
from airflow_provider_worktree.core.sandbox import SandboxViolation, read_repo_bytes

log = logging.getLogger(__name__)

#: The ``tool`` value in lock reasons written by this module.
LOCK_TOOL = "airflow-worktree"
#: Prefix of the branches that hold salvaged (uncommitted, or replaced) work.
SALVAGE_PREFIX = "worktree-salvage"
#: Name of the per-repository lock file inside the git common dir.
LOCK_FILE_NAME = "airflow-worktree.lock"
#: Directories under the worktree root without a ``.git`` file younger than this are left alone by prune
#: (another tool may be creating them right now).
ORPHAN_GRACE_SECONDS = 60.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_TRAILER_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_RE = re.compile(r"[^/@:\s]+@[^/:\s]+:")
_LOCK_ERROR_RE = re.compile(
    r"index\.lock|could not lock config file|Unable to create '[^']*\.lock'|"
    r"unable to write new index file|packed-refs\.lock|shallow\.lock", re.IGNORECASE,
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------------- results
@dataclass
class WorktreeInfo:
    """One worktree: as created by :meth:`WorktreeManager.create_worktree` or listed by ``list_worktrees``."""

    path: str
    branch: str | None = None          # short name (no refs/heads/), None when detached or bare
    head: str | None = None
    base_sha: str | None = None
    base_ref: str | None = None
    run_id: str | None = None
    shard_id: str | None = None
    attempt: int | None = None
    locked: bool = False
    lock_reason: str | None = None
    prunable: bool = False
    prunable_reason: str | None = None
    owner: dict | None = None          # parsed lock reason when this tool wrote it
    sparse_paths: list[str] | None = None
    created_at: str | None = None
    is_main: bool = False
    detached: bool = False
    bare: bool = False
    managed: bool = False              # under this manager's worktree_root
    previous_branch_backup: str | None = None  # set when a retry replaced a branch holding commits

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CommitResult:
    sha: str | None
    diffstat: str = ""
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RemoveResult:
    path: str
    branch: str | None = None
    head: str | None = None
    removed: bool = False
    was_dirty: bool = False
    dirty_files: list[str] = field(default_factory=list)
    salvage_branch: str | None = None
    salvage_sha: str | None = None
    branch_deleted: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PushResult:
    remote: str
    branch: str
    sha: str
    output: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PruneReport:
    """What ``prune``/``cleanup_all`` did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    actions: list[str] = field(default_factory=list)       # human-readable, in order
    removed: list[str] = field(default_factory=list)       # worktree paths removed
    salvaged: list[dict] = field(default_factory=list)     # {path, branch, sha}
    git_pruned: list[str] = field(default_factory=list)    # admin entries git pruned (directory gone)
    orphans_removed: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)      # {path, reason}
    errors: list[dict] = field(default_factory=list)       # {path, error}

    def to_dict(self) -> dict:
        return asdict(self)


class WorktreeDirtyError(ConfigurationError):
    """Refused to remove a worktree holding uncommitted changes."""


# --------------------------------------------------------------------------------------------- helpers
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
    not visible in ``ps`` output (only to the same user through ``/proc/<pid>/environ``).
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


def slugify_run_id(run_id: str) -> str:
    """A ref- and path-safe component for an Airflow run id, unique thanks to a short hash of the original.

    ``manual__2026-11-28T05:00:00+00:00`` -> ``manual__2026-11-28T05-00-00-00-00-<8 hex>``.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigurationError("run_id is empty. Pass the Airflow run id (e.g. '{{ run_id }}').")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-_")[:60].rstrip("-_")
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"run-{digest}"


def validate_name(value: object, what: str = "shard_id") -> str:
    """Check a single path/ref component (shard id): ``[A-Za-z0-9][A-Za-z0-9._-]*``, no ``..``, no ``.lock``."""
    if not isinstance(value, str) or value == "":
        raise ConfigurationError(f"{what} is empty. Give a name such as 'todo-3f2a9c1e0b'.")
    problems = []
    if _CONTROL_RE.search(value):
        problems.append("contains control characters")
    if "/" in value or "\\" in value:
        problems.append("contains a path separator")
    if ".." in value:
        problems.append("contains '..'")
    if value.startswith("-"):
        problems.append("starts with '-'")
    if value.endswith(".lock") or value.endswith("."):
        problems.append("ends with '.lock' or '.'")
    if len(value) > 100:
        problems.append("is longer than 100 characters")
    if not problems and not _NAME_RE.match(value):
        problems.append("has characters outside [A-Za-z0-9._-] or does not start with a letter or digit")
    if problems:
        raise ConfigurationError(
            f"{what} {value!r} is not allowed: it {', '.join(problems)}; it would not be a safe directory or "
            f"branch name. Use letters, digits, '.', '_' and '-', starting with a letter or digit."
        )
    return value


def _check_ref_arg(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} is empty. Give a branch, tag or commit such as 'HEAD' or 'main'.")
    if value.startswith("-") or _CONTROL_RE.search(value):
        raise ConfigurationError(f"{what} {value!r} is not a valid git revision (leading '-' or control "
                                 f"characters). Give a branch, tag or commit such as 'main'.")
    return value


def _sparse_pattern(rel: str) -> str:
    """An anchored, escaped non-cone sparse-checkout pattern matching exactly the file ``rel``."""
    escaped = re.sub(r"([\\*?\[\]!#])", r"\\\1", rel)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _proc_start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot) from /proc, to tell a reused pid from the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return stat.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether process ``pid`` exists on this host (and, if given, has the recorded start time)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if start_time is not None:
        current = _proc_start_time(pid)
        if current is not None and current != start_time:
            return False  # the pid was reused by another process
    return True


def parse_owner(reason: str | None) -> dict | None:
    """The owner dict from a lock reason written by this tool, else None."""
    if not reason or not reason.startswith("{"):
        return None
    try:
        data = json.loads(reason)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("tool") == LOCK_TOOL else None


def _default_root(sub: str, fallback: str) -> str:
    home = os.environ.get("AIRFLOW_HOME")
    if home:
        return os.path.join(home, sub)
    return fallback


def _is_within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------- manager
class WorktreeManager:
    """Create, commit in, list, remove and prune shard worktrees of one repository (see module docstring)."""

    def __init__(self, repo: str | os.PathLike[str], worktree_root: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, author_name: str = "airflow-worktree",
                 author_email: str = "airflow-worktree@localhost", git_timeout: float = 120,
                 git_env: Mapping[str, str] | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        git_version()  # git missing or < 2.20 -> GitError naming the fix
        if repo is None or str(repo).strip() == "":
            raise ConfigurationError("repo is empty. Give a local repository path or a remote URL.")
        self.git_timeout = float(git_timeout)
        self.git_env: dict[str, str] = dict(git_env or {})
        self.author_name = author_name
        self.author_email = author_email
        self.lock_timeout = lock_timeout
        #: argv of every git call this manager made (never contains credentials); for diagnostics and tests.
        self.call_log: collections.deque[list[str]] = collections.deque(maxlen=1000)
        self.remote_url: str | None = None
        self._fetched = False

        repo_s = os.fspath(repo)
        if is_remote_url(repo_s):
            clean, user, password = strip_url_credentials(repo_s)
            if password:
                self.git_env.update(credential_env(user, password, clean, base_env=self.git_env or None))
            self.remote_url = clean
            self.cache_dir = os.path.realpath(os.path.expanduser(os.fspath(cache_dir))) if cache_dir else \
                os.path.realpath(_default_root("worktree-cache", os.path.expanduser("~/.cache/airflow-worktree")))
            self.repo = clean
            repo_path = self._ensure_clone()
        else:
            self.cache_dir = os.path.realpath(os.fspath(cache_dir)) if cache_dir else None
            repo_path = os.path.realpath(os.path.expanduser(repo_s))
            self.repo = repo_path
            if not os.path.isdir(repo_path):
                raise ConfigurationError(f"Repository path {repo_path} does not exist or is not a directory. "
                                         "Point repo at a local git clone or give a remote URL.")
        self._init_repo(repo_path)

        root = worktree_root or _default_root("worktrees", os.path.join(tempfile.gettempdir(),
                                                                        f"airflow-worktrees-{os.getuid()}"))
        self.worktree_root = os.path.realpath(os.path.expanduser(os.fspath(root)))
        for inside in filter(None, (self.work_tree, self.common_dir)):
            if _is_within(self.worktree_root, inside):
                raise ConfigurationError(
                    f"worktree_root {self.worktree_root} is inside the repository at {inside}; worktrees there "
                    "would show up as untracked files and nest repositories. Choose a directory outside it, "
                    "e.g. $AIRFLOW_HOME/worktrees."
                )
        self.lock = InterProcessLock(os.path.join(self.common_dir, LOCK_FILE_NAME), timeout=lock_timeout,
                                     purpose="git admin")
        v = git_version()
        self._lock_on_add = v[:2] >= (2, 31)       # worktree add --lock --reason
        self._add_sparse = v[:2] >= (2, 34)        # git add --sparse
        self._commit_trailer = v[:2] >= (2, 32)    # git commit --trailer
        self._list_z = v[:2] >= (2, 36)            # worktree list -z

    # ------------------------------------------------------------------ setup
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
            top = self._git(["rev-parse", "--show-toplevel"], cwd=cwd, check=False).stdout.strip()
            self.work_tree = os.path.realpath(top) if top else None
        self.repo_path = self.work_tree or self.common_dir

    def _cache_key(self) -> str:
        assert self.remote_url is not None
        name = re.sub(r"\.git$", "", self.remote_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:40] or "repo"
        return f"{name}-{hashlib.sha256(self.remote_url.encode()).hexdigest()[:16]}"

    def _ensure_clone(self) -> str:
        """Clone the remote (bare) into the cache once per host, atomically, under a lock; return its path."""
        key = self._cache_key()
        os.makedirs(self.cache_dir, exist_ok=True)
        target = os.path.join(self.cache_dir, key + ".git")
        with InterProcessLock(os.path.join(self.cache_dir, key + ".clone.lock"), timeout=self.lock_timeout,
                              purpose=f"clone {self.remote_url}"):
            if not os.path.isdir(target):
                tmp = tempfile.mkdtemp(prefix=".clone-", dir=self.cache_dir)
                try:
                    staging = os.path.join(tmp, "repo.git")
                    self._git(["clone", "--bare", "--quiet", "--", self.remote_url, staging], cwd=self.cache_dir)
                    self._git(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"],
                              cwd=staging)
                    self._git(["fetch", "--quiet", "--prune", "origin"], cwd=staging)
                    head = self._git(["symbolic-ref", "-q", "HEAD"], cwd=staging, check=False).stdout.strip()
                    if head.startswith("refs/heads/"):
                        self._git(["symbolic-ref", "refs/remotes/origin/HEAD",
                                   "refs/remotes/origin/" + head[len("refs/heads/"):]], cwd=staging, check=False)
                    os.rename(staging, target)
                    self._fetched = True
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        return target

    def fetch(self) -> None:
        """Fetch the remote into the cached clone (remote repositories only), under the repository lock."""
        if self.remote_url is None:
            return
        with self.lock.held("fetch"):
            self._git(["fetch", "--quiet", "--prune", "origin"], cwd=self.common_dir)
        self._fetched = True

    # ------------------------------------------------------------------ git plumbing
    def _git(self, args: Sequence[str], cwd: str | None = None, *, check: bool = True, input: str | None = None,
             env: Mapping[str, str] | None = None, retries: int = 6) -> "subprocess.CompletedProcess[str]":  # noqa: F821
        """Run git with this manager's env and timeout, retrying with backoff while git reports a lock file."""
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
                if attempt < retries and _LOCK_ERROR_RE.search(exc.stderr or ""):
                    log.info("git %s hit a lock file, retrying in %.2fs: %s", argv[0], delay, exc.stderr)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise
        raise AssertionError("unreachable")

    def author_env(self) -> dict[str, str]:
        """Environment that makes git commit as the configured author and committer."""
        return {"GIT_AUTHOR_NAME": self.author_name, "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name, "GIT_COMMITTER_EMAIL": self.author_email}

    def _check_branch_name(self, branch: object) -> str:
        if not isinstance(branch, str) or not branch or branch.startswith("-") or _CONTROL_RE.search(branch):
            raise ConfigurationError(f"Branch name {branch!r} is invalid (empty, leading '-' or control "
                                     "characters). Use a name such as 'worktree/my-run/shard-1'.")
        proc = self._git(["check-ref-format", "--branch", branch], check=False)
        if proc.returncode != 0 or proc.stdout.strip() != branch:
            raise ConfigurationError(
                f"Branch name {branch!r} is not a valid git branch name (see `git check-ref-format`: no spaces, "
                "'..', '~', '^', ':', '?', '*', '[', '\\', trailing '.lock' or '/'). Use e.g. 'worktree/run/shard-1'."
            )
        return branch

    def _resolve_commit(self, base_ref: str) -> str:
        base_ref = _check_ref_arg(base_ref, "base_ref")
        candidates = [base_ref]
        if self.remote_url is not None and not base_ref.startswith("refs/") and \
                not re.fullmatch(r"[0-9a-fA-F]{7,40}", base_ref):
            # In the cached clone the remote's branches live under refs/remotes/origin (kept fresh by fetch).
            candidates.insert(0, "refs/remotes/origin/" + base_ref)
        for ref in candidates:
            proc = self._git(["rev-parse", "--verify", "-q", "--end-of-options", ref + "^{commit}"], check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.strip()
        raise ConfigurationError(
            f"base_ref {base_ref!r} does not name a commit in {self.repo}. Use an existing branch, tag or "
            "commit (e.g. 'HEAD' or 'main'); for a remote repository make sure it was pushed."
        )

    def _admin_dir_of(self, path: str) -> str | None:
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

    def _read_lock_reason(self, admin_dir: str) -> tuple[bool, str | None]:
        try:
            return True, Path(admin_dir, "locked").read_text().strip()
        except FileNotFoundError:
            return False, None
        except OSError:
            return True, None

    def _status(self, path: str) -> tuple[str | None, str | None, list[str]]:
        """(branch, head sha, dirty paths) of the worktree at ``path`` in one git call."""
        out = self._git(["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"], cwd=path).stdout
        branch = head = None
        dirty: list[str] = []
        records = out.split("\0")
        i = 0
        while i < len(records):
            rec = records[i]
            i += 1
            if not rec:
                continue
            if rec.startswith("# branch.oid "):
                oid = rec.split(" ", 2)[2]
                head = None if oid == "(initial)" else oid
            elif rec.startswith("# branch.head "):
                name = rec.split(" ", 2)[2]
                branch = None if name == "(detached)" else name
            elif rec.startswith("#"):
                continue
            elif rec[0] == "1":
                dirty.append(rec.split(" ", 8)[8])
            elif rec[0] == "2":
                dirty.append(rec.split(" ", 9)[9])
                i += 1  # original path follows
            elif rec[0] == "u":
                dirty.append(rec.split(" ", 10)[10])
            elif rec[0] in "?!":
                dirty.append(rec[2:])
        return branch, head, dirty

    def _add_all(self, path: str, env: Mapping[str, str] | None = None) -> None:
        self._git(["add", "-A", "--sparse"] if self._add_sparse else ["add", "-A"], cwd=path, env=env)

    # ------------------------------------------------------------------ create
    def worktree_path(self, run_id: str, shard_id: str, attempt: int = 1) -> str:
        """Where ``create_worktree`` puts this run/shard/attempt (no side effects)."""
        return os.path.join(self.worktree_root, slugify_run_id(run_id),
                            f"{validate_name(shard_id)}-a{self._check_attempt(attempt)}")

    def default_branch(self, run_id: str, shard_id: str) -> str:
        return f"worktree/{slugify_run_id(run_id)}/{validate_name(shard_id)}"

    @staticmethod
    def _check_attempt(attempt: object) -> int:
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ConfigurationError(f"attempt must be an integer >= 1, got {attempt!r}. Pass the task's "
                                     "try_number.")
        return attempt

    def _sparse_patterns(self, sparse_paths: Iterable[str]) -> list[str]:
        if isinstance(sparse_paths, str):
            sparse_paths = [sparse_paths]
        paths = list(sparse_paths)
        if not paths:
            raise ConfigurationError("sparse_paths is empty; a sparse worktree would contain no files. Pass the "
                                     "shard's files, or None for a full checkout.")
        patterns = []
        for rel in paths:
            if not isinstance(rel, str) or not rel or _CONTROL_RE.search(rel) or rel.startswith("/") or \
                    "\\" in rel or any(part in ("..", ".", "") for part in rel.split("/")) or rel == ".git" or \
                    rel.startswith(".git/"):
                raise ConfigurationError(f"sparse path {rel!r} is not a clean repository-relative POSIX path. "
                                         "Use paths like 'src/app.py' (no leading '/', '..', '.' or '.git').")
            patterns.append(_sparse_pattern(rel))
        return patterns

    def create_worktree(self, run_id: str, shard_id: str, attempt: int = 1, base_ref: str = "HEAD",
                        branch: str | None = None, sparse_paths: Sequence[str] | None = None,
                        owner: str | Mapping | None = None) -> WorktreeInfo:
        """Create a locked worktree for one shard attempt on its own branch, starting at ``base_ref``."""
        shard_id = validate_name(shard_id, "shard_id")
        run_slug = slugify_run_id(run_id)
        attempt = self._check_attempt(attempt)
        branch = f"worktree/{run_slug}/{shard_id}" if branch is None else self._check_branch_name(branch)
        patterns = self._sparse_patterns(sparse_paths) if sparse_paths is not None else None
        path = os.path.join(self.worktree_root, run_slug, f"{shard_id}-a{attempt}")
        if os.path.lexists(path):
            raise ConfigurationError(
                f"Worktree path {path} already exists (run {run_id!r}, shard {shard_id!r}, attempt {attempt}). "
                "Remove it (remove_worktree / prune) or use a new attempt number."
            )
        if self.remote_url is not None and not self._fetched:
            self.fetch()
        base_sha = self._resolve_commit(base_ref)
        created = _now_iso()
        pid = os.getpid()
        owner_info = {"tool": LOCK_TOOL, "host": socket.gethostname(), "pid": pid,
                      "pid_start": _proc_start_time(pid), "run_id": run_id, "shard_id": shard_id,
                      "attempt": attempt, "base": base_sha, "created": created}
        if owner is not None:
            owner_info["owner"] = dict(owner) if isinstance(owner, Mapping) else str(owner)
        reason = json.dumps(owner_info, separators=(",", ":"), sort_keys=True)
        add = ["worktree", "add", "--no-checkout", "-q"]
        if self._lock_on_add:
            add += ["--lock", "--reason", reason]
        backup = None
        restore_tip = None
        with self.lock.held(f"worktree add {run_slug}/{shard_id}"):
            try:
                self._git([*add, "-b", branch, "--", path, base_sha])
            except GitError as exc:
                if "already exists" not in exc.stderr or os.path.lexists(path):
                    raise GitError(f"Could not create worktree {path}: {exc.stderr}. Check disk space and "
                                   "permissions, or prune stale worktrees.", args=exc.git_args,
                                   returncode=exc.returncode, stderr=exc.stderr) from None
                restore_tip, backup = self._prepare_existing_branch(branch, base_sha, run_slug, shard_id, attempt)
                self._git([*add, "-B", branch, "--", path, base_sha])
            try:
                if not self._lock_on_add:
                    self._git(["worktree", "lock", "--reason", reason, "--", path])
                if patterns:
                    # May write extensions.worktreeConfig to the shared config the first time: keep it locked.
                    self._git(["sparse-checkout", "set", "--no-cone", "--stdin"], cwd=path,
                              input="\n".join(patterns) + "\n")
            except BaseException:
                self._rollback_create(path, branch, restore_tip)
                raise
        try:
            self._git(["reset", "--hard", "-q"], cwd=path)  # populate outside the lock (own index only)
        except BaseException:
            with self.lock.held("rollback worktree add"):
                self._rollback_create(path, branch, restore_tip)
            raise
        log.info("Created worktree %s on branch %s at %s (%s)", path, branch, base_sha[:12],
                 f"sparse, {len(patterns)} paths" if patterns else "full checkout")
        return WorktreeInfo(
            path=path, branch=branch, head=base_sha, base_sha=base_sha, base_ref=base_ref, run_id=run_id,
            shard_id=shard_id, attempt=attempt, locked=True, lock_reason=reason, owner=owner_info,
            sparse_paths=list(sparse_paths) if sparse_paths is not None else None, created_at=created,
            managed=True, previous_branch_backup=backup,
        )

    def _rollback_create(self, path: str, branch: str, restore_tip: str | None) -> None:
        """Undo a half-made worktree (caller holds the lock): nothing the caller had before is changed."""
        self._git(["worktree", "remove", "--force", "--force", "--", path], check=False)
        if restore_tip:
            self._git(["update-ref", "-m", "airflow-worktree: restore after failed create", "refs/heads/" + branch,
                       restore_tip], check=False)
        else:
            self._git(["branch", "-D", "--", branch], check=False)
        self._rmdir_parents(path)

    def _prepare_existing_branch(self, branch: str, base_sha: str, run_slug: str, shard_id: str,
                                 attempt: int) -> tuple[str, str | None]:
        """A retry reuses an existing branch (reset to the base). Return (old tip, backup branch or None)."""
        for wt in self.list_worktrees():
            if wt.branch == branch:
                alive = self._owner_state(wt)
                if not wt.is_main and (alive == "dead" or (wt.prunable and not wt.locked)):
                    log.warning("Branch %s is held by stale worktree %s of a dead owner; salvaging and removing "
                                "it", branch, wt.path)
                    self._remove_entry(wt)
                    break
                raise ConfigurationError(
                    f"Branch {branch!r} is checked out in worktree {wt.path} ({self._describe_owner(wt)}). "
                    "Remove that worktree first (remove_worktree or prune), or pass another branch name."
                )
        old = self._git(["rev-parse", "--verify", "-q", "refs/heads/" + branch]).stdout.strip()
        backup = None
        if old != base_sha and self._git(["merge-base", "--is-ancestor", old, base_sha], check=False).returncode:
            backup = f"{SALVAGE_PREFIX}/{run_slug}/{shard_id}-a{attempt}-previous-{old[:10]}"
            self._git(["update-ref", "-m", f"airflow-worktree: keep {branch} before retry", "refs/heads/" + backup,
                       old, ""], check=False)
            log.warning("Branch %s held commits not in the base; kept them on %s before resetting it for attempt "
                        "%d", branch, backup, attempt)
        return old, backup

    # ------------------------------------------------------------------ inside a worktree (no global lock)
    def _check_worktree(self, path: str | os.PathLike[str]) -> str:
        p = os.path.realpath(os.fspath(path))
        if self._admin_dir_of(p) is None:
            raise ConfigurationError(f"{p} is not a linked worktree of {self.repo}. Pass the path returned by "
                                     "create_worktree.")
        return p

    def commit(self, path: str | os.PathLike[str], message: str,
               trailers: Mapping[str, object] | None = None) -> CommitResult:
        """Stage everything (sparse worktrees too) and commit with the configured author and trailers.

        Returns ``CommitResult(sha=None, ...)`` when there is nothing to commit. Hooks are skipped
        (``--no-verify``): verification is the operator's job and must not depend on a worker's hooks.
        """
        p = self._check_worktree(path)
        if not isinstance(message, str) or not message.strip():
            raise ConfigurationError("Commit message is empty. Give a one-line summary of the change.")
        trailer_lines = []
        for key, value in (trailers or {}).items():
            if not _TRAILER_KEY_RE.match(str(key)) or _CONTROL_RE.search(str(value)):
                raise ConfigurationError(f"Trailer {key!r}: {value!r} is invalid: keys are letters, digits and "
                                         "'-'; values are one line. Example: {'Shard-Id': 'todo-1'}.")
            trailer_lines.append(f"{key}: {value}")
        self._add_all(p)
        files = [f for f in self._git(["diff", "--cached", "--name-only", "-z", "--no-renames"], cwd=p)
                 .stdout.split("\0") if f]
        if not files:
            return CommitResult(sha=None, diffstat="", files=[])
        msg = message.rstrip("\n") + "\n"
        args = ["commit", "-q", "--no-verify", "-F", "-"]
        if trailer_lines:
            if self._commit_trailer:
                for line in trailer_lines:
                    args += ["--trailer", line]
            else:
                targs = ["interpret-trailers"]
                for line in trailer_lines:
                    targs += ["--trailer", line]
                msg = self._git(targs, cwd=p, input=msg).stdout
        self._git(args, cwd=p, input=msg, env=self.author_env())
        out = self._git(["log", "-1", "--format=%H", "--stat=200", "--no-renames"], cwd=p).stdout
        sha, _, stat = out.partition("\n")
        return CommitResult(sha=sha.strip(), diffstat=stat.strip("\n"), files=files)

    def changed_files(self, path: str | os.PathLike[str], base_ref: str) -> list[str]:
        """Files that differ between ``base_ref`` and the worktree now (commits, staged, unstaged, untracked).

        ``base_ref`` is resolved inside the worktree, where ``HEAD`` is the worktree's own HEAD: pass
        ``WorktreeInfo.base_sha``.
        """
        p = self._check_worktree(path)
        base_ref = _check_ref_arg(base_ref, "base_ref")
        diff = self._git(["diff", "--name-only", "-z", "--no-renames", "--end-of-options", base_ref, "--"], cwd=p)
        untracked = self._git(["ls-files", "--others", "--exclude-standard", "-z"], cwd=p)
        return sorted({f for f in (diff.stdout + untracked.stdout).split("\0") if f})

    def is_dirty(self, path: str | os.PathLike[str]) -> bool:
        """Whether the worktree has uncommitted changes or untracked (not ignored) files."""
        p = self._check_worktree(path)
        return bool(self._git(["status", "--porcelain", "-z", "--untracked-files=normal"], cwd=p).stdout)

    def push(self, branch: str, remote: str = "origin", path: str | os.PathLike[str] | None = None,
             force: bool = False) -> PushResult:
        """Push ``branch`` to the same name on ``remote`` (credentials from ``git_env``)."""
        self._check_branch_name(branch)
        if not isinstance(remote, str) or not remote or remote.startswith("-") or _CONTROL_RE.search(remote):
            raise ConfigurationError(f"Remote {remote!r} is invalid. Give a remote name such as 'origin'.")
        cwd = self._check_worktree(path) if path is not None else self.repo_path
        sha = self._git(["rev-parse", "--verify", "-q", "refs/heads/" + branch], cwd=cwd, check=False).stdout.strip()
        if not sha:
            raise ConfigurationError(f"Branch {branch!r} does not exist in {self.repo}; nothing to push. Commit "
                                     "first, or check the branch name.")
        args = ["push", "--porcelain"] + (["--force"] if force else []) + \
               ["--", remote, f"refs/heads/{branch}:refs/heads/{branch}"]
        out = self._git(args, cwd=cwd).stdout
        log.info("Pushed %s (%s) to %s", branch, sha[:12], remote)
        return PushResult(remote=remote, branch=branch, sha=sha, output=out.strip())

    # ------------------------------------------------------------------ listing
    def list_worktrees(self) -> list[WorktreeInfo]:
        """Every worktree git knows for this repository (the main one first), with parsed lock owners."""
        if self._list_z:
            out = self._git(["worktree", "list", "--porcelain", "-z"]).stdout
            records = [r.split("\0") for r in out.split("\0\0") if r.strip("\0")]
        else:
            out = self._git(["worktree", "list", "--porcelain"]).stdout
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
            info.managed = not info.is_main and _is_within(os.path.realpath(info.path), self.worktree_root)
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

    # ------------------------------------------------------------------ removal
    def _owner_state(self, wt: WorktreeInfo) -> str:
        """'alive', 'dead', 'other-host', 'foreign-lock' (locked by someone else) or 'unlocked'."""
        if not wt.locked:
            return "unlocked"
        if wt.owner is None:
            return "foreign-lock"
        if wt.owner.get("host") != socket.gethostname():
            return "other-host"
        pid = wt.owner.get("pid")
        return "alive" if pid_alive(pid, wt.owner.get("pid_start")) else "dead"

    @staticmethod
    def _describe_owner(wt: WorktreeInfo) -> str:
        if not wt.locked:
            return "unlocked"
        if wt.owner is None:
            return f"locked: {wt.lock_reason!r}"
        o = wt.owner
        return (f"locked by pid {o.get('pid')} on {o.get('host')} for run {o.get('run_id')!r} shard "
                f"{o.get('shard_id')!r} attempt {o.get('attempt')} since {o.get('created')}")

    def _salvage(self, path: str, branch: str | None, head: str | None, *, snapshot: bool = False) -> tuple[str, str]:
        """Commit everything in ``path`` onto a new salvage branch (the shard branch is not moved)."""
        ts = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        if snapshot:
            # An orphaned directory git no longer knows: snapshot it through a temporary index.
            fd, index = tempfile.mkstemp(prefix="salvage-index-", dir=self.common_dir)
            os.close(fd)
            os.unlink(index)
            env = {"GIT_DIR": self.common_dir, "GIT_WORK_TREE": path, "GIT_INDEX_FILE": index}
            try:
                self._git(["add", "-A", "--", "."], cwd=path, env=env)
                tree = self._git(["write-tree"], cwd=path, env=env).stdout.strip()
            finally:
                if os.path.exists(index):
                    os.unlink(index)
            parents: list[str] = []
            label = "orphan/" + "/".join(os.path.relpath(path, self.worktree_root).split(os.sep)[-2:])
        else:
            self._add_all(path)
            tree = self._git(["write-tree"], cwd=path).stdout.strip()
            parents = ["-p", head] if head else []
            if branch and branch.startswith("worktree/"):
                label = branch[len("worktree/"):] + "-" + os.path.basename(path).rsplit("-", 1)[-1]
            else:
                label = branch or "detached/" + os.path.basename(path)
        label = re.sub(r"[^A-Za-z0-9._/-]+", "-", label).strip("/")
        msg = (f"airflow-worktree: salvage uncommitted work from {path}\n\n"
               f"Salvaged-From-Branch: {branch or '(none)'}\nSalvaged-At: {ts}\n")
        sha = self._git(["commit-tree", tree, *parents, "-F", "-"], cwd=path if not snapshot else self.repo_path,
                        input=msg, env=self.author_env()).stdout.strip()
        name = f"{SALVAGE_PREFIX}/{label}-{ts}-{sha[:8]}"
        with self.lock.held("salvage branch"):
            self._git(["update-ref", "-m", "airflow-worktree salvage", "refs/heads/" + name, sha, ""])
        log.warning("Saved uncommitted work of %s as %s on branch %s", path, sha[:12], name)
        return name, sha

    def _rmdir_parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while _is_within(parent, self.worktree_root) and parent != self.worktree_root:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    def remove_worktree(self, path: str | os.PathLike[str], force: bool = False,
                        keep_branch: bool = True) -> RemoveResult:
        """Remove a linked worktree (unlocking it). Refuses when it holds uncommitted changes unless ``force``;
        with ``force`` the changes are first committed onto a ``worktree-salvage/...`` branch.

        ``keep_branch=False`` also deletes the shard branch, but only when it holds no commits beyond its base
        (otherwise it is kept and a note says so).
        """
        p = os.path.realpath(os.fspath(path))
        admin = self._admin_dir_of(p)
        if admin is None:
            entry = next((w for w in self.list_worktrees() if os.path.realpath(w.path) == p), None)
            if entry is None:
                raise ConfigurationError(f"{p} is not a worktree of {self.repo}. Nothing was removed; check the "
                                         "path with list_worktrees().")
            if entry.is_main:
                raise ConfigurationError(f"{p} is the repository's main worktree; it is never removed.")
            return self._remove_entry(entry, keep_branch=keep_branch)
        owner = parse_owner(self._read_lock_reason(admin)[1])
        if owner and not force and owner.get("host") == socket.gethostname() and owner.get("pid") != os.getpid() \
                and pid_alive(owner.get("pid"), owner.get("pid_start")):
            raise ConfigurationError(
                f"Worktree {p} belongs to live process {owner.get('pid')} (run {owner.get('run_id')!r}, shard "
                f"{owner.get('shard_id')!r}); nothing was removed. Let that task finish, or pass force=True."
            )
        if owner and owner.get("host") == socket.gethostname() and \
                not pid_alive(owner.get("pid"), owner.get("pid_start")):
            self._clear_stale_index_lock(admin, owner)
        branch, head, dirty = self._status(p)
        result = RemoveResult(path=p, branch=branch, head=head, was_dirty=bool(dirty), dirty_files=dirty[:50])
        if dirty and not force:
            shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            raise WorktreeDirtyError(
                f"Worktree {p} has uncommitted changes ({shown}); nothing was removed. Commit them first, or "
                "remove with force=True to save them on a worktree-salvage/... branch."
            )
        if dirty:
            result.salvage_branch, result.salvage_sha = self._salvage(p, branch, head)
        base = (owner or {}).get("base")
        with self.lock.held(f"worktree remove {p}"):
            self._git(["worktree", "remove", "--force", "--force", "--", p])
            result.removed = True
            if not keep_branch and branch:
                self._delete_branch_if_unused(branch, head, base, result)
            self._rmdir_parents(p)
        log.info("Removed worktree %s (branch %s%s)", p, branch,
                 f", uncommitted work saved on {result.salvage_branch}" if result.salvage_branch else "")
        return result

    @staticmethod
    def _clear_stale_index_lock(admin: str, owner: dict) -> None:
        """A git command killed with its dead owner leaves ``index.lock`` behind, which would block the
        salvage commit and the removal forever; nobody alive can hold it, so it goes."""
        lock = os.path.join(admin, "index.lock")
        if os.path.exists(lock):
            log.warning("Removing stale %s left by dead process %s", lock, owner.get("pid"))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)

    def _delete_branch_if_unused(self, branch: str, head: str | None, base: str | None,
                                 result: RemoveResult) -> None:
        if head and base and (head == base or self._git(["merge-base", "--is-ancestor", head, base],
                                                        check=False).returncode == 0):
            self._git(["branch", "-D", "--", branch], check=False)
            result.branch_deleted = True
        else:
            result.notes.append(f"branch {branch} kept: it holds commits beyond its base (or the base is unknown)")

    def _remove_entry(self, wt: WorktreeInfo, keep_branch: bool = True) -> RemoveResult:
        """Remove a listed worktree, salvaging dirty work; handles a directory that is already gone."""
        p = os.path.realpath(wt.path)
        if os.path.isdir(p) and self._admin_dir_of(p) is not None:
            return self.remove_worktree(p, force=True, keep_branch=keep_branch)
        result = RemoveResult(path=p, branch=wt.branch, head=wt.head)
        with self.lock.held(f"prune entry {p}"):
            if wt.locked:
                self._git(["worktree", "unlock", "--", wt.path], check=False)
            self._git(["worktree", "prune"])
            result.removed = True
            result.notes.append("directory was already gone; git's entry pruned")
            if not keep_branch and wt.branch:
                self._delete_branch_if_unused(wt.branch, wt.head, wt.base_sha, result)
            self._rmdir_parents(p)
        return result

    # ------------------------------------------------------------------ prune / cleanup
    def _age_seconds(self, wt: WorktreeInfo) -> float:
        if wt.created_at:
            try:
                return time.time() - datetime.fromisoformat(wt.created_at).timestamp()
            except ValueError:
                pass
        try:
            return time.time() - os.stat(wt.path).st_mtime
        except OSError:
            return float("inf")

    def prune(self, older_than: float | None = None, dry_run: bool = False) -> PruneReport:
        """Clean up after dead workers; never touches a worktree locked by a live owner.

        1. ``git worktree prune`` (entries whose directory is gone; git leaves locked ones);
        2. worktrees under ``worktree_root`` older than ``older_than`` seconds (any age when None) that are
           unlocked or locked by a dead process on this host: dirty ones are salvaged first, then removed;
           worktrees locked by a live process, by another host, or by someone else's lock are skipped;
        3. directories under ``worktree_root`` that git no longer knows (contents salvaged as a snapshot).

        ``dry_run`` reports the actions without changing anything.
        """
        report = PruneReport(dry_run=dry_run)
        with self.lock.held("worktree prune"):
            proc = self._git(["worktree", "prune", "-v"] + (["-n"] if dry_run else []))
            out = proc.stdout + proc.stderr  # git prints what it prunes on stderr
        for line in out.splitlines():
            if line.strip():
                report.git_pruned.append(line.strip())
                report.actions.append(f"git worktree prune: {line.strip()}")
        for wt in self.list_worktrees():
            if not wt.managed:
                continue
            state = self._owner_state(wt)
            if state in ("alive", "other-host", "foreign-lock"):
                report.skipped.append({"path": wt.path, "reason": f"{state}: {self._describe_owner(wt)}"})
                continue
            if older_than is not None and self._age_seconds(wt) < older_than:
                report.skipped.append({"path": wt.path, "reason": f"younger than {older_than}s ({state})"})
                continue
            self._apply_removal(wt, f"stale ({state})", report)
        self._clean_orphans(report)
        return report

    def cleanup_all(self, dry_run: bool = False, force: bool = False) -> PruneReport:
        """Remove every worktree under ``worktree_root`` (dirty ones salvaged first) and orphan directories.

        Worktrees locked by a live process, another host or someone else's lock are skipped unless ``force``.
        """
        report = PruneReport(dry_run=dry_run)
        for wt in self.list_worktrees():
            if not wt.managed:
                continue
            state = self._owner_state(wt)
            if state in ("alive", "other-host", "foreign-lock") and not force:
                report.skipped.append({"path": wt.path, "reason": f"{state}: {self._describe_owner(wt)}; "
                                                                  "pass force=True to remove anyway"})
                continue
            self._apply_removal(wt, f"cleanup ({state})", report)
        self._clean_orphans(report)
        return report

    def _apply_removal(self, wt: WorktreeInfo, why: str, report: PruneReport) -> None:
        exists = os.path.isdir(wt.path)
        dirty = bool(exists and self._admin_dir_of(os.path.realpath(wt.path)) and self.is_dirty(wt.path))
        action = f"remove {wt.path} [{why}]" + (" after salvaging uncommitted work" if dirty else "") + \
            ("" if exists else " (directory already gone)")
        report.actions.append(action)
        if report.dry_run:
            return
        try:
            res = self._remove_entry(wt)
        except WorktreeProviderError as exc:
            report.errors.append({"path": wt.path, "error": str(exc)})
            return
        report.removed.append(res.path)
        if res.salvage_branch:
            report.salvaged.append({"path": res.path, "branch": res.salvage_branch, "sha": res.salvage_sha})

    def _clean_orphans(self, report: PruneReport) -> None:
        if not os.path.isdir(self.worktree_root):
            return
        with self.lock.held("orphan scan"):
            known = {os.path.realpath(w.path) for w in self.list_worktrees()}
            for top in sorted(os.scandir(self.worktree_root), key=lambda e: e.name):
                if not top.is_dir(follow_symlinks=False):
                    continue
                for entry in sorted(os.scandir(top.path), key=lambda e: e.name):
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    p = os.path.realpath(entry.path)
                    if p in known:
                        continue
                    self._handle_orphan(p, report)
                if not report.dry_run:
                    try:
                        os.rmdir(top.path)  # only when empty
                    except OSError:
                        pass

    def _handle_orphan(self, p: str, report: PruneReport) -> None:
        gitfile = os.path.join(p, ".git")
        if os.path.lexists(gitfile):
            if self._admin_dir_of(p) is None:
                report.skipped.append({"path": p, "reason": "belongs to another repository (its .git points "
                                                            "elsewhere)"})
                return
        else:
            try:
                age = time.time() - os.stat(p).st_mtime
            except OSError:
                return
            if age < ORPHAN_GRACE_SECONDS:
                report.skipped.append({"path": p, "reason": "no .git yet and recently modified (maybe being "
                                                            "created)"})
                return
        has_content = any(e.name != ".git" for e in os.scandir(p))
        report.actions.append(f"remove orphan directory {p} (git no longer knows it)" +
                              (" after saving a snapshot of its files" if has_content else ""))
        if report.dry_run:
            return
        try:
            if has_content:
                name, sha = self._salvage(p, None, None, snapshot=True)
                report.salvaged.append({"path": p, "branch": name, "sha": sha})
            shutil.rmtree(p)
            report.orphans_removed.append(p)
        except (OSError, WorktreeProviderError) as exc:
            report.errors.append({"path": p, "error": str(exc)})


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
