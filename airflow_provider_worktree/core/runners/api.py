"""The Messages API agent loop (:class:`ApiRunner`); Claude Code headless is in ``claude_code.py``.

Both take a worktree and a shard prompt and return a :class:`RunResult` (stop reason, turns, token usage,
cost, files written, final text). Neither imports Airflow; the operator builds the SDK client from the
``anthropic_default`` connection with ``AnthropicHook(...).get_conn()`` and hands it to :class:`ApiRunner`.

Budgets are caps (:class:`Budget`): before every model call the runner checks that the call's worst case
(its whole prompt, priced as a cache write, plus its ``max_tokens`` of output) fits in what is left. It may
shrink ``max_tokens`` down to a floor to fit; if even that does not fit, the call is not sent and the run
stops with ``stop_reason="budget"``.

Prompt size: while even a pessimistic bound (2 bytes of request JSON per token) fits what is left, no counting
is needed; near the cap it is counted with ``client.messages.count_tokens`` (free, first-party API, but a
round trip). Where that endpoint is
missing (Bedrock, Vertex, a proxy) or fails, a conservative estimate is used: UTF-8 bytes of the request's
JSON divided by 3, plus 1,000 tokens for the tool definitions' server-side overhead. Real text is about
3.5-4.5 bytes per token, so the estimate overcounts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners.budget import (
    _TOOL_OVERHEAD_TOKENS,
    Budget,
    upper_bound_tokens,
)
from airflow_provider_worktree.core.runners.calllimit import CallLimit
from airflow_provider_worktree.core.runners.prices import PriceTable
from airflow_provider_worktree.core.runners.retries import retry_delay
from airflow_provider_worktree.core.runners.turns import _block_to_param, run_tool_uses
from airflow_provider_worktree.core.runners.types import (
    ModelRequestError,
    RunResult,
    Usage,
)
from airflow_provider_worktree.core.sandbox import (
    CommandTool,
    TextEditorTool,
    ToolResult,
)

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful software maintainer working inside one git worktree of a repository. "
    "Use the str_replace_based_edit_tool to view and edit files; paths are relative to the repository root "
    "(for example 'src/module.py'; the root is '.'). Absolute paths, '..', and .git are refused. "
    "Edit only the files of your shard, keep the code valid, make the smallest change that does the job, "
    "and finish with a short summary of what you changed."
)

# Conservative fallback for prompt size when count_tokens is unavailable (see module docstring).
_BYTES_PER_TOKEN_ESTIMATE = 3
# count_tokens is an estimate of the billed count; leave a small margin on top of it.
_COUNT_MARGIN = 1.02
_COUNT_PAD = 8


class _Cancelled(Exception):
    pass


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if hasattr(exc, "response") else None


class ApiRunner:
    """The Messages API agent loop with worktree-confined tools.

    :param client: an ``anthropic.Anthropic`` (or Bedrock/Vertex) client, e.g. ``AnthropicHook().get_conn()``.
        The runner does its own retries, so it uses ``client.with_options(max_retries=0)``.
    :param model: model id.
    :param system_prompt: the stable system prompt (cached); :meth:`run` may override it per shard.
    :param conventions: repository conventions appended to the system prompt (cached with it).
    :param max_turns: model calls at most per run.
    :param max_tokens: ``max_tokens`` of each call (shrunk to fit the budget, not below ``max_tokens_floor``).
    :param budget: a :class:`Budget` cap; a fresh copy of its limits is used per run.
    :param allow_commands: argv prefixes for the ``run_command`` tool; ``None``/empty: no command tool.
    :param command_timeout: seconds per command.
    :param max_retries: retries of one call on 429/529/5xx/connection errors (so ``max_retries + 1`` attempts).
    :param allowed_write: optional predicate on repository-relative paths the editor may write (shard scope).
    :param limiter: a :class:`~airflow_provider_worktree.core.ratelimit.SharedLimiter` shared by every worker:
        each call reserves its estimated input tokens, ``max_tokens`` of output and one request first, and
        settles with the response's usage and ``anthropic-ratelimit-*`` headers; a 429 blocks every worker.
    """

    def __init__(self, client: Any, model: str, *, system_prompt: str | None = None, conventions: str = "",
                 max_turns: int = 20, max_tokens: int = 4096, budget: Budget | None = None,
                 allow_commands: Iterable[Sequence[str] | str] | None = None, command_timeout: float = 300,
                 max_retries: int = 5, logger: logging.Logger | None = None,
                 allowed_write: Callable[[str], bool] | None = None, max_tokens_floor: int = 256,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, max_retry_wait: float = 120.0,
                 count_tokens: bool = True, isolation: str = "auto", hide: Sequence[str] = (),
                 limiter: Any = None) -> None:
        if not model:
            raise ConfigurationError("model is empty: pass a model id such as 'claude-sonnet-4-5', or set "
                                     "extra['model'] on the anthropic connection.")
        if max_turns < 1 or max_tokens < 1:
            raise ConfigurationError(f"max_turns={max_turns} and max_tokens={max_tokens} must both be >= 1.")
        self.client = client.with_options(max_retries=0) if hasattr(client, "with_options") else client
        self.model = model
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.conventions = conventions or ""
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.budget = budget
        self.allow_commands = [c for c in (allow_commands or [])] or None
        self.command_timeout = command_timeout
        self.max_retries = max(0, int(max_retries))
        self.log = logger or logging.getLogger(__name__)
        self.allowed_write = allowed_write
        self.max_tokens_floor = max_tokens_floor
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_wait = max_retry_wait
        self._use_count_tokens = count_tokens
        self.isolation = isolation  # how the command tool's commands run (core/box.py)
        self.hide = tuple(hide)
        self._cancel = threading.Event()
        self._command_tool: CommandTool | None = None
        self.limiter = limiter
        self._limit: CallLimit | None = None

    # -- control ---------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run: checked before each call and during retry waits; kills a running command. Thread-safe."""
        self._cancel.set()
        if self.limiter is not None:
            self.limiter.cancel()
        tool = self._command_tool
        if tool is not None:
            tool.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- request pieces -------------------------------------------------------------------------------------------
    def _system_blocks(self, system_prompt: str | None) -> list[dict[str, Any]]:
        blocks = [{"type": "text", "text": system_prompt or self.system_prompt}]
        if self.conventions.strip():
            blocks.append({"type": "text", "text": "Repository conventions:\n" + self.conventions})
        blocks[-1]["cache_control"] = {"type": "ephemeral"}
        return blocks

    @staticmethod
    def _with_rolling_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy of the conversation with a cache breakpoint on the last block (conversation caching)."""
        out = [dict(m) for m in messages]
        last = out[-1]
        content = last["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        content = [dict(b) for b in content]
        content[-1]["cache_control"] = {"type": "ephemeral"}
        last["content"] = content
        return out

    def _estimate_tokens(self, request: dict[str, Any]) -> int:
        raw = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return math.ceil(len(raw) / _BYTES_PER_TOKEN_ESTIMATE) + _TOOL_OVERHEAD_TOKENS

    def _worst_usage(self, request: dict[str, Any]) -> Usage:
        """The most a call can have cost: its prompt's upper bound in each prompt field, its max_tokens out."""
        prompt = upper_bound_tokens(request)
        return Usage(prompt, int(request["max_tokens"]), prompt, prompt)

    def _count_prompt(self, request: dict[str, Any]) -> int:
        if self._use_count_tokens and hasattr(getattr(self.client, "messages", None), "count_tokens"):
            try:
                counted = self.client.messages.count_tokens(
                    model=request["model"], system=request["system"], tools=request["tools"],
                    messages=request["messages"],
                ).input_tokens
                return int(math.ceil(counted * _COUNT_MARGIN)) + _COUNT_PAD
            except Exception as exc:  # noqa: BLE001 - counting is best effort; fall back to the estimate
                status = _status_of(exc)
                if status in (400, 401, 403, 404, 405, 501):
                    self._use_count_tokens = False
                self.log.info("count_tokens unavailable (%s); using a conservative size estimate",
                              type(exc).__name__ if status is None else f"HTTP {status}")
        return self._estimate_tokens(request)

    def _sleep(self, seconds: float) -> None:
        if self._cancel.wait(timeout=max(0.0, seconds)):
            raise _Cancelled()

    def _create(self, request: dict[str, Any], stats: dict[str, Any]) -> Any:
        import anthropic  # the SDK is a dependency of the package; imported here to keep the module light

        attempt, limit = 0, self._limit
        raw = limit is not None and hasattr(getattr(self.client, "messages", None), "with_raw_response")
        while True:
            if self._cancel.is_set():
                raise _Cancelled()
            try:
                ticket = limit.acquire(request) if limit is not None else None
            except ModelRequestError:
                if self._cancel.is_set():  # the wait was cut short by cancel()
                    raise _Cancelled() from None
                raise
            if ticket is not None:
                stats["wait_s"] += ticket.waited_s
            stats["requests"] += 1
            try:
                if raw:  # the SDK's raw response, for the rate-limit headers
                    wrapped = self.client.messages.with_raw_response.create(**request)
                    response, headers = wrapped.parse(), wrapped.headers
                else:
                    response, headers = self.client.messages.create(**request), None
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
                stats["throttled"] += status == 429
                shared_wait = limit.failed(ticket, exc, status) if ticket is not None else None
                delay = retry_delay(exc, status, attempt, shared_wait, max_retries=self.max_retries,
                                    max_retry_wait=self.max_retry_wait, backoff_base=self.backoff_base,
                                    backoff_max=self.backoff_max)
                attempt += 1
                stats["retries"] += 1
                self.log.warning("Messages API %s; retry %d/%d in %.2fs%s",
                                 f"HTTP {status} {getattr(exc, 'type', '')}" if status else type(exc).__name__,
                                 attempt, self.max_retries, delay,
                                 f" (the shared limit blocks every worker {shared_wait:.1f}s)" if shared_wait else "")
                self._sleep(delay)
                continue
            except BaseException:
                if ticket is not None:
                    self.limiter.release(ticket)
                raise
            if ticket is not None:
                limit.settle(ticket, response, headers, lambda: self._worst_usage(request))
            return response

    # -- the loop ---------------------------------------------------------------------------------------------------
    def run(self, worktree_path: str | os.PathLike[str], shard_prompt: str,
            system_prompt: str | None = None) -> RunResult:
        """Run the agent loop on one worktree. Raises :class:`ModelRequestError` (with ``.result``) when the API
        refuses a request or stays unavailable; every other ending is a :class:`RunResult`."""
        started = time.monotonic()
        editor = TextEditorTool(worktree_path, allowed_write=self.allowed_write)
        cmd = (CommandTool(worktree_path, self.allow_commands, self.command_timeout, isolation=self.isolation,
                           hide=self.hide) if self.allow_commands else None)
        self._command_tool = cmd
        if self._cancel.is_set() and cmd is not None:
            cmd.cancel()
        tools: list[dict[str, Any]] = [editor.definition()] + ([cmd.definition()] if cmd else [])
        tools[-1] = {**tools[-1], "cache_control": {"type": "ephemeral"}}
        system = self._system_blocks(system_prompt)
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": shard_prompt}]}]
        budget = None
        if self.budget is not None and not self.budget.unlimited:
            budget = Budget(self.budget.max_input_tokens, self.budget.max_output_tokens, self.budget.max_total_tokens,
                            self.budget.max_cost_usd, self.budget.prices)
        prices = self.budget.prices if self.budget is not None else PriceTable()
        usage = Usage()
        stats: dict[str, Any] = {"requests": 0, "retries": 0, "throttled": 0, "wait_s": 0.0}
        self._limit = CallLimit(self.limiter) if self.limiter is not None else None
        turns = 0
        final_text = ""
        handlers: dict[str, Callable[[object], ToolResult]] = {editor.name: editor.execute}
        if cmd is not None:
            handlers[cmd.name] = cmd.execute

        def result(stop: str, error: str | None = None) -> RunResult:
            return RunResult(stop_reason=stop, turns=turns, usage=usage, cost_usd=round(prices.cost(usage, self.model), 6),
                             files_written=editor.files_written, final_text=final_text, error=error, model=self.model,
                             requests=stats["requests"], retries=stats["retries"],
                             throttled=stats["throttled"], wait_s=round(stats["wait_s"], 3),
                             duration_s=round(time.monotonic() - started, 3))

        try:
            while True:
                if self._cancel.is_set():
                    return result("cancelled", "the run was cancelled")
                if turns >= self.max_turns:
                    return result("max_turns", f"stopped after max_turns={self.max_turns} model calls")
                request: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "system": system,
                                           "tools": tools, "messages": self._with_rolling_breakpoint(messages)}
                if budget is not None:
                    # A cheap upper bound first; count_tokens (one more round trip) only near the cap.
                    fitted, reason = budget.fit_max_tokens(upper_bound_tokens(request), self.max_tokens,
                                                           self.max_tokens_floor, self.model)
                    if fitted != self.max_tokens:
                        fitted, reason = budget.fit_max_tokens(self._count_prompt(request), self.max_tokens,
                                                               self.max_tokens_floor, self.model)
                    if fitted is None:
                        self.log.info("budget reached before turn %d: %s; the call is not sent", turns + 1, reason)
                        return result("budget", reason)
                    if fitted != self.max_tokens:
                        self.log.info("max_tokens shrunk to %d to fit the budget", fitted)
                    request["max_tokens"] = fitted
                if self._cancel.is_set():
                    return result("cancelled", "the run was cancelled")
                response = self._create(request, stats)
                turns += 1
                call_usage = Usage.from_api(getattr(response, "usage", None),
                                            worst=lambda: self._worst_usage(request))
                usage.add(call_usage)
                if budget is not None:
                    budget.record(call_usage, self.model)
                stop = getattr(response, "stop_reason", None)
                converted = [_block_to_param(b) for b in (getattr(response, "content", None) or [])]
                content = [c for c, _ in converted]
                raw_inputs = {id(c): raw for c, raw in converted}
                texts = [b.get("text", "") for b in content if b.get("type") == "text"]
                if texts:
                    final_text = "\n".join(t for t in texts if t)
                self.log.info("turn %d: stop_reason=%s in=%d out=%d cache_read=%d cache_write=%d", turns, stop,
                              call_usage.input_tokens, call_usage.output_tokens, call_usage.cache_read_tokens,
                              call_usage.cache_write_tokens)
                if not content:
                    content = [{"type": "text", "text": "(no content)"}]
                messages.append({"role": "assistant", "content": content})
                results = run_tool_uses(content, handlers, self._cancel.is_set, self.log,
                                        lambda block: raw_inputs.get(id(block), block.get("input")))
                if results:
                    messages.append({"role": "user", "content": results})
                    continue
                if stop in ("end_turn", "stop_sequence"):
                    return result("end_turn")
                if stop in ("max_tokens", "pause_turn", "model_context_window_exceeded"):
                    if stop == "model_context_window_exceeded":
                        return result("error", "the conversation no longer fits the model's context window")
                    messages.append({"role": "user", "content": [{"type": "text", "text": (
                        "Your reply was cut off by the output limit. Continue, in smaller steps."
                        if stop == "max_tokens" else "Continue.")}]})
                    continue
                if stop == "refusal":
                    return result("error", "the model refused the request")
                return result("error", f"unexpected stop_reason {stop!r} from the Messages API")
        except _Cancelled:
            return result("cancelled", "the run was cancelled")
        except ModelRequestError as exc:
            exc.result = result("error", str(exc))
            raise
        finally:
            self._command_tool = None
