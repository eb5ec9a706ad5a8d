"""The planner: a repository and a task in, a list of disjoint shards out.

:func:`plan_repository` resolves the ref, asks the task's discovery
(:func:`~airflow_provider_worktree.core.tasks.discovery.discover`) which files have work and why the others are
left out, then packs the candidates into shards (by size or by directory, a big file's line ranges one shard
each), keeps the ``top`` ones and merges them to fit ``max_shards``. The result is a :class:`Plan`: the shard
dicts (see docs/architecture.md "The shard dict"), the skipped files with their reasons, notes and counts.
:func:`plan_shards` returns the shard dicts alone. Shard ids are stable (:func:`shard_id_for`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.files.listing import resolve_commit
from airflow_provider_worktree.core.tasks.catalog import MaintenanceTask
from airflow_provider_worktree.core.tasks.discovery import DEFAULT_MAX_FILE_BYTES, discover
from airflow_provider_worktree.core.tasks.registry import _as_task

__all__ = ["plan_repository", "plan_shards", "Plan", "shard_id_for"]


def shard_id_for(task_name: str, files: Iterable[str], lines: Sequence[int] | None = None) -> str:
    """``<task>-<10 hex>``: sha1 over the task name, the sorted files and the line range (if any); stable
    across runs and orders."""
    parts = [task_name, *sorted(files)]
    if lines:
        parts.append(f"lines:{int(lines[0])}-{int(lines[1])}")
    digest = hashlib.sha1("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{task_name}-{digest[:10]}"


@dataclass
class Plan:
    """What :func:`plan_repository` decided: the shards, the files it left out and why, and notes (for example
    that shards were grouped to fit ``max_shards``). ``counts`` has ``files`` (regular files at the commit),
    ``candidates`` (files with work), ``planned_files`` and ``shards``."""

    task: str
    commit: str
    shards: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    notes: list[str]
    counts: dict[str, int]

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """``{reason: number of files}``, most frequent first."""
        totals: dict[str, int] = {}
        for entry in self.skipped:
            totals[entry["reason"]] = totals.get(entry["reason"], 0) + 1
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        """One paragraph for a task log: shards, skipped files by reason, notes."""
        text = (f"{len(self.shards)} shard(s) for task {self.task} at {self.commit[:12]}: "
                f"{self.counts.get('planned_files', 0)} file(s) of {self.counts.get('files', 0)}.")
        if self.skipped:
            text += f" Skipped {len(self.skipped)} file(s): " + ", ".join(
                f"{reason} {n}" for reason, n in self.skipped_by_reason.items()) + "."
        if self.skipped and not self.shards:
            text += " Pass include=[globs] to plan files the default rules skip."
        return " ".join([text, *self.notes])

    def to_dict(self, max_skipped: int = 200) -> dict[str, Any]:
        """JSON-serialisable form (for XCom or a report); the skipped list is cut at ``max_skipped`` entries,
        ``skipped_by_reason`` always counts all."""
        return {"task": self.task, "commit": self.commit, "shards": self.shards, "notes": list(self.notes),
                "counts": dict(self.counts), "skipped_by_reason": self.skipped_by_reason,
                "skipped": self.skipped[:max_skipped], "skipped_total": len(self.skipped)}


def plan_repository(repo_path: str | os.PathLike[str], task: MaintenanceTask | str, *, ref: str = "HEAD",
                    globs: Sequence[str] | None = None, include: Sequence[str] | None = None,
                    exclude: Sequence[str] | None = None, default_skips: bool = True, max_files: int = 10,
                    max_bytes: int = 200_000, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, by: str = "size",
                    max_shards: int | None = None, top: int | None = None,
                    task_options: Mapping[str, Any] | None = None) -> Plan:
    """Plan the task on ``repo_path`` at ``ref``: the shards, and every file left out with its reason.

    Candidates are the files at ``ref`` matching ``globs`` (default: the task's) that the task has work for.
    Left out, with a reason: vendored and generated paths (``.gitattributes`` ``linguist-vendored`` /
    ``linguist-generated``, vendored trees such as ``vendor/``, ``third_party/``, ``node_modules/``, bundled
    ``typeshed``), test fixtures and data (``fixtures/``, ``testdata/``, ``test-data/``, ``.test``, ``.patch``,
    ``.diff``, data files), CI configuration (``.github/``), generated files (``*_pb2.py``, lock files, an
    ``@generated``/``DO NOT EDIT`` header), non-source files for code tasks, file names that are not UTF-8.
    ``include`` globs keep a file whatever these default rules say; ``exclude`` globs leave more out;
    ``default_skips=False`` turns the default rules off.

    A file larger than ``max_file_bytes`` (default: one editor view) is split into line ranges that start at
    definitions, one shard per range with work (``"lines": [start, end]`` in the shard), by tasks that split
    (todo, docstrings); other tasks leave it out. Files above the editor's own limit are always left out.

    ``by="size"`` packs files in sorted path order into shards of at most ``max_files`` files and ``max_bytes``
    bytes; ``by="directory"`` packs each parent directory separately; range shards come last, in path and line
    order. ``max_shards`` (pass Airflow's ``[core] max_map_length``) merges consecutive shards until the count
    fits, and adds a note. ``top`` keeps only the ``top`` highest-priority shards (a sample run). The output
    is deterministic: the same commit and arguments give the same shards and ids.
    """
    t = _as_task(task, task_options)
    t.validate()
    if max_files < 1 or max_bytes < 1:
        raise ConfigurationError(f"max_files and max_bytes must be >= 1 (got {max_files}, {max_bytes}).")
    if max_file_bytes < 1_000:
        raise ConfigurationError(f"max_file_bytes must be >= 1000 (got {max_file_bytes}); the default is "
                                 f"{DEFAULT_MAX_FILE_BYTES}, one editor view.")
    if by not in ("size", "directory"):
        raise ConfigurationError(f"by={by!r} is not a planning mode. Use by='size' or by='directory'.")
    for name, value in (("max_shards", max_shards), ("top", top)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigurationError(f"{name} must be an integer >= 1 or None (got {value!r}).")
    commit = resolve_commit(repo_path, ref)
    found = discover(repo_path, t, commit, globs, include, exclude, default_skips, max_file_bytes)
    sizes = found.listing
    shards = [_make_shard(t.name, g, sum(found.weights[p] for p in g), sum(sizes[p] for p in g))
              for g in _groups(found.whole, sizes, by, max_files, max_bytes)]
    shards += [_make_shard(t.name, [r.path], r.weight, r.size, r.lines) for r in found.ranges]
    notes: list[str] = []
    if found.ranges:
        big = {r.path for r in found.ranges}
        notes.append(f"{len(big)} file(s) larger than {max_file_bytes} bytes were split into {len(found.ranges)} "
                     "line-range shard(s).")
    if top is not None and len(shards) > top:
        keep = sorted(range(len(shards)), key=lambda i: (-shards[i]["priority"], i))[:top]
        notes.append(f"Kept the {top} highest-priority shard(s) of {len(shards)} (top={top}).")
        shards = [shards[i] for i in sorted(keep)]
    if max_shards is not None and len(shards) > max_shards:
        shards, note = _fit_shards(shards, max_shards, t.name)
        notes.append(note)
    skipped = sorted(found.skipped, key=lambda e: (e["path"], e["reason"]))
    counts = {"files": len(sizes), "candidates": len(found.files), "shards": len(shards),
              "planned_files": len({f for s in shards for f in s["files"]})}
    return Plan(t.name, commit, shards, skipped, notes, counts)


def plan_shards(repo_path: str | os.PathLike[str], task: MaintenanceTask | str, *, ref: str = "HEAD",
                globs: Sequence[str] | None = None, max_files: int = 10, max_bytes: int = 200_000,
                by: str = "size", max_shards: int | None = None,
                task_options: Mapping[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    """The shard dicts of :func:`plan_repository` (same arguments; ``options`` takes ``include``, ``exclude``,
    ``default_skips``, ``max_file_bytes`` and ``top``). Use :func:`plan_repository` to see what was skipped."""
    return plan_repository(repo_path, task, ref=ref, globs=globs, max_files=max_files, max_bytes=max_bytes, by=by,
                           max_shards=max_shards, task_options=task_options, **options).shards


def _pack(paths: Sequence[str], sizes: Mapping[str, int], max_files: int, max_bytes: int) -> list[list[str]]:
    groups: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for p in paths:
        size = sizes[p]
        if size > max_bytes:
            if current:
                groups.append(current)
                current, current_bytes = [], 0
            groups.append([p])
            continue
        if current and (len(current) >= max_files or current_bytes + size > max_bytes):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += size
    if current:
        groups.append(current)
    return groups


def _groups(paths: Sequence[str], sizes: Mapping[str, int], by: str, max_files: int,
            max_bytes: int) -> list[list[str]]:
    if by == "size":
        return _pack(paths, sizes, max_files, max_bytes)
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(str(PurePosixPath(p).parent), []).append(p)
    return [g for d in sorted(by_dir) for g in _pack(by_dir[d], sizes, max_files, max_bytes)]


def _make_shard(task_name: str, files: Sequence[str], priority: int, size: int,
                lines: Sequence[int] | None = None) -> dict[str, Any]:
    shard: dict[str, Any] = {"shard_id": shard_id_for(task_name, files, lines), "task": task_name,
                             "files": sorted(files), "priority": int(priority), "bytes": int(size)}
    if lines:
        shard["lines"] = [int(lines[0]), int(lines[1])]
    return shard


def _fit_shards(shards: list[dict[str, Any]], max_shards: int, task_name: str) -> tuple[list[dict[str, Any]], str]:
    """Merge consecutive shards so that at most ``max_shards`` remain (Airflow maps at most
    ``[core] max_map_length`` task instances). Line ranges of one file merge into one range; a merged shard
    with several files carries no range."""
    n = len(shards)
    k = -(-n // max_shards)
    merged: list[dict[str, Any]] = []
    for i in range(0, n, k):
        group = shards[i:i + k]
        files = sorted({f for s in group for f in s["files"]})
        lines = None
        if len(files) == 1 and all("lines" in s for s in group):
            lines = [min(s["lines"][0] for s in group), max(s["lines"][1] for s in group)]
        merged.append(_make_shard(task_name, files, sum(s["priority"] for s in group),
                                  sum(s["bytes"] for s in group), lines))
    note = (f"{n} shards exceed max_shards={max_shards}: every {k} consecutive shards were merged into one, "
            f"giving {len(merged)} larger shards (up to {max(len(s['files']) for s in merged)} files each). "
            "Raise [core] max_map_length (and max_shards) for smaller shards.")
    return merged, note
