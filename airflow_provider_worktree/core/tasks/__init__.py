"""The maintenance task catalog: the task classes and their registry, success metrics, the verify command,
the shard's path scope and the prompt.

May import: ``core.errors``, ``core.sandbox``, ``core.git`` and ``core.files``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "CustomTask": "airflow_provider_worktree.core.tasks.catalog",
    "DEFAULT_MAX_FILE_BYTES": "airflow_provider_worktree.core.tasks.catalog",
    "DocstringsTask": "airflow_provider_worktree.core.tasks.catalog",
    "LintTask": "airflow_provider_worktree.core.tasks.catalog",
    "MaintenanceTask": "airflow_provider_worktree.core.tasks.catalog",
    "PathScope": "airflow_provider_worktree.core.tasks.catalog",
    "Plan": "airflow_provider_worktree.core.tasks.catalog",
    "ScopeViolation": "airflow_provider_worktree.core.tasks.catalog",
    "TASKS": "airflow_provider_worktree.core.tasks.catalog",
    "TestsTask": "airflow_provider_worktree.core.tasks.catalog",
    "TodoTask": "airflow_provider_worktree.core.tasks.catalog",
    "VerifyResult": "airflow_provider_worktree.core.tasks.catalog",
    "check_scope": "airflow_provider_worktree.core.tasks.catalog",
    "count_todo_markers": "airflow_provider_worktree.core.tasks.catalog",
    "get_task": "airflow_provider_worktree.core.tasks.catalog",
    "match_glob": "airflow_provider_worktree.core.tasks.catalog",
    "parse_shard_block": "airflow_provider_worktree.core.tasks.catalog",
    "plan_repository": "airflow_provider_worktree.core.tasks.catalog",
    "plan_shards": "airflow_provider_worktree.core.tasks.catalog",
    "read_conventions": "airflow_provider_worktree.core.tasks.catalog",
    "register_task": "airflow_provider_worktree.core.tasks.catalog",
    "render_shard_prompt": "airflow_provider_worktree.core.tasks.catalog",
    "run_verify": "airflow_provider_worktree.core.tasks.catalog",
    "shard_id_for": "airflow_provider_worktree.core.tasks.catalog",
    "system_prompt_for": "airflow_provider_worktree.core.tasks.catalog",
})
