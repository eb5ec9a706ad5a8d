"""Names, validation and owners of shard worktrees (no git calls).

A shard attempt's worktree lives at ``<worktree_root>/<run-slug>/<shard_id>-a<attempt>`` on branch
``worktree/<run-slug>/<shard_id>``; its lock reason is a JSON owner record
(:func:`~airflow_provider_worktree.core.git.records.parse_owner`), whose process :func:`owner_state` checks.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.git.records import WorktreeInfo
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE
#: Prefix of the branches that hold salvaged (uncommitted, excluded, or replaced) work. Never pushed.
SALVAGE_PREFIX = "worktree-salvage"
#: Prefix of the shard branches.
BRANCH_PREFIX = "worktree/"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def slugify_run_id(run_id: str) -> str:
    """A ref- and path-safe component for an Airflow run id, unique thanks to a short hash of the original.

    ``manual__2026-11-28T05:00:00+00:00`` -> ``manual__2026-11-28T05-00-00-00-00-<8 hex>``.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigurationError("run_id is empty. Pass the Airflow run id (e.g. '{{ run_id }}').")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-_")[:60].rstrip("-_")
    digest = hashlib.sha1(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"run-{digest}"


def validate_name(value: object, what: str = "shard_id") -> str:
    """Check a single path/ref component (shard id): ``[A-Za-z0-9][A-Za-z0-9._-]*``, no ``..``, no ``.lock``."""
    if not isinstance(value, str) or value == "":
        raise ConfigurationError(f"{what} is empty. Give a name such as 'todo-3f2a9c1e0b'.")
    problems = []
    if CONTROL_RE.search(value):
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



def check_attempt(attempt: object) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ConfigurationError(f"attempt must be an integer >= 1, got {attempt!r}. Pass the task's "
                                 "try_number.")
    return attempt


def check_repo_relpath(rel: object, what: str = "path", *, allow_dir: bool = False) -> str:
    """A clean repository-relative POSIX path (no leading '/', '..', '.', empty part or '.git'); with
    ``allow_dir`` a trailing '/' (a directory) is allowed."""
    stem = rel[:-1] if allow_dir and isinstance(rel, str) and rel.endswith("/") else rel
    if not isinstance(stem, str) or not stem or CONTROL_RE.search(stem) or stem.startswith("/") or "\\" in stem or \
            any(part in ("..", ".", "") for part in stem.split("/")) or stem == ".git" or \
            stem.startswith(".git/"):
        raise ConfigurationError(f"{what} {rel!r} is not a clean repository-relative POSIX path. Use paths "
                                 "like 'src/app.py' (no leading '/', '..', '.' or '.git').")
    return rel


def sparse_patterns(sparse_paths: object) -> list[str]:
    """Anchored, escaped non-cone sparse-checkout patterns matching exactly the given files."""
    paths = [sparse_paths] if isinstance(sparse_paths, str) else list(sparse_paths)  # type: ignore[arg-type]
    if not paths:
        raise ConfigurationError("sparse_paths is empty; a sparse worktree would contain no files. Pass the "
                                 "shard's files, or None for a full checkout.")
    patterns = []
    for rel in paths:
        check_repo_relpath(rel, "sparse path")
        escaped = re.sub(r"([\\*?\[\]!#])", r"\\\1", rel)
        if escaped.endswith(" "):
            escaped = escaped[:-1] + "\\ "
        patterns.append("/" + escaped)
    return patterns


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def proc_start_time(pid: int) -> str | None:
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
        current = proc_start_time(pid)
        if current is not None and current != start_time:
            return False  # the pid was reused by another process
    return True


def owner_state(wt: WorktreeInfo) -> str:
    """'alive', 'dead', 'other-host', 'foreign-lock' (locked by someone else) or 'unlocked'."""
    if not wt.locked:
        return "unlocked"
    if wt.owner is None:
        return "foreign-lock"
    if wt.owner.get("host") != socket.gethostname():
        return "other-host"
    pid = wt.owner.get("pid")
    return "alive" if pid_alive(pid, wt.owner.get("pid_start")) else "dead"


def describe_owner(wt: WorktreeInfo) -> str:
    if not wt.locked:
        return "unlocked"
    if wt.owner is None:
        return f"locked: {wt.lock_reason!r}"
    o = wt.owner
    return (f"locked by pid {o.get('pid')} on {o.get('host')} for run {o.get('run_id')!r} shard "
            f"{o.get('shard_id')!r} attempt {o.get('attempt')} since {o.get('created')}")
