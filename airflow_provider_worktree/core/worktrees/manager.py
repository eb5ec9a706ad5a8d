"""Worktree lifecycle for shards (seed component *WorktreeManager*). Plain Python: no Airflow import.

One :class:`WorktreeManager` serves one repository, a local path or a remote URL (cloned bare into a per-worker
cache and fetched). Each shard gets its own linked worktree on its own branch::

    <worktree_root>/<run-slug>/<shard_id>-a<attempt>        branch worktree/<run-slug>/<shard_id>

The manager is a facade over the repository (:class:`~airflow_provider_worktree.core.git.repo.GitRepo`, which it
is: paths, lock, git calls, refs, status, listing; a remote URL is cloned into the cache first by
:func:`~airflow_provider_worktree.core.git.remote.locate_repository`) and one collaborator per job, each given
that repository:

==============  ==========================================================================
:mod:`.create`  create a locked worktree; a failure leaves nothing behind
:mod:`.commit`  changed files and the commit, scoped to the allowed paths
:mod:`.push`    push, with compare-and-swap (``expect=``)
:mod:`.remove`  salvage uncommitted work, remove, delete empty shard branches
:mod:`.prune`   prune and cleanup after dead workers
:mod:`.names`   names, validation and owners; :mod:`.results` the result types
==============  ==========================================================================

Concurrency. Many worker processes share one repository. git's admin operations (``worktree add/remove/prune``,
branch creation and deletion, ``fetch``, sparse-checkout config writes) touch shared files (``config.lock``,
``packed-refs.lock``, ``.git/worktrees``), so they run under ONE :class:`InterProcessLock` per repository,
``<git-common-dir>/airflow-worktree.lock``, and are retried with backoff when git still reports a lock file
(a human or another tool running git). Critical sections are short: a worktree is registered with
``--no-checkout`` under the lock and populated outside it; staging and committing inside a worktree take no
global lock (they touch that worktree's own index and the shard branch's ref, which git locks per ref).

Safety. Worktrees are created locked with an owner record, so ``prune`` tells a live owner from a dead one.
Uncommitted work is never thrown away: a forced removal, ``prune`` and ``cleanup_all`` first save it on a
``worktree-salvage/...`` branch. git runs nothing from the repository (hooks, fsmonitor, filter/diff/merge
drivers are off) and sees credentials only when it talks to the remote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from airflow_provider_worktree.core.git.command import DEFAULT_GIT_TIMEOUT
from airflow_provider_worktree.core.git.locks import DEFAULT_LOCK_TIMEOUT
from airflow_provider_worktree.core.git.records import WorktreeInfo
from airflow_provider_worktree.core.git.remote import locate_repository
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.worktrees.commit import Allowed, WorktreeCommitter
from airflow_provider_worktree.core.worktrees.create import WorktreeCreator
from airflow_provider_worktree.core.worktrees.names import slugify_run_id, validate_name
from airflow_provider_worktree.core.worktrees.prune import WorktreePruner
from airflow_provider_worktree.core.worktrees.push import UNSET, WorktreePusher
from airflow_provider_worktree.core.worktrees.remove import WorktreeRemover
from airflow_provider_worktree.core.worktrees.results import CommitResult, PruneReport, PushResult, RemoveResult


class WorktreeManager(GitRepo):
    """Create, commit in, push, list, remove and prune shard worktrees of one repository (see module docstring).

    Constructor: ``WorktreeManager(repo, worktree_root=None, cache_dir=None, author_name=..., author_email=...,
    git_timeout=120, git_env=None, lock_timeout=300)``; the repository attributes (``repo``, ``repo_path``,
    ``common_dir``, ``work_tree``, ``worktree_root``, ``remote_url``, ``lock``, ``call_log``...) come from
    :class:`~airflow_provider_worktree.core.git.repo.GitRepo`.
    """

    def __init__(self, repo: str | os.PathLike[str], worktree_root: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, author_name: str = "airflow-worktree",
                 author_email: str = "airflow-worktree@localhost", git_timeout: float = DEFAULT_GIT_TIMEOUT,
                 git_env: Mapping[str, str] | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        where = locate_repository(repo, cache_dir, git_env=git_env, git_timeout=git_timeout,
                                  lock_timeout=lock_timeout)
        super().__init__(where.path, worktree_root=worktree_root, cache_dir=where.cache_dir, author_name=author_name,
                         author_email=author_email, git_timeout=git_timeout, git_env=where.git_env,
                         lock_timeout=lock_timeout, remote_url=where.remote_url, fetched=where.fetched,
                         call_log=where.call_log)
        self._remover = WorktreeRemover(self)
        self._creator = WorktreeCreator(self, self._remover)
        self._committer = WorktreeCommitter(self)
        self._pusher = WorktreePusher(self)
        self._pruner = WorktreePruner(self, self._remover)

    # ------------------------------------------------------------------ create
    def worktree_path(self, run_id: str, shard_id: str, attempt: int = 1) -> str:
        """Where ``create_worktree`` puts this run/shard/attempt (no side effects)."""
        return self._creator.path_for(run_id, shard_id, attempt)

    def default_branch(self, run_id: str, shard_id: str) -> str:
        return f"worktree/{slugify_run_id(run_id)}/{validate_name(shard_id)}"

    def create_worktree(self, run_id: str, shard_id: str, attempt: int = 1, base_ref: str = "HEAD",
                        branch: str | None = None, sparse_paths: Sequence[str] | None = None,
                        owner: str | Mapping | None = None) -> WorktreeInfo:
        """Create a locked worktree for one shard attempt on its own branch, starting at ``base_ref``.

        A failure leaves no worktree, directory or new branch behind (see :mod:`.create`).
        """
        return self._creator.create(run_id, shard_id, attempt=attempt, base_ref=base_ref, branch=branch,
                                    sparse_paths=sparse_paths, owner=owner)

    # ------------------------------------------------------------------ inside a worktree (no global lock)
    def commit(self, path: str | os.PathLike[str], message: str, trailers: Mapping[str, object] | None = None,
               *, allowed: Allowed | None = None) -> CommitResult:
        """Commit the worktree's changes with the configured author and ``trailers`` (``Key: value`` lines).

        ``allowed``: a predicate on repository-relative paths, or a list of paths (an entry ending in '/'
        covers a directory); only allowed changed paths are staged, the rest is returned in
        ``CommitResult.excluded`` and left in the worktree. ``None`` commits every change. Returns
        ``CommitResult(sha=None, ...)`` when there is nothing (allowed) to commit. No hook runs.
        """
        return self._committer.commit(path, message, trailers, allowed=allowed)

    def changed_files(self, path: str | os.PathLike[str], base_ref: str) -> list[str]:
        """Files that differ between ``base_ref`` and the worktree now (commits, staged, unstaged, untracked).

        ``base_ref`` is resolved inside the worktree, where ``HEAD`` is the worktree's own HEAD: pass
        ``WorktreeInfo.base_sha``. Non-UTF-8 names come back ``surrogateescape``-decoded.
        """
        return self._committer.changed_files(path, base_ref)

    def is_dirty(self, path: str | os.PathLike[str]) -> bool:
        """Whether the worktree has uncommitted changes or untracked (not ignored) files."""
        return self._committer.is_dirty(path)

    # ------------------------------------------------------------------ remote
    def remote_branch_sha(self, branch: str, remote: str = "origin") -> str | None:
        """The commit ``branch`` has on ``remote`` now (``git ls-remote``), or None when it does not exist there."""
        return self._pusher.remote_branch_sha(branch, remote)

    def push(self, branch: str, remote: str = "origin", path: str | os.PathLike[str] | None = None,
             force: bool = False, *, expect: str | None | object = UNSET) -> PushResult:
        """Push ``branch`` to the same name on ``remote`` (credentials from ``git_env``).

        ``expect`` (a full sha, or None for "must not exist there") makes it a compare-and-swap: the remote
        branch is replaced only if it is still at ``expect`` (``--force-with-lease``), else
        :class:`~airflow_provider_worktree.core.errors.PushRejected` is raised and nothing changes. Without
        ``expect``, ``force`` forces the push.
        """
        return self._pusher.push(branch, remote=remote, path=path, force=force, expect=expect)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ removal / cleanup
    def remove_worktree(self, path: str | os.PathLike[str], force: bool = False,
                        keep_branch: bool | None = None) -> RemoveResult:
        """Remove a linked worktree (unlocking it). Refuses when it holds uncommitted changes unless ``force``;
        with ``force`` the changes are first committed onto a ``worktree-salvage/...`` branch.

        The shard branch is deleted when it holds no commit beyond its base (a failed or empty shard leaves no
        empty branch); ``keep_branch=True`` keeps it anyway. Lock files left by a killed git of this process
        (a timeout) or of a dead owner are cleared when no live process holds them.
        """
        return self._remover.remove(os.fspath(path), force=force, keep_branch=keep_branch)

    def prune(self, older_than: float | None = None, dry_run: bool = False) -> PruneReport:
        """Clean up after dead workers; never touches a worktree locked by a live owner.

        1. ``git worktree prune`` (entries whose directory is gone; git leaves locked ones);
        2. worktrees under ``worktree_root`` older than ``older_than`` seconds (any age when None) that are
           unlocked or locked by a dead process on this host: dirty ones are salvaged first, then removed (their
           branches too when empty); worktrees locked by a live process, by another host, or by someone else's
           lock are skipped;
        3. directories under ``worktree_root`` that git no longer knows (contents salvaged as a snapshot).

        ``dry_run`` reports the actions without changing anything.
        """
        return self._pruner.prune(older_than=older_than, dry_run=dry_run)

    def cleanup_all(self, dry_run: bool = False, force: bool = False) -> PruneReport:
        """Remove every worktree under ``worktree_root`` (dirty ones salvaged first) and orphan directories.

        Worktrees locked by a live process, another host or someone else's lock are skipped unless ``force``.
        """
        return self._pruner.cleanup_all(dry_run=dry_run, force=force)
