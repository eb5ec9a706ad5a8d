"""The maintenance tasks: the task classes (``catalog``) and their registry (``registry``), which files a task
has work for at a commit (``discovery``), success metrics (``metrics``), the verify command (``verify``), the
shard's path scope (``scope``) and the prompt (``prompt``). Packing the candidates into shards is
``core.planning``.

May import: ``core.errors``, ``core.sandbox``, ``core.git`` and ``core.files``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module. The planning names that lived here up to 0.1 (``plan_shards``,
``plan_repository``, ``Plan``, ``shard_id_for``), and ``match_glob``, still resolve, with a DeprecationWarning
naming their new package.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Finding": "airflow_provider_worktree.core.tasks.findings",
    "parse_findings": "airflow_provider_worktree.core.tasks.findings",
    "CONVENTION_FILES": "airflow_provider_worktree.core.tasks.prompt",
    "CustomTask": "airflow_provider_worktree.core.tasks.catalog",
    "DEFAULT_MAX_FILE_BYTES": "airflow_provider_worktree.core.tasks.discovery",
    "DocstringsTask": "airflow_provider_worktree.core.tasks.catalog",
    "LintTask": "airflow_provider_worktree.core.tasks.catalog",
    "MaintenanceTask": "airflow_provider_worktree.core.tasks.catalog",
    "PathScope": "airflow_provider_worktree.core.tasks.scope",
    "ScopeViolation": "airflow_provider_worktree.core.tasks.scope",
    "TASKS": "airflow_provider_worktree.core.tasks.registry",
    "TestsTask": "airflow_provider_worktree.core.tasks.catalog",
    "TodoTask": "airflow_provider_worktree.core.tasks.catalog",
    "VerifyResult": "airflow_provider_worktree.core.tasks.verify",
    "check_scope": "airflow_provider_worktree.core.tasks.registry",
    "count_todo_markers": "airflow_provider_worktree.core.tasks.metrics",
    "get_task": "airflow_provider_worktree.core.tasks.registry",
    "parse_shard_block": "airflow_provider_worktree.core.tasks.prompt",
    "read_conventions": "airflow_provider_worktree.core.tasks.prompt",
    "register_task": "airflow_provider_worktree.core.tasks.registry",
    "render_shard_prompt": "airflow_provider_worktree.core.tasks.prompt",
    "run_verify": "airflow_provider_worktree.core.tasks.verify",
    "system_prompt_for": "airflow_provider_worktree.core.tasks.prompt",
}, deprecated={
    "Plan": "airflow_provider_worktree.core.planning",
    "match_glob": "airflow_provider_worktree.core.files",
    "plan_repository": "airflow_provider_worktree.core.planning",
    "plan_shards": "airflow_provider_worktree.core.planning",
    "shard_id_for": "airflow_provider_worktree.core.planning",
})
