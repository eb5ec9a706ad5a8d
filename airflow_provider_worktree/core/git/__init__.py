"""git itself: the hardened command runner, the safety rules (no hooks, filters or fsmonitor from the
repository), remote URLs and credentials, the repository (:class:`GitRepo`), clone caches and the
inter-process lock that serialises git's administrative operations.

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
    "InterProcessLock": "airflow_provider_worktree.core.git.locks",
    "LOCK_FILE_NAME": "airflow_provider_worktree.core.git.repo",
    "LOW_SPACE_BYTES": "airflow_provider_worktree.core.git.command",
    "LockTimeoutError": "airflow_provider_worktree.core.git.locks",
    "MIN_GIT_VERSION": "airflow_provider_worktree.core.git.command",
    "REMOTE_COMMANDS": "airflow_provider_worktree.core.git.safety",
    "SAFE_MERGE_DRIVER": "airflow_provider_worktree.core.git.safety",
    "STDERR_LIMIT": "airflow_provider_worktree.core.git.command",
    "TIMEOUT_GRACE_S": "airflow_provider_worktree.core.git.command",
    "config_overrides": "airflow_provider_worktree.core.git.safety",
    "credential_env": "airflow_provider_worktree.core.git.remote",
    "describe_owner": "airflow_provider_worktree.core.git.repo",
    "disk_full_hint": "airflow_provider_worktree.core.git.command",
    "git_environment": "airflow_provider_worktree.core.git.safety",
    "git_executable": "airflow_provider_worktree.core.git.command",
    "git_version": "airflow_provider_worktree.core.git.command",
    "harden": "airflow_provider_worktree.core.git.safety",
    "is_remote_command": "airflow_provider_worktree.core.git.safety",
    "is_remote_url": "airflow_provider_worktree.core.git.remote",
    "lock_file_in_use": "airflow_provider_worktree.core.git.repo",
    "needs_config_scan": "airflow_provider_worktree.core.git.safety",
    "owner_state": "airflow_provider_worktree.core.git.repo",
    "probe_repository": "airflow_provider_worktree.core.git.remote",
    "read_config": "airflow_provider_worktree.core.git.safety",
    "read_holder": "airflow_provider_worktree.core.git.locks",
    "redact_url": "airflow_provider_worktree.core.git.remote",
    "run_git": "airflow_provider_worktree.core.git.command",
    "strip_url_credentials": "airflow_provider_worktree.core.git.remote",
    "subcommand": "airflow_provider_worktree.core.git.safety",
    "transport_options": "airflow_provider_worktree.core.git.safety",
})
