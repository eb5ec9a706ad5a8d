"""Creating a shard attempt's worktree: locked, on its own branch, populated outside the repository lock.

Every worktree is created locked (``git worktree add --lock --reason <json>``); the reason names the tool, host,
pid (and its start time), run id, shard id, attempt, base commit and creation time, so ``prune`` can tell a live
owner from a dead one. A failed create leaves nothing: no worktree, no directory, no new branch (a branch that
existed before is put back where it was).

Retries: when the shard branch already exists (an earlier attempt), the retry starts again from ``base_ref``
(``worktree add -B``); if the old tip holds commits not in the base, they are first kept on a
``worktree-salvage/<run-slug>/<shard_id>-a<attempt>-previous-<sha>`` branch. A branch still checked out by an
earlier attempt's worktree whose owner is dead on this host is salvaged and removed first; a live owner makes
the create fail with a clear error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Mapping, Sequence

from airflow_provider_worktree.core.errors import ConfigurationError, GitError, error_cause, error_fix, summarize_error
from airflow_provider_worktree.core.git.records import LOCK_TOOL, WorktreeInfo
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.worktrees.names import (
    SALVAGE_PREFIX,
    check_attempt,
    describe_owner,
    now_iso,
    owner_state,
    proc_start_time,
    slugify_run_id,
    sparse_patterns,
    validate_name,
)
from airflow_provider_worktree.core.worktrees.remove import WorktreeRemover

log = logging.getLogger("airflow_provider_worktree.core.worktrees.manager")


def _create_failed(what: str, path: str, exc: GitError) -> GitError:
    """The error of a failed create, in one line: the cause, that nothing was left behind, and the fix (git's
    own output stays in ``.stderr``)."""
    text = exc.stderr or str(exc)
    cause = summarize_error(text, max_lines=0).splitlines()[0] if text.strip() else str(exc)
    fix = error_fix(error_cause(text)) or "free disk space, fix permissions or prune stale worktrees"
    return GitError(f"{what} {path}: {cause} (git {' '.join(exc.git_args[:2])}). Nothing was left behind; {fix}, "
                    "then retry.", args=exc.git_args, returncode=exc.returncode, stderr=exc.stderr,
                    timed_out=exc.timed_out)


class WorktreeCreator:
    def __init__(self, repo: GitRepo, remover: WorktreeRemover) -> None:
        self.repo = repo
        self.remover = remover

    def path_for(self, run_id: str, shard_id: str, attempt: int = 1) -> str:
        return os.path.join(self.repo.worktree_root, slugify_run_id(run_id),
                            f"{validate_name(shard_id)}-a{check_attempt(attempt)}")

    def create(self, run_id: str, shard_id: str, attempt: int = 1, base_ref: str = "HEAD",
               branch: str | None = None, sparse_paths: Sequence[str] | None = None,
               owner: str | Mapping | None = None) -> WorktreeInfo:
        repo = self.repo
        shard_id = validate_name(shard_id, "shard_id")
        run_slug = slugify_run_id(run_id)
        attempt = check_attempt(attempt)
        branch = f"worktree/{run_slug}/{shard_id}" if branch is None else repo.check_branch_name(branch)
        patterns = sparse_patterns(sparse_paths) if sparse_paths is not None else None
        path = os.path.join(repo.worktree_root, run_slug, f"{shard_id}-a{attempt}")
        if os.path.lexists(path):
            raise ConfigurationError(
                f"Worktree path {path} already exists (run {run_id!r}, shard {shard_id!r}, attempt {attempt}). "
                "Remove it (remove_worktree / prune) or use a new attempt number."
            )
        if repo.remote_url is not None and not repo.fetched:
            repo.fetch()
        base_sha = repo.resolve_commit(base_ref)
        created = now_iso()
        pid = os.getpid()
        owner_info = {"tool": LOCK_TOOL, "host": socket.gethostname(), "pid": pid,
                      "pid_start": proc_start_time(pid), "run_id": run_id, "shard_id": shard_id,
                      "attempt": attempt, "base": base_sha, "created": created}
        if owner is not None:
            owner_info["owner"] = dict(owner) if isinstance(owner, Mapping) else str(owner)
        reason = json.dumps(owner_info, separators=(",", ":"), sort_keys=True)
        add = ["worktree", "add", "--no-checkout", "-q"]
        if repo.lock_on_add:
            add += ["--lock", "--reason", reason]
        backup = None
        with repo.lock.held(f"worktree add {run_slug}/{shard_id}"):
            restore_tip = repo.branch_sha(branch)  # None: the branch is new and must not outlive a failure
            try:
                if restore_tip is None:
                    repo.git([*add, "-b", branch, "--", path, base_sha])
                else:
                    backup = self._prepare_existing_branch(branch, restore_tip, base_sha, run_slug, shard_id,
                                                           attempt)
                    repo.git([*add, "-B", branch, "--", path, base_sha])
                if not repo.lock_on_add:
                    repo.git(["worktree", "lock", "--reason", reason, "--", path])
                if patterns:
                    # May write extensions.worktreeConfig to the shared config the first time: keep it locked.
                    repo.git(["sparse-checkout", "set", "--no-cone", "--stdin"], cwd=path,
                             input="\n".join(patterns) + "\n")
            except BaseException as exc:
                self._rollback(path, branch, restore_tip)
                if isinstance(exc, GitError):
                    raise _create_failed("Could not create worktree", path, exc) from None
                raise
        try:
            repo.git(["reset", "--hard", "-q"], cwd=path)  # populate outside the lock (own index only)
        except BaseException as exc:
            with repo.lock.held("rollback worktree add"):
                self._rollback(path, branch, restore_tip)
            if isinstance(exc, GitError):
                raise _create_failed("Could not check out worktree", path, exc) from None
            raise
        log.info("Created worktree %s on branch %s at %s (%s)", path, branch, base_sha[:12],
                 f"sparse, {len(patterns)} paths" if patterns else "full checkout")
        return WorktreeInfo(
            path=path, branch=branch, head=base_sha, base_sha=base_sha, base_ref=base_ref, run_id=run_id,
            shard_id=shard_id, attempt=attempt, locked=True, lock_reason=reason, owner=owner_info,
            sparse_paths=list(sparse_paths) if sparse_paths is not None else None, created_at=created,
            managed=True, previous_branch_backup=backup,
        )

    def _rollback(self, path: str, branch: str, restore_tip: str | None) -> None:
        """Undo a half-made worktree (caller holds the lock): nothing the caller had before is changed, nothing
        new is left (worktree, directory, branch)."""
        repo = self.repo
        repo.git(["worktree", "remove", "--force", "--force", "--", path], check=False)
        if os.path.lexists(path):  # git could not even register it: the directory may still be there
            shutil.rmtree(path, ignore_errors=True)
            repo.git(["worktree", "prune"], check=False)
        if restore_tip:
            repo.git(["update-ref", "-m", "airflow-worktree: restore after failed create", "refs/heads/" + branch,
                      restore_tip], check=False)
        elif repo.branch_sha(branch) is not None:
            repo.git(["branch", "-D", "--", branch], check=False)
        repo.rmdir_parents(path)

    def _prepare_existing_branch(self, branch: str, old: str, base_sha: str, run_slug: str, shard_id: str,
                                 attempt: int) -> str | None:
        """A retry reuses an existing branch (reset to the base). Return the backup branch, or None."""
        repo = self.repo
        for wt in repo.list_worktrees():
            if wt.branch == branch:
                alive = owner_state(wt)
                if not wt.is_main and (alive == "dead" or (wt.prunable and not wt.locked)):
                    log.warning("Branch %s is held by stale worktree %s of a dead owner; salvaging and removing "
                                "it", branch, wt.path)
                    self.remover.remove_entry(wt, keep_branch=True)
                    break
                raise ConfigurationError(
                    f"Branch {branch!r} is checked out in worktree {wt.path} ({describe_owner(wt)}). "
                    "Remove that worktree first (remove_worktree or prune), or pass another branch name."
                )
        backup = None
        if old != base_sha and repo.git(["merge-base", "--is-ancestor", old, base_sha], check=False).returncode:
            backup = f"{SALVAGE_PREFIX}/{run_slug}/{shard_id}-a{attempt}-previous-{old[:10]}"
            repo.git(["update-ref", "-m", f"airflow-worktree: keep {branch} before retry", "refs/heads/" + backup,
                      old, ""], check=False)
            log.warning("Branch %s held commits not in the base; kept them on %s before resetting it for attempt "
                        "%d", branch, backup, attempt)
        return backup
