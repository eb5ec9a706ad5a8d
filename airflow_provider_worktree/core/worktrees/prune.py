"""Cleaning up after dead workers: stale worktrees, git's own stale entries, orphan directories.

Never touches a worktree locked by a live owner (or another host's, or someone else's lock). Dirty worktrees and
orphan directories with files are salvaged first; the empty shard branches of removed worktrees are deleted.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.git.records import WorktreeInfo
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.worktrees.names import describe_owner, owner_state
from airflow_provider_worktree.core.worktrees.remove import WorktreeRemover, salvage
from airflow_provider_worktree.core.worktrees.results import PruneReport

#: Directories under the worktree root without a ``.git`` file younger than this are left alone by prune
#: (another tool may be creating them right now).
ORPHAN_GRACE_SECONDS = 60.0
_PROTECTED = ("alive", "other-host", "foreign-lock")


def _age_seconds(wt: WorktreeInfo) -> float:
    if wt.created_at:
        try:
            return time.time() - datetime.fromisoformat(wt.created_at).timestamp()
        except ValueError:
            pass
    try:
        return time.time() - os.stat(wt.path).st_mtime
    except OSError:
        return float("inf")


class WorktreePruner:
    def __init__(self, repo: GitRepo, remover: WorktreeRemover) -> None:
        self.repo = repo
        self.remover = remover

    def prune(self, older_than: float | None = None, dry_run: bool = False) -> PruneReport:
        repo = self.repo
        report = PruneReport(dry_run=dry_run)
        with repo.lock.held("worktree prune"):
            proc = repo.git(["worktree", "prune", "-v"] + (["-n"] if dry_run else []))
            out = proc.stdout + proc.stderr  # git prints what it prunes on stderr
        for line in out.splitlines():
            if line.strip():
                report.git_pruned.append(line.strip())
                report.actions.append(f"git worktree prune: {line.strip()}")
        for wt in repo.list_worktrees():
            if not wt.managed:
                continue
            state = owner_state(wt)
            if state in _PROTECTED:
                report.skipped.append({"path": wt.path, "reason": f"{state}: {describe_owner(wt)}"})
                continue
            if older_than is not None and _age_seconds(wt) < older_than:
                report.skipped.append({"path": wt.path, "reason": f"younger than {older_than}s ({state})"})
                continue
            self._apply_removal(wt, f"stale ({state})", report)
        self._clean_orphans(report)
        return report

    def cleanup_all(self, dry_run: bool = False, force: bool = False) -> PruneReport:
        report = PruneReport(dry_run=dry_run)
        for wt in self.repo.list_worktrees():
            if not wt.managed:
                continue
            state = owner_state(wt)
            if state in _PROTECTED and not force:
                report.skipped.append({"path": wt.path, "reason": f"{state}: {describe_owner(wt)}; "
                                                                  "pass force=True to remove anyway"})
                continue
            self._apply_removal(wt, f"cleanup ({state})", report)
        self._clean_orphans(report)
        return report

    def _apply_removal(self, wt: WorktreeInfo, why: str, report: PruneReport) -> None:
        repo = self.repo
        exists = os.path.isdir(wt.path)
        dirty = False
        if exists and repo.admin_dir_of(os.path.realpath(wt.path)):
            try:
                dirty = bool(repo.status(os.path.realpath(wt.path))[2])
            except WorktreeProviderError:
                dirty = True  # cannot tell (a stale lock, say): the removal salvages whatever is there
        action = f"remove {wt.path} [{why}]" + (" after salvaging uncommitted work" if dirty else "") + \
            ("" if exists else " (directory already gone)")
        report.actions.append(action)
        if report.dry_run:
            return
        try:
            res = self.remover.remove_entry(wt)
        except WorktreeProviderError as exc:
            report.errors.append({"path": wt.path, "error": str(exc)})
            return
        report.removed.append(res.path)
        if res.branch_deleted and res.branch:
            report.branches_deleted.append(res.branch)
        if res.salvage_branch:
            report.salvaged.append({"path": res.path, "branch": res.salvage_branch, "sha": res.salvage_sha})

    def _clean_orphans(self, report: PruneReport) -> None:
        repo = self.repo
        if not os.path.isdir(repo.worktree_root):
            return
        with repo.lock.held("orphan scan"):
            known = {os.path.realpath(w.path) for w in repo.list_worktrees()}
            for top in sorted(os.scandir(repo.worktree_root), key=lambda e: e.name):
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
            if self.repo.admin_dir_of(p) is None:
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
                name, sha = salvage(self.repo, p, None, None, snapshot=True)
                report.salvaged.append({"path": p, "branch": name, "sha": sha})
            shutil.rmtree(p)
            report.orphans_removed.append(p)
        except (OSError, WorktreeProviderError) as exc:
            report.errors.append({"path": p, "error": str(exc)})
