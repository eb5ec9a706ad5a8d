"""Inside one worktree (no repository-wide lock): what changed, and the commit, scoped to allowed paths.

The commit is made with plumbing (``write-tree``, ``commit-tree``, ``update-ref`` with the old value), so no
hook, editor or trailer command can run, and the branch moves only if nobody moved it meanwhile. With
``allowed`` only the allowed changed paths are staged; whatever else appeared in the worktree (a file a test
wrote during verify, a CI workflow) is not committed, is listed in ``CommitResult.excluded`` and is left in the
worktree as it is (a later forced removal saves it on a local ``worktree-salvage/...`` branch, which the
package never pushes). Paths travel NUL-separated (``-z``) and are decoded with ``surrogateescape``, so names
that are not valid UTF-8 are committed as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.git.refs import check_ref_arg
from airflow_provider_worktree.core.git.repo import GitRepo
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE
from airflow_provider_worktree.core.worktrees.names import check_repo_relpath
from airflow_provider_worktree.core.worktrees.results import CommitResult

#: ``allowed`` for :meth:`WorktreeCommitter.commit`: a predicate on repository-relative paths, or paths (an entry
#: ending in '/' allows everything under that directory).
Allowed = Callable[[str], bool] | Iterable[str]

_TRAILER_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_TRAILER_LINE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*: ")


def allowed_predicate(allowed: Allowed | None) -> Callable[[str], bool]:
    """A predicate from ``allowed`` (None: everything is allowed)."""
    if allowed is None:
        return lambda _path: True
    if callable(allowed):
        return allowed
    if isinstance(allowed, (str, bytes)):
        raise ConfigurationError(f"allowed={allowed!r} is a single string; pass a list of paths (e.g. "
                                 "['src/app.py']) or a predicate.")
    files: set[str] = set()
    dirs: list[str] = []
    for rel in allowed:
        check_repo_relpath(rel, "allowed path", allow_dir=True)
        (dirs.append(rel) if rel.endswith("/") else files.add(rel))
    return lambda path: path in files or any(path.startswith(d) for d in dirs)


def format_message(message: str, trailers: Mapping[str, object] | None) -> str:
    """The commit message with ``Key: value`` trailers appended (to an existing trailer block if any)."""
    if not isinstance(message, str) or not message.strip():
        raise ConfigurationError("Commit message is empty. Give a one-line summary of the change.")
    lines = []
    for key, value in (trailers or {}).items():
        if not _TRAILER_KEY_RE.match(str(key)) or CONTROL_RE.search(str(value)):
            raise ConfigurationError(f"Trailer {key!r}: {value!r} is invalid: keys are letters, digits and "
                                     "'-'; values are one line. Example: {'Shard-Id': 'todo-1'}.")
        lines.append(f"{key}: {value}")
    text = message.strip("\n")
    if not lines:
        return text + "\n"
    paragraphs = text.split("\n\n")
    in_block = len(paragraphs) > 1 and all(_TRAILER_LINE_RE.match(ln) for ln in paragraphs[-1].splitlines())
    return text + ("\n" if in_block else "\n\n") + "\n".join(lines) + "\n"


class WorktreeCommitter:
    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo

    def commit(self, path: str | os.PathLike[str], message: str, trailers: Mapping[str, object] | None = None,
               *, allowed: Allowed | None = None) -> CommitResult:
        repo = self.repo
        p = repo.check_worktree(path)
        msg = format_message(message, trailers)
        is_allowed = allowed_predicate(allowed)
        _branch, head, changed = repo.status(p)
        take = sorted({f for f in changed if is_allowed(f)})
        excluded = sorted({f for f in changed if not is_allowed(f)})
        if allowed is None:
            repo.add_all(p)
        else:
            repo.git(["reset", "-q"], cwd=p)  # nothing staged by anyone else goes in
            if take:
                add = ["add", "-A", "--sparse"] if repo.add_sparse else ["add", "-A"]
                repo.git([*add, "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=p,
                         input="\0".join(take) + "\0", env={"GIT_LITERAL_PATHSPECS": "1"})
        files = self._staged(p)
        if not files:
            return CommitResult(sha=None, diffstat="", files=[], excluded=excluded)
        tree = repo.git(["write-tree"], cwd=p).stdout.strip()
        parents = ["-p", head] if head else []
        sha = repo.git(["commit-tree", tree, *parents, "-F", "-"], cwd=p, input=msg,
                       env=repo.author_env()).stdout.strip()
        subject = msg.split("\n", 1)[0]
        repo.git(["update-ref", "-m", f"commit: {subject}", "HEAD", sha, head or ""], cwd=p)
        stat = repo.git(["show", "--stat=200", "--no-renames", "--format=", sha], cwd=p).stdout
        return CommitResult(sha=sha, diffstat=stat.strip("\n"), files=files, excluded=excluded)

    def _staged(self, p: str) -> list[str]:
        out = self.repo.git(["diff", "--cached", "--name-only", "-z", "--no-renames"], cwd=p).stdout
        return [f for f in out.split("\0") if f]

    def changed_files(self, path: str | os.PathLike[str], base_ref: str) -> list[str]:
        repo = self.repo
        p = repo.check_worktree(path)
        base_ref = check_ref_arg(base_ref, "base_ref")
        diff = repo.git(["diff", "--name-only", "-z", "--no-renames", "--end-of-options", base_ref, "--"], cwd=p)
        untracked = repo.git(["ls-files", "--others", "--exclude-standard", "-z"], cwd=p)
        return sorted({f for f in (diff.stdout + untracked.stdout).split("\0") if f})

    def is_dirty(self, path: str | os.PathLike[str]) -> bool:
        p = self.repo.check_worktree(path)
        return bool(self.repo.git(["status", "--porcelain", "-z", "--untracked-files=normal"], cwd=p).stdout)
