"""The metrics the thresholds read, measured on a shard store, a worktree root and a manager
(:func:`collect_metrics`), and the timestamp and JSON helpers they need (:func:`to_epoch`, :func:`jsonable`).

Imports only the standard library. Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch for a datetime, an ISO-8601 / SQLite timestamp string or a number.

    Naive datetimes and strings without an offset are taken as UTC (SQLite's ``CURRENT_TIMESTAMP``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, tuples/sets as lists, dataclasses as dicts: XCom- and
    TriggerEvent-safe."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _status_counts(store: Any, run_id: str | None) -> tuple[dict[str, int], list[dict]]:
    shards = store.list_shards(run_id=run_id)
    counts: dict[str, int] = {}
    for shard in shards:
        counts[shard["status"]] = counts.get(shard["status"], 0) + 1
    return counts, shards


def _db_size_bytes(store: Any) -> int | None:
    for attr in ("db_size_bytes", "size_bytes", "database_size"):
        method = getattr(store, attr, None)
        if callable(method):
            try:
                size = method()
            except Exception:  # noqa: BLE001 - a metric we cannot read is a metric we skip
                return None
            return int(size) if size is not None else None
    path = _sqlite_path(store)
    if path is None:
        return None
    total = 0
    for suffix in ("", "-wal", "-journal"):
        try:
            total += os.path.getsize(f"{path}{suffix}")
        except OSError:
            pass
    return total or None


def _sqlite_path(store: Any) -> str | None:
    for attr in ("path", "db_path", "sqlite_path"):
        value = getattr(store, attr, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            return str(value)
    target = getattr(store, "target", None) or getattr(store, "url", None)
    if isinstance(target, str):
        if target.startswith("sqlite:///"):
            return target[len("sqlite:///") - 1:] if target.startswith("sqlite:////") else target[len("sqlite:///"):]
        if "://" not in target:
            return target
    return None


def _existing_parent(path: Path) -> Path | None:
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _disk_free_pct(path: str | os.PathLike) -> float | None:
    existing = _existing_parent(Path(path))
    if existing is None:
        return None
    usage = shutil.disk_usage(existing)
    if not usage.total:
        return None
    return usage.free / usage.total * 100.0


def _count_worktrees_under(root: str | os.PathLike) -> int:
    """Worktree checkouts (directories holding a ``.git`` file) at most two levels under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return 0
    count = 0
    for first in root.iterdir():
        if not first.is_dir():
            continue
        if (first / ".git").is_file():
            count += 1
            continue
        try:
            count += sum(1 for second in first.iterdir() if second.is_dir() and (second / ".git").is_file())
        except OSError:
            continue
    return count


def _active_worktrees_from_manager(manager: Any) -> int:
    """Shard worktrees of the manager: the ones under its worktree root (``managed``), else every linked
    worktree (all but the main one)."""
    count = 0
    for item in manager.list_worktrees():
        get = item.get if isinstance(item, Mapping) else (lambda k, _i=item: getattr(_i, k, None))
        managed = get("managed")
        if managed is not None:
            count += bool(managed)
        elif not get("is_main"):
            count += 1
    return count


def collect_metrics(
    store: Any = None,
    run_id: str | None = None,
    worktree_root: str | os.PathLike | None = None,
    manager: Any = None,
    stale_after_s: float = 3600,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Gather what is available of the runbook's metrics.

    From the ``store`` (a :class:`~airflow_provider_worktree.core.store.shards.ShardStore`): ``stale_locks``,
    ``failed_ratio`` (with ``failed``/``total`` counts), ``task_duration_s`` (longest running shard; 0 when
    none runs), ``db_size_bytes``. From the ``manager`` (a ``WorktreeManager``) or ``worktree_root``:
    ``active_worktrees`` and ``disk_free_pct``. Metrics that cannot be measured are left out (or ``None``).
    """
    now = time.time() if now is None else now
    metrics: dict[str, Any] = {}
    if store is not None:
        counts, shards = _status_counts(store, run_id)
        total = sum(counts.values())
        failed = counts.get("failed", 0)
        metrics["total"] = total
        metrics["failed"] = failed
        metrics["status_counts"] = counts
        metrics["failed_ratio"] = (failed / total) if total else None
        longest = 0.0
        for shard in shards:
            if shard.get("status") != "running":
                continue
            started = to_epoch(shard.get("started_at"))
            if started is not None:
                longest = max(longest, now - started)
        metrics["task_duration_s"] = longest
        metrics["stale_locks"] = len(store.stale_leases(stale_after_s, run_id=run_id))
        metrics["db_size_bytes"] = _db_size_bytes(store)
    root = worktree_root
    if root is None and manager is not None:
        root = getattr(manager, "worktree_root", None)
    if manager is not None:
        metrics["active_worktrees"] = _active_worktrees_from_manager(manager)
    elif root is not None:
        metrics["active_worktrees"] = _count_worktrees_under(root)
    if root is not None:
        metrics["disk_free_pct"] = _disk_free_pct(root)
    return metrics
