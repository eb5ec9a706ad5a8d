"""Which files of a commit a task has work for, and why the others are left out.

One pass in one direction: the listing at the commit (``core.files``), the task's globs and path filter, the
default skip rules (names, ``exclude``/``include`` globs, ``.gitattributes`` as git reads it, vendored trees,
fixtures, ...), the task's weights, then the content rules (generated headers, size limits) and, for a task that
splits large files, the line ranges with work. The planner (``core.planning``) packs the result into shards;
:meth:`MaintenanceTask.discover <airflow_provider_worktree.core.tasks.catalog.MaintenanceTask.discover>` returns
its files. The task is read only through the hooks of :class:`TaskHooks`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from airflow_provider_worktree.core.files.attributes import GitAttributes
from airflow_provider_worktree.core.files.globs import match_any, normalise_globs, optional_globs, selected_by
from airflow_provider_worktree.core.files.listing import (
    Listing,
    decode_text,
    name_problem,
    read_blob_chunks,
    tree_listing,
)
from airflow_provider_worktree.core.files.ranges import line_ranges
from airflow_provider_worktree.core.files.skips import (
    R_EDITOR_LIMIT,
    R_EXCLUDED,
    R_GENERATED,
    R_NAME,
    R_SYMLINK,
    R_TOO_LARGE,
    generated_header,
    skip_reason,
)
from airflow_provider_worktree.core.sandbox.editor import DEFAULT_MAX_FILE_BYTES as EDITOR_MAX_FILE_BYTES
from airflow_provider_worktree.core.sandbox.editor import DEFAULT_MAX_VIEW_CHARS

__all__ = ["discover", "Discovery", "RangeWork", "TaskHooks", "DEFAULT_MAX_FILE_BYTES"]

#: Default largest file planned whole: one editor view (core/sandbox/editor.py's view cap). Larger files are split
#: into line ranges (todo, docstrings) or left out with a reason (other tasks).
DEFAULT_MAX_FILE_BYTES = DEFAULT_MAX_VIEW_CHARS


class TaskHooks(Protocol):
    """What discovery reads of a task (a :class:`~airflow_provider_worktree.core.tasks.catalog.MaintenanceTask`)."""

    name: str
    default_globs: tuple[str, ...]
    code_task: bool
    scans_whole_tree: bool
    splits_large_files: bool

    def _path_candidate(self, path: str) -> bool: ...

    def _skip_reason(self, path: str) -> str | None: ...

    def discover_weights(self, repo_path: str | os.PathLike[str], commit: str, listing: Mapping[str, int],
                         globs: Sequence[str] | None = None) -> dict[str, int]: ...

    def range_weights(self, text: str, ranges: Sequence[tuple[int, int]]) -> list[int]: ...


class RangeWork(NamedTuple):
    """A line range (1-based, inclusive, as committed) of a big file that has work, its weight and its bytes."""

    path: str
    lines: tuple[int, int]
    weight: int
    size: int


@dataclass
class Discovery:
    """What :func:`discover` found: the ``listing`` of every regular file at the commit, the task's ``weights``
    per candidate, the candidates planned ``whole`` (sorted), the ``ranges`` of the big files split (in path and
    line order), and the ``skipped`` files ``{path, reason}``."""

    listing: Listing
    weights: dict[str, int]
    whole: list[str]
    ranges: list[RangeWork]
    skipped: list[dict[str, str]]

    @property
    def files(self) -> list[str]:
        """Every candidate file, sorted (a split file once)."""
        return sorted({*self.whole, *(r.path for r in self.ranges)})


def discover(repo_path: str | os.PathLike[str], task: TaskHooks, commit: str, globs: Sequence[str] | None,
             include: Sequence[str] | None, exclude: Sequence[str] | None, default_skips: bool,
             max_file_bytes: int) -> Discovery:
    """The files of ``repo_path`` at ``commit`` that ``task`` has work for, and the skipped ones with reasons (see
    ``core.planning.plan_repository`` for the rules and the arguments)."""
    listing = tree_listing(repo_path, commit)
    include_globs = optional_globs(include, "include")
    candidates, skipped = _filter_paths(repo_path, task, commit, listing, globs, include_globs,
                                        optional_globs(exclude, "exclude"), default_skips)
    if task.scans_whole_tree:
        # Discovery costs the same over the whole tree: report only skipped files that had work.
        all_weights = task.discover_weights(repo_path, commit, listing, globs)
        weights = {p: w for p, w in all_weights.items() if p in candidates}
        skipped = [e for e in skipped if all_weights.get(e["path"], 0) > 0]
    else:
        weights = task.discover_weights(repo_path, commit, candidates, globs)
    whole, ranges = _check_contents(repo_path, task, candidates, weights, include_globs, default_skips,
                                    max_file_bytes, skipped)
    return Discovery(listing, dict(weights), whole, ranges, skipped)


def _filter_paths(repo_path: str | os.PathLike[str], task: TaskHooks, commit: str, listing: Listing,
                  globs: Sequence[str] | None, include_globs: Sequence[str], exclude_globs: Sequence[str],
                  default_skips: bool) -> tuple[Listing, list[dict[str, str]]]:
    """The files of ``listing`` matching the task's globs that survive the skip rules, and the skipped ones
    ``{path, reason}``. Order of the rules: unusable file name (always), ``exclude`` globs, then ``include``
    globs (a match keeps the file whatever the default rules say), then the default rules."""
    globs = normalise_globs(globs, task.default_globs)
    keep: list[str] = []
    skipped: list[dict[str, str]] = []
    ruled: list[str] = []                               # the files the default rules decide on
    for path in sorted(listing):
        if not selected_by(path, globs) or not task._path_candidate(path):
            continue
        if name_problem(path):
            skipped.append({"path": path, "reason": R_NAME})
        elif match_any(path, exclude_globs):
            skipped.append({"path": path, "reason": R_EXCLUDED})
        elif default_skips and not match_any(path, include_globs):
            ruled.append(path)
        else:
            keep.append(path)
    if ruled:
        attributes = GitAttributes.from_commit(repo_path, commit, ruled)
        for path in ruled:
            reason = skip_reason(path, code_task=task.code_task, attributes=attributes) or task._skip_reason(path)
            if reason:
                skipped.append({"path": path, "reason": reason})
            else:
                keep.append(path)
    skipped += [{"path": p, "reason": R_SYMLINK} for p in sorted(listing.other) if selected_by(p, globs)]
    return listing.subset(sorted(keep)), skipped


def _check_contents(repo_path: str | os.PathLike[str], task: TaskHooks, listing: Listing,
                    weights: Mapping[str, int], include_globs: Sequence[str], default_skips: bool,
                    max_file_bytes: int, skipped: list[dict[str, str]]) -> tuple[list[str], list[RangeWork]]:
    """Content rules on the candidates with work: generated headers, and big files split into line ranges or
    left out. Returns the files planned whole and the ranges with work; appends to ``skipped``."""
    whole: list[str] = []
    ranges: list[RangeWork] = []
    for blobs in read_blob_chunks(repo_path, sorted(weights), listing):
        for path, data in blobs.items():
            size = len(data)
            if default_skips and not match_any(path, include_globs) and generated_header(data):
                skipped.append({"path": path, "reason": R_GENERATED})
            elif size > EDITOR_MAX_FILE_BYTES:
                skipped.append({"path": path, "reason": R_EDITOR_LIMIT})
            elif size <= max_file_bytes:
                whole.append(path)
            elif not task.splits_large_files:
                skipped.append({"path": path, "reason": R_TOO_LARGE})
            else:
                work = _ranges_with_work(task, path, decode_text(data) or "", max_file_bytes)
                if work:
                    ranges += work
                else:
                    skipped.append({"path": path, "reason": R_TOO_LARGE})
    return whole, ranges


def _ranges_with_work(task: TaskHooks, path: str, text: str, max_file_bytes: int) -> list[RangeWork]:
    """The line ranges of ``text`` with work (half an editor view each, so a view of the range with line
    numbers fits)."""
    lines = text.split("\n")
    ranges = line_ranges(text, path, max(1, max_file_bytes // 2))
    return [RangeWork(path, (start, end), weight,
                      sum(len(ln.encode("utf-8", "surrogateescape")) + 1 for ln in lines[start - 1:end]))
            for (start, end), weight in zip(ranges, task.range_weights(text, ranges)) if weight > 0]
