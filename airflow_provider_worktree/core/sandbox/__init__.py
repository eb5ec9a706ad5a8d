"""Where code that the model or the repository controls runs: the box (bubblewrap or the allowlisted
fallback, process limits), the confinement rules for paths (``paths``), the model's tools confined to a
worktree (``editor``, ``command``, ``tool_result``), and process handling.

May import: ``core.errors`` only. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BOX_HOME": "airflow_provider_worktree.core.sandbox.box",
    "BoxLimits": "airflow_provider_worktree.core.sandbox.box",
    "BoxResult": "airflow_provider_worktree.core.sandbox.box",
    "CLIPPED_MARK": "airflow_provider_worktree.core.sandbox.editor",
    "COMMAND_TOOL_NAME": "airflow_provider_worktree.core.sandbox.command",
    "CONTROL_RE": "airflow_provider_worktree.core.sandbox.paths",
    "CommandTool": "airflow_provider_worktree.core.sandbox.command",
    "DEFAULT_GRACE_S": "airflow_provider_worktree.core.sandbox.proc",
    "DEFAULT_MAX_FILE_BYTES": "airflow_provider_worktree.core.sandbox.editor",
    "DEFAULT_MAX_OUTPUT_CHARS": "airflow_provider_worktree.core.sandbox.command",
    "DEFAULT_MAX_VIEW_CHARS": "airflow_provider_worktree.core.sandbox.editor",
    "ENV_ALLOWLIST": "airflow_provider_worktree.core.sandbox.box",
    "ISOLATION_MODES": "airflow_provider_worktree.core.sandbox.box",
    "IsolationUnavailable": "airflow_provider_worktree.core.sandbox.box",
    "LEFTOVER_GRACE_S": "airflow_provider_worktree.core.sandbox.proc",
    "MAX_DIR_ENTRIES": "airflow_provider_worktree.core.sandbox.editor",
    "ProcessHandle": "airflow_provider_worktree.core.sandbox.proc",
    "ProcessResult": "airflow_provider_worktree.core.sandbox.proc",
    "SandboxViolation": "airflow_provider_worktree.core.sandbox.paths",
    "TEXT_EDITOR_NAME": "airflow_provider_worktree.core.sandbox.editor",
    "TEXT_EDITOR_TYPE": "airflow_provider_worktree.core.sandbox.editor",
    "TextEditorTool": "airflow_provider_worktree.core.sandbox.editor",
    "ToolResult": "airflow_provider_worktree.core.sandbox.tool_result",
    "box_env": "airflow_provider_worktree.core.sandbox.box",
    "bwrap_status": "airflow_provider_worktree.core.sandbox.box",
    "clean_text": "airflow_provider_worktree.core.sandbox.paths",
    "count_user_processes": "airflow_provider_worktree.core.sandbox.proc",
    "is_within": "airflow_provider_worktree.core.sandbox.paths",
    "kill_process_group": "airflow_provider_worktree.core.sandbox.proc",
    "read_repo_bytes": "airflow_provider_worktree.core.sandbox.paths",
    "resolve_in_worktree": "airflow_provider_worktree.core.sandbox.paths",
    "resolve_isolation": "airflow_provider_worktree.core.sandbox.box",
    "run_boxed": "airflow_provider_worktree.core.sandbox.box",
    "run_process": "airflow_provider_worktree.core.sandbox.proc",
    "truncate_middle": "airflow_provider_worktree.core.sandbox.proc",
})
