"""ClaudeMaintenanceOperator: one shard through claim, worktree, Claude, verify, commit, record, clean up.

A thin face over :func:`airflow_provider_worktree.core.lifecycle.run_shard`: this module turns the
operator's parameters and Airflow connections into the core objects and the result into XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.lifecycle import ShardConfig, ShardFailed, run_shard
from airflow_provider_worktree.core.runners import FALLBACKS, batch_runner, check_mode
from airflow_provider_worktree.core.sandbox.box import validate_isolation
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
from airflow_provider_worktree.operators.limits import build_limiter, wait_or_defer
from airflow_provider_worktree.operators.options import (
    BUDGET_DEFAULTS,
    RUNNER_DEFAULTS,
    InvalidMaintenanceConfig,
    checked_budget,
    checked_runner_options,
    grouped,
    is_templated,
    price_table,
    shard_budget,
    templated_number,
)
from airflow_provider_worktree.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

RUNNERS = ("api", "claude_code")


class ClaudeMaintenanceOperator(BaseOperator):
    """Have Claude perform a maintenance task on one shard of a repository, in its own git worktree.

    Map it over the planner's shards with ``.partial(...).expand(shard=...)``. The task claims the shard
    in the shard status database (skipping it when already completed, so a rerun resumes), creates a
    worktree on the shard's branch, runs Claude with tools confined to the worktree under a hard token
    budget, verifies the result, commits, records it and removes the worktree (uncommitted work is saved
    on a salvage branch first). A failed shard raises: a transient failure (lease lost, database, git or
    network trouble) so Airflow's retries apply; a permanent one (metric not improved, scope violation,
    budget spent, the API refused the request, bad configuration) as ``AirflowFailException``, without retry.
    The token budget is the shard's across all its tries.

    :param shard: the shard dict from ``ShardPlanOperator`` or ``plan_shards`` (``shard_id``, ``task``, ``files``).
    :param task_name: maintenance task from the catalog (``todo``, ``docstrings``, ``lint``, ``tests``,
        ``custom``); defaults to the shard's own ``task``.
    :param prompt: instructions for the ``custom`` task (or extra instructions for any task).
    :param repo: repository path or URL; overrides the ``git_worktree`` connection's host.
    :param git_worktree_conn_id: connection of type ``git_worktree`` (optional when ``repo`` is given).
    :param worktree_root: where worktrees are created; overrides the connection.
    :param runner: ``api`` (Messages API agent loop) or ``claude_code`` (``claude -p``).
    :param runner_options: ``model`` (default: the Anthropic connection's ``extra.model``), ``heartbeat_interval``
        (seconds between lease heartbeats, default 30), ``lease_timeout`` (seconds without a heartbeat after
        which a retry on another host may take the shard over; default: the store's 600 s; a retry on the same
        host takes over a dead holder's lease at once) and ``rate_limit`` (``"shared"``, the default, ``"off"``
        or a mapping of limits per minute: docs/rate-limits.md). Templated.
    :param budget: the shard's caps, across all its tries: ``max_turns`` (model turns, default 20),
        ``max_tokens`` (of each model call, default 4096), ``max_input_tokens`` (cache reads and writes
        included), ``max_output_tokens``, ``max_total_tokens``, ``max_cost_usd`` (priced with ``prices``:
        ``{model: {"input": $/MTok, "output": ..., "cache_write": ..., "cache_read": ...}}`` overrides). Templated.
    :param allow_commands: argv prefixes the model may run in the worktree (e.g. ``[["pytest"]]``);
        ``None`` offers no command tool.
    :param verify_command: command run in the worktree after Claude's edits; non-zero fails the shard.
    :param verify_timeout: seconds before the verify command is killed.
    :param base_ref: ref the shard branch starts from.
    :param commit: commit the result to the shard branch.
    :param push: push the shard branch to the repository's ``origin``.
    :param sparse: sparse-checkout only the shard's files; default: only when there is no verify command.
    :param task_options: options of the maintenance task (e.g. ``{"lint_command": ["ruff", "check"]}``).
    :param anthropic_conn_id: the official Anthropic provider's connection.
    :param shard_status_conn_id: shard status database connection; when it does not exist, the embedded
        SQLite file ``$AIRFLOW_HOME/shard_status.db``; ``None`` turns tracking off.
    :param isolation: how code the model wrote or the repository holds runs (verify, commands, the Claude Code
        CLI): ``auto`` (bubblewrap when it works here, else an allowlisted environment with limits and a
        WARNING), ``bwrap`` (required) or ``none``. Recorded on the shard and in the report.
    :param max_active_shards: at most this many shards of the run work at once (a slot semaphore in the
        shard database; templated, so a DAG Param sets it at trigger time). ``None``: no limit.
    :param mode: ``interactive`` (the runner works on the shard now) or ``batch``: apply the shard's reply from
        the run's Message Batch, submitted and collected by ``ClaudeBatchSubmitOperator`` upstream (templated, so a
        DAG Param chooses). The worktree starts at the commit the batch prompt was read from.
    :param batch_fallback: in batch mode, what a shard whose entry errored, expired or was canceled does:
        ``interactive`` (run the agent loop instead) or ``fail`` (fail with the entry's reason). A shard too large
        for one batch prompt always runs interactively.
    :param claude_code_options: keyword arguments for the ``claude_code`` runner (``allowed_tools``, ``timeout``,
        ``executable``, ``pass_env``, ``env``, ``permission_mode``); it gets ``budget["max_cost_usd"]`` as its
        dollar cap and ``allow_commands`` as its only shell commands. Token caps do not apply to it (the CLI has a
        dollar cap only).

    Deprecated, for one minor release: the flat keywords ``model``, ``heartbeat_interval``, ``lease_timeout``
    (now in ``runner_options``) and ``max_turns``, ``max_tokens``, ``max_input_tokens``, ``max_output_tokens``,
    ``max_total_tokens``, ``max_cost_usd``, ``prices`` (now in ``budget``) work as before and warn.
    """

    template_fields: Sequence[str] = (
        "shard", "task_name", "prompt", "repo", "worktree_root", "runner", "runner_options", "budget",
        "verify_command", "base_ref", "push", "isolation", "max_active_shards", "mode",
    )
    template_fields_renderers = {"shard": "json", "prompt": "md", "runner_options": "json", "budget": "json"}
    ui_color = "#e8d5f5"

    def __init__(
        self,
        *,
        shard: dict | Any,
        task_name: str | None = None,
        prompt: str | None = None,
        repo: str | None = None,
        git_worktree_conn_id: str = GitWorktreeHook.default_conn_name,
        worktree_root: str | None = None,
        runner: str = "api",
        runner_options: dict | str | None = None,
        budget: dict | str | None = None,
        allow_commands: list[list[str]] | None = None,
        verify_command: str | list[str] | None = None,
        verify_timeout: float = 900.0,
        base_ref: str = "HEAD",
        commit: bool = True,
        push: bool = False,
        sparse: bool | None = None,
        task_options: dict | None = None,
        anthropic_conn_id: str = "anthropic_default",
        shard_status_conn_id: str | None = ShardStatusHook.default_conn_name,
        claude_code_options: dict | None = None,
        isolation: str = "auto",
        max_active_shards: int | str | None = None,
        mode: str = "interactive",
        batch_fallback: str = "interactive",
        # deprecated: runner_options
        model: str | None = None,
        heartbeat_interval: float | None = None,
        lease_timeout: float | None = None,
        # deprecated: budget
        max_turns: int | None = None,
        max_tokens: int | None = None,
        max_input_tokens: int | None = None,
        max_output_tokens: int | None = None,
        max_total_tokens: int | None = None,
        max_cost_usd: float | None = None,
        prices: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.runner_options = grouped("runner_options", runner_options, RUNNER_DEFAULTS, {
            "model": model, "heartbeat_interval": heartbeat_interval, "lease_timeout": lease_timeout}, name)
        self.budget = grouped("budget", budget, BUDGET_DEFAULTS, {
            "max_turns": max_turns, "max_tokens": max_tokens, "max_input_tokens": max_input_tokens,
            "max_output_tokens": max_output_tokens, "max_total_tokens": max_total_tokens,
            "max_cost_usd": max_cost_usd, "prices": prices}, name)
        if not is_templated(self.runner_options):
            checked_runner_options(self.runner_options)
        self.shard = shard
        self.task_name = task_name
        self.prompt = prompt
        self.repo = repo
        self.git_worktree_conn_id = git_worktree_conn_id
        self.worktree_root = worktree_root
        self.runner = runner
        self.allow_commands = allow_commands
        self.verify_command = verify_command
        self.verify_timeout = verify_timeout
        self.base_ref = base_ref
        self.commit = commit
        self.push = push
        self.sparse = sparse
        self.task_options = task_options or {}
        self.anthropic_conn_id = anthropic_conn_id
        self.shard_status_conn_id = shard_status_conn_id
        self.claude_code_options = claude_code_options or {}
        if not is_templated(isolation):
            validate_isolation(isolation)
        self.isolation = isolation
        self.max_active_shards = max_active_shards
        self.mode = mode
        self.batch_fallback = batch_fallback
        self._active_runner: Any = None
        self._limiter: Any = None

    def _check_rendered(self) -> None:
        """Validate what templating produced (Params arrive here, not in ``__init__``)."""
        if self.runner not in RUNNERS:
            raise ConfigurationError(f"runner={self.runner!r} is not one of {RUNNERS}: use 'api' or 'claude_code'.")
        self.runner_options = checked_runner_options(self.runner_options)
        self.budget = checked_budget(self.budget)
        if self.budget["max_turns"] is None:
            raise ConfigurationError("max_turns must be set (a positive integer).")
        self.mode = check_mode(self.mode)
        if self.batch_fallback not in FALLBACKS:
            raise ConfigurationError(f"batch_fallback={self.batch_fallback!r} is not one of {FALLBACKS}: "
                                     "'interactive' runs a shard whose batch entry failed in the agent loop, "
                                     "'fail' fails it with the entry's reason.")
        if self.mode == "batch" and self.runner != "api":
            raise ConfigurationError("mode='batch' applies a Messages API reply: use runner='api' with it.")
        if isinstance(self.push, str):
            self.push = self.push.strip().lower() in ("1", "true", "yes")
        self.verify_command = self.verify_command or None
        self.isolation = validate_isolation(self.isolation)
        limit = self.max_active_shards
        self.max_active_shards = None if limit in (0, "0") else templated_number("max_active_shards", limit)

    def _validated_shard(self) -> dict:
        shard = self.shard
        if not isinstance(shard, dict) or not shard.get("shard_id") or not isinstance(shard.get("files"), list):
            raise ConfigurationError(
                f"shard must be a dict with 'shard_id' and a 'files' list (from plan_shards), got {shard!r:.200}."
            )
        return shard

    def execute_after_rate_limit(self, context: Context, event: Any = None) -> dict:
        """Resumed after a deferral for the shared rate limit: start over (the limit is checked again)."""
        return self.execute(context)

    def _build_runner(self, allowed_write: Any = None) -> Any:
        """The runner, with the Anthropic connection's key and base URL (never on a command line)."""
        from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

        from airflow_provider_worktree.core.runners import ApiRunner, ClaudeCodeRunner, SessionLimitedRunner

        budget, model = self.budget, self.runner_options["model"]
        hook = AnthropicHook(conn_id=self.anthropic_conn_id)
        if self.runner == "claude_code":
            # The CLI enforces dollars only (--max-budget-usd): the token caps become the dollars they can cost.
            cap, how = shard_budget(budget).dollar_cap(model or hook.default_model)
            if cap != budget["max_cost_usd"]:
                self.log.info("runner='claude_code' enforces a dollar cap, not token caps: %s", how)
            conn = hook.get_connection(self.anthropic_conn_id)
            options = {"max_budget_usd": cap, "allow_commands": self.allow_commands,
                       "isolation": self.isolation, **self.claude_code_options}
            runner = ClaudeCodeRunner(
                model=model, max_turns=budget["max_turns"], api_key=conn.password or None,
                base_url=conn.host or None, prices=price_table(budget), logger=self.log, **options,
            )
            return SessionLimitedRunner(runner, self._limiter) if self._limiter is not None else runner
        return ApiRunner(
            hook.get_conn(),
            model or hook.default_model,
            max_turns=budget["max_turns"],
            max_tokens=budget["max_tokens"],
            budget=shard_budget(budget),
            allow_commands=self.allow_commands,
            allowed_write=allowed_write,
            logger=self.log,
            isolation=self.isolation,
            limiter=self._limiter,
        )

    def execute(self, context: Context) -> dict:
        try:
            return self._execute(context)
        except ShardFailed as exc:
            if exc.permanent:
                raise AirflowFailException(f"shard failed permanently, not retried: {exc}") from exc
            raise
        except ConfigurationError as exc:
            raise InvalidMaintenanceConfig(f"configuration error, not retried: {exc}") from exc

    def _execute(self, context: Context) -> dict:
        self._check_rendered()
        shard = self._validated_shard()
        name = self.task_name or shard.get("task") or "custom"
        options = dict(self.task_options)
        if name == "custom":  # the custom task's prompt is its instructions; other tasks get it as extra
            options.setdefault("prompt", self.prompt)
        task = get_task(name, **options)
        extra_prompt = None if name == "custom" else self.prompt
        git_hook = GitWorktreeHook(
            git_worktree_conn_id=self.git_worktree_conn_id, repo=self.repo, worktree_root=self.worktree_root
        )
        store = (
            ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id,
                            stale_after_s=self.runner_options["lease_timeout"]).get_store()
            if self.shard_status_conn_id is not None
            else None
        )
        self._limiter = build_limiter(self.runner_options.get("rate_limit"), store, context["run_id"],
                                      self.anthropic_conn_id, self.log)
        if self.mode != "batch":
            wait_or_defer(self, self._limiter, "session" if self.runner == "claude_code" else "call")
        base_ref = self.base_ref
        if self.mode == "batch":
            plan = batch_runner(store, context["run_id"], shard["shard_id"], fallback=self.batch_fallback,
                                interactive=lambda: self._build_runner(allowed_write=task.allowed_paths(shard)),
                                allowed_write=task.allowed_paths(shard), logger=self.log)
            self._active_runner, base_ref = plan.runner, plan.base_ref or base_ref
            self.log.info("shard %s, batch mode: %s", shard["shard_id"], plan.note)
        else:
            self._active_runner = self._build_runner(allowed_write=task.allowed_paths(shard))
        result = self._run(shard, task, git_hook, store, extra_prompt, context, base_ref)
        self.log.info(
            "shard %s %s: branch=%s commit=%s tokens in/out=%s/%s cost=$%.4f",
            result.shard_id, result.status, result.branch, result.commit_sha,
            result.input_tokens, result.output_tokens, result.cost_usd,
        )
        return result.to_dict()

    def _run(self, shard: dict, task: Any, git_hook: GitWorktreeHook, store: Any, extra_prompt: str | None,
             context: Context, base_ref: str) -> Any:
        return run_shard(
            shard,
            context["run_id"],
            task=task,
            manager=git_hook.get_manager(),
            runner=self._active_runner,
            store=store,
            config=ShardConfig(
                base_ref=base_ref,
                verify_command=self.verify_command,
                verify_timeout=self.verify_timeout,
                commit=self.commit,
                push=self.push,
                sparse=self.sparse,
                heartbeat_interval=self.runner_options["heartbeat_interval"],
                custom_prompt=extra_prompt,
                isolation=self.isolation,
                max_active_shards=self.max_active_shards,
            ),
            logger=self.log,
        )

    def on_kill(self) -> None:
        """Stop the model loop or the Claude Code process; the lifecycle's finally block cleans up."""
        if self._active_runner is not None:
            self._active_runner.cancel()
