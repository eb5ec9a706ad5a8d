"""A repository's files at a commit, read without a checkout: the listing, blobs, a scratch copy of the tree.

- Git is read as bytes (``-z`` output, raw blobs) and paths are decoded with :func:`os.fsdecode`
  (surrogateescape), so a file name that is not UTF-8 never crashes planning.
- Only read-only plumbing runs (``rev-parse``, ``ls-tree``, ``cat-file``, ``grep``, ``check-attr``), hardened
  like every git of the package: hooks and fsmonitor off, nothing from the repository executes.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from airflow_provider_worktree.core.errors import ConfigurationError, GitError
from airflow_provider_worktree.core.git.command import DEFAULT_GIT_TIMEOUT, git_executable, git_version, run_git
from airflow_provider_worktree.core.git.safety import harden, subcommand

__all__ = [
    "resolve_commit", "git_bytes", "Listing", "tree_listing", "read_blobs", "read_blob_chunks", "decode_text",
    "materialize", "scratch_dir", "name_problem",
]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def resolve_commit(repo_path: str | os.PathLike[str], ref: str) -> str:
    """The commit sha of ``ref`` in ``repo_path``; a ConfigurationError naming the fix when either is wrong."""
    if not Path(repo_path).exists():
        raise ConfigurationError(f"Repository path {repo_path} does not exist. Pass the path of a git clone.")
    try:
        return run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo_path).stdout.strip()
    except GitError as exc:
        raise ConfigurationError(
            f"Cannot resolve ref {ref!r} in {repo_path}: {exc.stderr or 'unknown revision'}. "
            "Pass an existing branch, tag or commit of that repository as ref."
        ) from exc


def name_problem(path: str) -> bool:
    """True when ``path`` cannot travel safely as text: bytes that are not UTF-8 (lone surrogates after
    os.fsdecode) or control characters (a newline would break prompts and git's line protocols)."""
    if _CONTROL_RE.search(path):
        return True
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def git_bytes(repo_path: str | os.PathLike[str], args: Sequence[str], *, input: bytes | None = None,
              ok_codes: Iterable[int] = (0,), timeout: float | None = DEFAULT_GIT_TIMEOUT,
              env: Mapping[str, str] | None = None) -> bytes:
    """``git *args`` in ``repo_path`` with bytes in and out (file names and contents need not be UTF-8).

    Read-only plumbing only, hardened like every git of the package (:func:`gitsafety.harden`): nothing configured
    in the repository runs. ``env`` adds to git's allowlisted environment (e.g. ``GIT_INDEX_FILE``).
    """
    git_version()
    cmd, full_env = harden(git_executable(), args, repo_path, env, timeout)
    shown = list(args)
    if (sub := subcommand(shown)) in shown:       # the message names the subcommand, not the -c options
        shown = shown[shown.index(sub):]
    what = " ".join(shown[:3])
    try:
        proc = subprocess.run(cmd, cwd=repo_path, env=full_env, capture_output=True,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {what} timed out after {timeout}s in {repo_path}. Check the "
                       "repository's size or raise the timeout.", args=list(args)) from exc
    if proc.returncode not in tuple(ok_codes):
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {what} failed (exit {proc.returncode}) in {repo_path}: {stderr}",
                       args=list(args), returncode=proc.returncode, stderr=stderr)
    return proc.stdout


class Listing(dict):
    """``{path: size}`` of the regular files at a commit, with ``shas`` (``{path: blob sha}``) and ``other``
    (symlinks and submodules, never edited)."""

    def __init__(self) -> None:
        super().__init__()
        self.shas: dict[str, str] = {}
        self.other: list[str] = []

    def subset(self, paths: Iterable[str]) -> Listing:
        """A listing of ``paths`` only (sizes and shas kept)."""
        out = Listing()
        for p in paths:
            out[p] = self[p]
            out.shas[p] = self.shas[p]
        return out


def tree_listing(repo_path: str | os.PathLike[str], commit: str) -> Listing:
    """Every regular file at ``commit`` (one ``git ls-tree -z``); paths decoded with os.fsdecode."""
    out = git_bytes(repo_path, ["ls-tree", "-r", "-l", "-z", "--full-tree", commit])
    listing = Listing()
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        parts = meta.split()
        path = os.fsdecode(raw_path)
        if len(parts) != 4 or parts[1] != b"blob" or parts[0] == b"120000":
            listing.other.append(path)
            continue
        listing[path] = int(parts[3]) if parts[3].isdigit() else 0
        listing.shas[path] = parts[2].decode("ascii")
    return listing


def read_blobs(repo_path: str | os.PathLike[str], shas: Mapping[str, str]) -> dict[str, bytes]:
    """Raw contents of ``{path: blob sha}`` with one ``git cat-file --batch`` (no filters, no textconv)."""
    if not shas:
        return {}
    paths = list(shas)
    out = git_bytes(repo_path, ["cat-file", "--batch"], input="".join(f"{shas[p]}\n" for p in paths).encode())
    result: dict[str, bytes] = {}
    pos = 0
    for path in paths:
        eol = out.index(b"\n", pos)
        header = out[pos:eol].split()
        pos = eol + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            result[path] = out[pos:pos + size]
            pos += size + 1
    return result


def decode_text(data: bytes) -> str | None:
    """Text of a blob (UTF-8, undecodable bytes replaced); None for binary content (a NUL in the first 8 KB)."""
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def materialize(repo_path: str | os.PathLike[str], listing: Listing, dest: str | os.PathLike[str]) -> None:
    """Write the committed regular files of ``listing`` under ``dest`` from raw blobs: a scratch copy of the
    commit for tools that need a tree (no checkout, no filters, no symlinks, nothing written to the repository)."""
    root = Path(dest)
    for chunk in _chunks(sorted(listing), listing):
        for path, data in read_blobs(repo_path, {p: listing.shas[p] for p in chunk}).items():
            if name_problem(path) or path.startswith("/") or ".." in PurePosixPath(path).parts:
                continue
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _chunks(paths: Sequence[str], sizes: Mapping[str, int], max_files: int = 2000,
            max_bytes: int = 64_000_000) -> Iterable[list[str]]:
    """``paths`` in consecutive chunks of bounded count and size (one ``cat-file`` batch each)."""
    chunk: list[str] = []
    total = 0
    for p in paths:
        if chunk and (len(chunk) >= max_files or total + sizes.get(p, 0) > max_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(p)
        total += sizes.get(p, 0)
    if chunk:
        yield chunk


def read_blob_chunks(repo_path: str | os.PathLike[str], paths: Sequence[str],
                     listing: Listing) -> Iterable[dict[str, bytes]]:
    """Raw contents of ``paths`` (in ``listing``), a bounded batch at a time."""
    for chunk in _chunks(paths, listing):
        yield read_blobs(repo_path, {p: listing.shas[p] for p in chunk})


def scratch_dir(prefix: str = "worktree-plan-") -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory, removed on exit."""
    return tempfile.TemporaryDirectory(prefix=prefix)
