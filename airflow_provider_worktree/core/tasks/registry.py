"""The registered tasks by name: :data:`TASKS`, :func:`register_task`, :func:`get_task` (the built-in tasks are
registered on import), and :func:`check_scope`, which resolves a task name to check a shard's changed paths."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.tasks.catalog import BUILTIN_TASKS, MaintenanceTask

__all__ = ["TASKS", "register_task", "get_task", "check_scope"]

TASK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

TASKS: dict[str, MaintenanceTask] = {}


def register_task(task: MaintenanceTask | type[MaintenanceTask], *, replace: bool = False) -> MaintenanceTask:
    """Add a task (an instance, or a class instantiated without arguments) to :data:`TASKS`."""
    if isinstance(task, type):
        task = task()
    if not isinstance(task, MaintenanceTask):
        raise ConfigurationError(f"register_task expects a MaintenanceTask, got {type(task).__name__}. "
                                 "Subclass airflow_provider_worktree.core.tasks.MaintenanceTask.")
    if not TASK_NAME_RE.match(task.name or ""):
        raise ConfigurationError(f"Task name {task.name!r} is invalid: use lowercase letters, digits, '_' and "
                                 "'-', starting with a letter or digit (it prefixes shard ids).")
    if task.name in TASKS and not replace and type(TASKS[task.name]) is not type(task):
        raise ConfigurationError(f"A task named {task.name!r} is already registered "
                                 f"({type(TASKS[task.name]).__name__}). Pick another name or pass replace=True.")
    TASKS[task.name] = task
    return task


def get_task(name: str | MaintenanceTask, **options: Any) -> MaintenanceTask:
    """The registered task ``name``, configured with ``options`` when given
    (e.g. ``get_task("lint", lint_command=[...])``, ``get_task("custom", prompt=..., globs=...)``)."""
    if isinstance(name, MaintenanceTask):
        return name.configure(**options)
    try:
        task = TASKS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(f"Unknown maintenance task {name!r}. Known tasks: {', '.join(sorted(TASKS))}. "
                                 "Register your own with register_task().") from None
    return task.configure(**options)


def _as_task(task: MaintenanceTask | str, options: Mapping[str, Any] | None = None) -> MaintenanceTask:
    return get_task(task, **dict(options or {}))


def check_scope(changed_files: Iterable[str], shard: Mapping[str, Any],
                task: MaintenanceTask | str) -> list[str]:
    """The changed paths (sorted) that lie outside the shard's files and the task's allowed paths."""
    scope = _as_task(task).allowed_paths(shard)
    return sorted({f for f in changed_files if not scope(f)})


for _cls in BUILTIN_TASKS:
    register_task(_cls)
