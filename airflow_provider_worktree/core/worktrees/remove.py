"""Removing worktrees without losing work: salvage of uncommitted changes, then removal.

Uncommitted work is never thrown away: a forced removal (and prune) first commits it onto a new local
``worktree-salvage/...`` branch (the shard branch is not moved, and salvage branches are never pushed by the
package). A shard branch that holds no commit beyond its base is deleted with its worktree unless the caller
keeps it, so failed shards leave no empty ``worktree/*`` branches.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from datetime import datetime, timezone

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.git.records import WorktreeInfo, parse_owner
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.worktrees.names import SALVAGE_PREFIX, pid_alive
from airflow_provider_worktree.core.worktrees.results import RemoveResult, WorktreeDirtyError

log = logging.getLogger("airflow_provider_worktree.core.worktrees.manager")


def salvage(repo: GitRepo, path: str, branch: str | None, head: str | None, *,
            snapshot: bool = False) -> tuple[str, str]:
    """Commit everything in ``path`` onto a new salvage branch (the shard branch is not moved).

    ``snapshot``: ``path`` is an orphaned directory git no longer knows; its files are recorded through a
    temporary index. Returns (branch name, commit sha).
    """
    ts = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    if snapshot:
        fd, index = tempfile.mkstemp(prefix="salvage-index-", dir=repo.common_dir)
        os.close(fd)
        os.unlink(index)
        env = {"GIT_DIR": repo.common_dir, "GIT_WORK_TREE": path, "GIT_INDEX_FILE": index}
        try:
            repo.git(["add", "-A", "--", "."], cwd=path, env=env)
            tree = repo.git(["write-tree"], cwd=path, env=env).stdout.strip()
        finally:
            if os.path.exists(index):
                os.unlink(index)
        parents: list[str] = []
        label = "orphan/" + "/".join(os.path.relpath(path, repo.worktree_root).split(os.sep)[-2:])
    else:
        repo.add_all(path)
        tree = repo.git(["write-tree"], cwd=path).stdout.strip()
        parents = ["-p", head] if head else []
        if branch and branch.startswith("worktree/"):
            label = branch[len("worktree/"):] + "-" + os.path.basename(path).rsplit("-", 1)[-1]
        else:
            label = branch or "detached/" + os.path.basename(path)
    label = re.sub(r"[^A-Za-z0-9._/-]+", "-", label).strip("/")
    msg = (f"airflow-worktree: salvage uncommitted work from {path}\n\n"
           f"Salvaged-From-Branch: {branch or '(none)'}\nSalvaged-At: {ts}\n")
    sha = repo.git(["commit-tree", tree, *parents, "-F", "-"], cwd=path if not snapshot else repo.repo_path,
                   input=msg, env=repo.author_env()).stdout.strip()
    name = f"{SALVAGE_PREFIX}/{label}-{ts}-{sha[:8]}"
    with repo.lock.held("salvage branch"):
        repo.git(["update-ref", "-m", "airflow-worktree salvage", "refs/heads/" + name, sha, ""])
    log.warning("Saved uncommitted work of %s as %s on branch %s", path, sha[:12], name)
    return name, sha


class WorktreeRemover:
    """Remove one worktree (salvaging dirty work first when forced) and, when empty, its shard branch."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo

    def remove(self, path: str, force: bool = False, keep_branch: bool | None = None) -> RemoveResult:
        repo = self.repo
        p = os.path.realpath(os.fspath(path))
        admin = repo.admin_dir_of(p)
        if admin is None:
            entry = next((w for w in repo.list_worktrees() if os.path.realpath(w.path) == p), None)
            if entry is None:
                raise ConfigurationError(f"{p} is not a worktree of {repo.repo}. Nothing was removed; check the "
                                         "path with list_worktrees().")
            if entry.is_main:
                raise ConfigurationError(f"{p} is the repository's main worktree; it is never removed.")
            return self.remove_entry(entry, keep_branch=keep_branch)
        owner = parse_owner(repo.read_lock_reason(admin)[1])
        here = bool(owner) and owner.get("host") == socket.gethostname()
        mine = here and owner.get("pid") == os.getpid()
        dead = here and not mine and not pid_alive(owner.get("pid"), owner.get("pid_start"))
        if owner and not force and here and not mine and not dead:
            raise ConfigurationError(
                f"Worktree {p} belongs to live process {owner.get('pid')} (run {owner.get('run_id')!r}, shard "
                f"{owner.get('shard_id')!r}); nothing was removed. Let that task finish, or pass force=True."
            )
        status_branch = None
        if mine or dead:
            # Our own git killed by a timeout, or a dead owner's, may have left lock files: nobody alive holds
            # them (checked), so they go.
            head_ref = _read_head_ref(admin)
            status_branch = head_ref[len("refs/heads/"):] if head_ref.startswith("refs/heads/") else None
            repo.clear_stale_locks(admin, status_branch)
        branch, head, dirty = repo.status(p)
        result = RemoveResult(path=p, branch=branch, head=head, was_dirty=bool(dirty), dirty_files=dirty[:50])
        if dirty and not force:
            shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            raise WorktreeDirtyError(
                f"Worktree {p} has uncommitted changes ({shown}); nothing was removed. Commit them first, or "
                "remove with force=True to save them on a worktree-salvage/... branch."
            )
        if dirty:
            result.salvage_branch, result.salvage_sha = salvage(repo, p, branch, head)
        base = (owner or {}).get("base")
        with repo.lock.held(f"worktree remove {p}"):
            repo.git(["worktree", "remove", "--force", "--force", "--", p])
            result.removed = True
            if branch and not keep_branch:
                _delete_branch_if_unused(repo, branch, head, base, result)
            repo.rmdir_parents(p)
        log.info("Removed worktree %s (branch %s%s%s)", p, branch,
                 ", deleted: no commit beyond its base" if result.branch_deleted else "",
                 f", uncommitted work saved on {result.salvage_branch}" if result.salvage_branch else "")
        return result

    def remove_entry(self, wt: WorktreeInfo, keep_branch: bool | None = None) -> RemoveResult:
        """Remove a listed worktree, salvaging dirty work; handles a directory that is already gone."""
        repo = self.repo
        p = os.path.realpath(wt.path)
        if os.path.isdir(p) and repo.admin_dir_of(p) is not None:
            return self.remove(p, force=True, keep_branch=keep_branch)
        result = RemoveResult(path=p, branch=wt.branch, head=wt.head)
        with repo.lock.held(f"prune entry {p}"):
            if wt.locked:
                repo.git(["worktree", "unlock", "--", wt.path], check=False)
            repo.git(["worktree", "prune"])
            result.removed = True
            result.notes.append("directory was already gone; git's entry pruned")
            if not keep_branch and wt.branch:
                _delete_branch_if_unused(repo, wt.branch, wt.head, wt.base_sha, result)
            repo.rmdir_parents(p)
        return result


def _delete_branch_if_unused(repo: GitRepo, branch: str, head: str | None, base: str | None,
                             result: RemoveResult) -> None:
    deleted = repo.delete_branch_if_unused(branch, head, base)
    if deleted is None:
        result.notes.append(f"branch {branch} kept: it holds commits beyond its base (or the base is unknown)")
    else:
        result.branch_deleted = deleted


def _read_head_ref(admin: str) -> str:
    try:
        with open(os.path.join(admin, "HEAD")) as fh:
            text = fh.read().strip()
    except OSError:
        return ""
    return text[len("ref: "):] if text.startswith("ref: ") else ""
