"""git itself: the hardened command runner, the safety rules (no hooks, filters or fsmonitor from the
repository), remote URLs and credentials (``urls``), the repository (:class:`GitRepo`; its retrying git calls
in ``runner``), what git says about worktrees (``records``: the worktree list and its owner records;
``status``: the one ``git status`` parser; ``refs``: revision arguments), clone caches and the opening of a
remote (``remote``), and the inter-process lock that serialises git's administrative operations.

May import: ``core.errors`` and ``core.sandbox``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BASE_ENV": "airflow_provider_worktree.core.git.safety",
    "CONTENT_FREE_COMMANDS": "airflow_provider_worktree.core.git.safety",
    "CloneCache": "airflow_provider_worktree.core.git.remote",
    "DEFAULT_GIT_TIMEOUT": "airflow_provider_worktree.core.git.command",
    "DEFAULT_LOCK_TIMEOUT": "airflow_provider_worktree.core.git.locks",
    "DIFF_COMMANDS": "airflow_provider_worktree.core.git.safety",
    "FIXED_OVERRIDES": "airflow_provider_worktree.core.git.safety",
    "GitRepo": "airflow_provider_worktree.core.git.repo",
    "GitRunner": "airflow_provider_worktree.core.git.runner",
    "InterProcessLock": "airflow_provider_worktree.core.git.locks",
    "LOCK_FILE_NAME": "airflow_provider_worktree.core.git.repo",
    "LOCK_TOOL": "airflow_provider_worktree.core.git.records",
    "LOW_SPACE_BYTES": "airflow_provider_worktree.core.git.command",
    "LockTimeoutError": "airflow_provider_worktree.core.git.locks",
    "MIN_GIT_VERSION": "airflow_provider_worktree.core.git.command",
    "REMOTE_COMMANDS": "airflow_provider_worktree.core.git.safety",
    "RepositoryLocation": "airflow_provider_worktree.core.git.remote",
    "SAFE_MERGE_DRIVER": "airflow_provider_worktree.core.git.safety",
    "STATUS_ARGS": "airflow_provider_worktree.core.git.status",
    "STDERR_LIMIT": "airflow_provider_worktree.core.git.command",
    "TIMEOUT_GRACE_S": "airflow_provider_worktree.core.git.command",
    "WorktreeInfo": "airflow_provider_worktree.core.git.records",
    "WorktreeStatus": "airflow_provider_worktree.core.git.status",
    "check_ref_arg": "airflow_provider_worktree.core.git.refs",
    "config_overrides": "airflow_provider_worktree.core.git.safety",
    "credential_env": "airflow_provider_worktree.core.git.urls",
    "default_root": "airflow_provider_worktree.core.git.repo",
    "disk_full_hint": "airflow_provider_worktree.core.git.command",
    "git_environment": "airflow_provider_worktree.core.git.safety",
    "git_executable": "airflow_provider_worktree.core.git.command",
    "git_version": "airflow_provider_worktree.core.git.command",
    "harden": "airflow_provider_worktree.core.git.safety",
    "is_remote_command": "airflow_provider_worktree.core.git.safety",
    "is_remote_url": "airflow_provider_worktree.core.git.urls",
    "locate_repository": "airflow_provider_worktree.core.git.remote",
    "lock_file_in_use": "airflow_provider_worktree.core.git.repo",
    "needs_config_scan": "airflow_provider_worktree.core.git.safety",
    "parse_owner": "airflow_provider_worktree.core.git.records",
    "parse_status": "airflow_provider_worktree.core.git.status",
    "probe_repository": "airflow_provider_worktree.core.git.remote",
    "read_config": "airflow_provider_worktree.core.git.safety",
    "read_holder": "airflow_provider_worktree.core.git.locks",
    "redact_url": "airflow_provider_worktree.core.git.urls",
    "run_git": "airflow_provider_worktree.core.git.command",
    "strip_url_credentials": "airflow_provider_worktree.core.git.urls",
    "subcommand": "airflow_provider_worktree.core.git.safety",
    "transport_options": "airflow_provider_worktree.core.git.safety",
})
