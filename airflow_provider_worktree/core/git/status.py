"""``git status --porcelain=v2 -z`` read once: the branch, the head and the changed paths of a worktree.

:data:`STATUS_ARGS` is the command and :func:`parse_status` its one parser, for :meth:`GitRepo.status
<airflow_provider_worktree.core.git.repo.GitRepo.status>` and for callers that have only a directory (the
Claude Code runner). Paths come decoded as :func:`~airflow_provider_worktree.core.git.command.run_git` decodes them
(``surrogateescape``).
"""

from __future__ import annotations

from typing import NamedTuple

#: Branch headers, NUL-separated records, every untracked file.
STATUS_ARGS = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")


class WorktreeStatus(NamedTuple):
    """(branch, head sha, changed paths): branch None when detached, head None before the first commit."""

    branch: str | None
    head: str | None
    paths: list[str]


def parse_status(out: str) -> WorktreeStatus:
    """Parse the output of :data:`STATUS_ARGS`. A rename or copy counts as its new path (the original that
    follows it is skipped); with ``--no-renames`` it is a deletion plus an addition."""
    branch = head = None
    paths: list[str] = []
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
            paths.append(rec.split(" ", 8)[8])
        elif rec[0] == "2":
            paths.append(rec.split(" ", 9)[9])
            i += 1  # original path follows
        elif rec[0] == "u":
            paths.append(rec.split(" ", 10)[10])
        elif rec[0] in "?!":
            paths.append(rec[2:])
    return WorktreeStatus(branch, head, paths)
