"""ClaudeBatchSubmitOperator: submit every shard of a run as one Message Batch, wait (deferred), collect.

A thin face over :class:`airflow_provider_worktree.core.runners.batch.BatchCoordinator`. Place it between the planner
(``ShardPlanOperator``) and ``ClaudeMaintenanceOperator.partial(mode="batch").expand(...)``: the shards' tasks then
apply each shard's reply with the shard's lease, verify, commit and record as usual.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners import DEFAULT_MAX_PROMPT_BYTES, BatchCoordinator, check_mode
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
from airflow_provider_worktree.operators.options import (
    BUDGET_DEFAULTS,
    InvalidMaintenanceConfig,
    checked_budget,
    grouped,
    price_table,
    shard_budget,
    templated_number,
)
from airflow_provider_worktree.version_compat import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context

#: A batch request's budget: one reply holds every edit of the shard, so ``max_tokens`` is larger, and
#: ``max_turns`` (accepted, so that one budget mapping serves both operators) does not apply.
BATCH_BUDGET_DEFAULTS = {**BUDGET_DEFAULTS, "max_tokens": 8192}


class ClaudeBatchSubmitOperator(BaseOperator):
    """Submit the run's shards as Message Batches (half the price of interactive calls), wait, collect.

    Each shard becomes one request: its files (read from the base commit) are in the prompt, and the model
    answers with all its edits in one reply. A shard too large for ``max_prompt_bytes`` is left to the interactive
    runner; one whose worst case (at batch prices) does not fit the shard budget is not sent. The batch ids are
    recorded in the shard database as soon as the API returns them, so a retried task, a killed worker or a
    restarted triggerer resumes the same batches and nothing is paid twice. The task then defers on
    :class:`~airflow_provider_worktree.triggers.batch.ClaudeBatchTrigger` (polling with backoff) and, when the
    batches ended, stores every result with its shard. Returns the run's batch state (XCom): batch ids, entry
    counts, shards left to the interactive runner, the batch cost.

    With ``mode="interactive"`` (a DAG Param can choose) it does nothing and returns ``{"mode": "interactive"}``.

    :param shards: the planner's shards (``shard_id``, ``task``, ``files``), or its per-shard keyword arguments
        for ``expand_kwargs`` (``{"shard": ..., "task_options": ...}``).
    :param mode: ``batch`` or ``interactive`` (templated).
    :param task_name, task_options, prompt, repo, git_worktree_conn_id, worktree_root, base_ref,
        anthropic_conn_id, shard_status_conn_id: as for ``ClaudeMaintenanceOperator``.
    :param model: Claude model id; default: the Anthropic connection's ``extra.model``.
    :param budget: as for ``ClaudeMaintenanceOperator`` (per shard, checked per request at batch prices before
        anything is sent); its ``max_tokens`` is each request's (default 8192: one reply holds every edit of the
        shard), ``max_turns`` does not apply. Templated.
    :param max_prompt_bytes: a shard whose request is larger runs interactively.
    :param deferrable: wait in the triggerer (default) or poll in the worker.
    :param poll_interval: first wait between polls, seconds; each later wait is 1.5 times longer.
    :param max_poll_interval: longest wait between polls.
    :param timeout: seconds to wait for the batches (the API expires unfinished entries after 24 h); on timeout
        the task fails and a retry resumes the same batches.

    Deprecated, for one minor release: the flat keywords ``max_tokens``, ``max_input_tokens``,
    ``max_output_tokens``, ``max_total_tokens``, ``max_cost_usd`` and ``prices`` (now in ``budget``).
    """

    template_fields: Sequence[str] = (
        "shards", "mode", "task_name", "prompt", "repo", "worktree_root", "base_ref", "model", "budget",
        "poll_interval",
    )
    template_fields_renderers = {"shards": "json", "prompt": "md", "budget": "json"}
    ui_color = "#f5e6d5"

    def __init__(self, *, shards: list[dict] | Any, mode: str = "batch", task_name: str | None = None,
                 task_options: dict | None = None, prompt: str | None = None, repo: str | None = None,
                 git_worktree_conn_id: str = GitWorktreeHook.default_conn_name, worktree_root: str | None = None,
                 base_ref: str = "HEAD", model: str | None = None, budget: dict | str | None = None,
                 max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES, anthropic_conn_id: str = "anthropic_default",
                 shard_status_conn_id: str | None = ShardStatusHook.default_conn_name, deferrable: bool = True,
                 poll_interval: float = 30.0, max_poll_interval: float = 600.0, timeout: float = 25 * 3600.0,
                 # deprecated: budget
                 max_tokens: int | None = None, max_input_tokens: int | None = None,
                 max_output_tokens: int | None = None, max_total_tokens: int | None = None,
                 max_cost_usd: float | None = None, prices: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = grouped("budget", budget, BATCH_BUDGET_DEFAULTS, {
            "max_tokens": max_tokens, "max_input_tokens": max_input_tokens, "max_output_tokens": max_output_tokens,
            "max_total_tokens": max_total_tokens, "max_cost_usd": max_cost_usd, "prices": prices},
            type(self).__name__)
        self.shards, self.mode, self.task_name, self.task_options = shards, mode, task_name, task_options or {}
        self.prompt, self.repo, self.git_worktree_conn_id = prompt, repo, git_worktree_conn_id
        self.worktree_root, self.base_ref, self.model = worktree_root, base_ref, model
        self.max_prompt_bytes, self.anthropic_conn_id = max_prompt_bytes, anthropic_conn_id
        self.shard_status_conn_id, self.deferrable = shard_status_conn_id, deferrable
        self.poll_interval, self.max_poll_interval, self.timeout = poll_interval, max_poll_interval, timeout

    def _coordinator(self, context: Context) -> BatchCoordinator:
        from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

        self.budget = checked_budget(self.budget, BATCH_BUDGET_DEFAULTS)
        self.poll_interval = templated_number("poll_interval", self.poll_interval, float) or 30.0
        if self.poll_interval <= 0 or self.max_poll_interval < self.poll_interval:
            raise ConfigurationError(f"poll_interval={self.poll_interval} must be > 0 and max_poll_interval="
                                     f"{self.max_poll_interval} at least as long.")
        if self.shard_status_conn_id is None:
            raise ConfigurationError("batch mode needs the shard status database (it records the batch ids and "
                                     "results): set shard_status_conn_id.")
        store = ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id).get_store()
        hook = AnthropicHook(conn_id=self.anthropic_conn_id)
        return BatchCoordinator(store, hook.get_conn(), context["run_id"], model=self.model or hook.default_model,
                                max_tokens=self.budget["max_tokens"], budget=shard_budget(self.budget),
                                prices=price_table(self.budget), max_prompt_bytes=self.max_prompt_bytes,
                                logger=self.log)

    def execute(self, context: Context) -> dict:
        try:
            mode = check_mode(self.mode)
        except ConfigurationError as exc:
            raise InvalidMaintenanceConfig(str(exc)) from exc
        if mode != "batch":
            self.log.info("mode is %r: nothing to submit", mode)
            return {"mode": mode}
        shards, options = self._shards()
        try:
            coordinator = self._coordinator(context)
            task = None
            if self.task_name:
                options = {**options, **self.task_options}
                if self.task_name == "custom":
                    options.setdefault("prompt", self.prompt)
                task = get_task(self.task_name, **options)
            manager = GitWorktreeHook(git_worktree_conn_id=self.git_worktree_conn_id, repo=self.repo,
                                      worktree_root=self.worktree_root).get_manager()
            extra = None if self.task_name == "custom" else self.prompt
            coordinator.submit(shards, manager=manager, task=task, base_ref=self.base_ref, custom_prompt=extra)
            state = coordinator.collect()
        except ConfigurationError as exc:
            raise InvalidMaintenanceConfig(f"configuration error, not retried: {exc}") from exc
        if state["collected"]:
            return self._done(state)
        if not self.deferrable:
            return self._done(coordinator.wait(poll_interval=self.poll_interval,
                                               max_poll_interval=self.max_poll_interval, timeout=self.timeout))
        from airflow_provider_worktree.triggers.batch import ClaudeBatchTrigger

        pending = coordinator.batch_ids(pending_only=True)
        self.log.info("deferring while batch(es) %s run", ", ".join(pending))
        self.defer(trigger=ClaudeBatchTrigger(pending, conn_id=self.anthropic_conn_id,
                                              poll_interval=self.poll_interval,
                                              max_poll_interval=self.max_poll_interval,
                                              end_time=time.time() + self.timeout),
                   method_name="execute_complete")
        return {}  # not reached: defer raises

    def _shards(self) -> tuple[list[dict], dict]:
        """The shards, from a list of shard dicts or of the plan's per-shard keyword arguments (``{"shard": ...,
        "task_options": ...}``, as given to ``expand_kwargs``), and the task options found there."""
        items = list(self.shards) if isinstance(self.shards, (list, tuple)) else None
        if items and all(isinstance(i, dict) and isinstance(i.get("shard"), dict) for i in items):
            return [i["shard"] for i in items], dict(items[0].get("task_options") or {})
        if items is None or not all(isinstance(s, dict) and s.get("shard_id") for s in items):
            raise InvalidMaintenanceConfig(f"shards must be the planner's list of shards (or its per-shard keyword "
                                           f"arguments), got {self.shards!r:.200}")
        return items, {}

    def execute_complete(self, context: Context, event: dict | None = None) -> dict:
        event = event or {}
        if event.get("status") != "success":
            raise AirflowException(f"waiting for the batches failed ({event.get('status')}): {event.get('message')}; "
                                   "the batches keep running, and a retry of this task resumes them")
        return self._done(self._coordinator(context).collect())

    def _done(self, state: dict) -> dict:
        self.log.info("batch mode of run %s: batches %s, entries %s, batch cost $%.4f; interactive: %s",
                      state["run_id"], ", ".join(state["batch_ids"]) or "-", state["entries"], state["cost_usd"],
                      ", ".join(state["interactive"]) or "none")
        if not state["collected"]:
            raise AirflowException(f"the batches of run {state['run_id']} have not all ended: {state['parts']}")
        return {"mode": "batch", **state}
