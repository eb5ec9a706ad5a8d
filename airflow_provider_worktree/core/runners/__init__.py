"""How a shard's edit is produced.

Floors, bottom up: ``types`` (Usage, RunResult, stop reasons, ModelRequestError), ``prices`` (PriceTable),
``budget`` (Budget, the prompt-size bound), ``turns`` (one reply's tool uses run through the confined tools);
on top the runners: ``api`` (the Messages API agent loop), ``claude_code`` (Claude Code headless) and
``batch`` (Message Batches), and ``limited`` (a Claude Code session under the shared rate limit). No runner
imports another.

May import: ``core.errors``, ``core.sandbox``, ``core.git``, ``core.store``, ``core.tasks``, ``core.health`` and
``core.ratelimit``.
Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "API_MAX_BATCH_BYTES": "airflow_provider_worktree.core.runners.batch",
    "API_MAX_REQUESTS": "airflow_provider_worktree.core.runners.batch",
    "ApiRunner": "airflow_provider_worktree.core.runners.api",
    "SessionLimitedRunner": "airflow_provider_worktree.core.runners.limited",
    "BATCH_FACTOR": "airflow_provider_worktree.core.runners.prices",
    "BatchCoordinator": "airflow_provider_worktree.core.runners.batch",
    "BatchEntryRunner": "airflow_provider_worktree.core.runners.batch",
    "BatchNotReady": "airflow_provider_worktree.core.runners.batch",
    "BatchPlanForShard": "airflow_provider_worktree.core.runners.batch",
    "BatchRequest": "airflow_provider_worktree.core.runners.batch",
    "BatchTimeout": "airflow_provider_worktree.core.runners.batch",
    "Budget": "airflow_provider_worktree.core.runners.budget",
    "ClaudeCodeNotFoundError": "airflow_provider_worktree.core.runners.claude_code",
    "ClaudeCodeRunner": "airflow_provider_worktree.core.runners.claude_code",
    "DEFAULT_MAX_PROMPT_BYTES": "airflow_provider_worktree.core.runners.batch",
    "DEFAULT_PRICE": "airflow_provider_worktree.core.runners.prices",
    "DEFAULT_PRICES": "airflow_provider_worktree.core.runners.prices",
    "DEFAULT_SYSTEM_PROMPT": "airflow_provider_worktree.core.runners.api",
    "DEFAULT_TOOLS": "airflow_provider_worktree.core.runners.claude_code",
    "ENV_ALLOWLIST": "airflow_provider_worktree.core.runners.claude_code",
    "FALLBACKS": "airflow_provider_worktree.core.runners.batch",
    "INSTALL_HINT": "airflow_provider_worktree.core.runners.claude_code",
    "MAX_RETRY_AFTER_S": "airflow_provider_worktree.core.runners.types",
    "MAX_USAGE_TOKENS": "airflow_provider_worktree.core.runners.types",
    "MODES": "airflow_provider_worktree.core.runners.batch",
    "ModelPrice": "airflow_provider_worktree.core.runners.prices",
    "ModelRequestError": "airflow_provider_worktree.core.runners.types",
    "ONE_RESPONSE_INSTRUCTION": "airflow_provider_worktree.core.runners.batch",
    "PREP_SHARD_ID": "airflow_provider_worktree.core.runners.batch",
    "PriceTable": "airflow_provider_worktree.core.runners.prices",
    "RANGE_NOTE": "airflow_provider_worktree.core.runners.batch",
    "RunResult": "airflow_provider_worktree.core.runners.types",
    "STOP_REASONS": "airflow_provider_worktree.core.runners.types",
    "Usage": "airflow_provider_worktree.core.runners.types",
    "batch_runner": "airflow_provider_worktree.core.runners.batch",
    "build_request": "airflow_provider_worktree.core.runners.batch",
    "check_mode": "airflow_provider_worktree.core.runners.batch",
    "cli_flags": "airflow_provider_worktree.core.runners.claude_code",
    "custom_id_for": "airflow_provider_worktree.core.runners.batch",
    "run_tool_uses": "airflow_provider_worktree.core.runners.turns",
    "split_parts": "airflow_provider_worktree.core.runners.batch",
    "upper_bound_tokens": "airflow_provider_worktree.core.runners.budget",
})
