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
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.ratelimit.headers import anthropic_observation, has_retry_after
from airflow_provider_worktree.core.ratelimit.limiter import LimitWaitTooLong, SpendCapReached, Ticket
from airflow_provider_worktree.core.runners.budget import (
    _TOOL_OVERHEAD_TOKENS,
    Budget,
    upper_bound_tokens,
)
from airflow_provider_worktree.core.runners.prices import PriceTable
from airflow_provider_worktree.core.runners.turns import _block_to_param, run_tool_uses
from airflow_provider_worktree.core.runners.types import (
    MAX_RETRY_AFTER_S,
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


def _has_retry_after(exc: BaseException) -> bool:
    """Whether the response names a wait at all (a value that is no number still means "wait", not "stop")."""
    return has_retry_after(getattr(getattr(exc, "response", None), "headers", None))


def _retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        value = float(ms) / 1000.0 if ms is not None else None
        if value is None:
            sec = headers.get("retry-after")
            value = float(sec) if sec is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
    if value is None or math.isnan(value):
        return None
    return max(0.0, value)  # a negative is "now"; inf or a day is the caller's to refuse (MAX_RETRY_AFTER_S)


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
        self._sent_bytes = 0  # request bytes already sent in this conversation (what the cache holds next call)
        self._est_ratio = 1.0  # actual / estimated input tokens, learnt over the run's calls

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

    # -- the shared limit ---------------------------------------------------------------------------------------
    def _need(self, request: dict[str, Any]) -> dict[str, float]:
        """What a call takes from the shared buckets before it is sent: one request, ``max_tokens`` of output (as
        the API estimates it) and the input the cache will not hold: the bytes added since the last call (the
        whole request on the first), at the conservative bytes-per-token, times the ratio the run's responses
        showed so far."""
        size = len(json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        new = max(0, size - self._sent_bytes) if self._sent_bytes else size
        estimate = math.ceil(new / _BYTES_PER_TOKEN_ESTIMATE * self._est_ratio) + 16
        return {"requests": 1, "input_tokens": estimate, "output_tokens": int(request["max_tokens"]),
                "_bytes": size}

    def _acquire(self, request: dict[str, Any], stats: dict[str, Any]) -> Ticket | None:
        if self.limiter is None:
            return None
        need = self._need(request)
        size = need.pop("_bytes")
        try:
            ticket = self.limiter.acquire(need)
        except SpendCapReached as exc:
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error", retryable=False) from None
        except LimitWaitTooLong as exc:
            if self._cancel.is_set():
                raise _Cancelled() from None
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error",
                                    retryable=True) from None
        ticket.size = size  # type: ignore[attr-defined]
        stats["wait_s"] = stats.get("wait_s", 0.0) + ticket.waited_s
        return ticket

    def _settle(self, ticket: Ticket | None, response: Any, headers: Any, request: dict[str, Any]) -> None:
        if ticket is None:
            return
        u = Usage.from_api(getattr(response, "usage", None), worst=lambda: self._worst_usage(request))
        charged = u.input_tokens + u.cache_write_tokens  # what the input-token limit counts: not cache reads
        estimate = ticket.need.get("input_tokens", 0.0)
        if estimate > 16 and charged > 0:
            ratio = charged / (estimate / self._est_ratio)
            self._est_ratio = min(4.0, max(0.25, 0.5 * self._est_ratio + 0.5 * ratio))
        self._sent_bytes = getattr(ticket, "size", 0)
        self.limiter.settle(ticket, {"requests": 1, "input_tokens": charged, "output_tokens": u.output_tokens},
                            anthropic_observation(headers) if headers is not None else None)

    def _send(self, request: dict[str, Any], raw: bool) -> tuple[Any, Any]:
        """Send one call; with the shared limiter, through the SDK's raw response to read its headers."""
        if raw:
            wrapped = self.client.messages.with_raw_response.create(**request)
            return wrapped.parse(), wrapped.headers
        return self.client.messages.create(**request), None

    def _create(self, request: dict[str, Any], stats: dict[str, Any]) -> Any:
        import anthropic  # the SDK is a dependency of the package; imported here to keep the module light

        attempt = 0
        raw = self.limiter is not None and hasattr(getattr(self.client, "messages", None), "with_raw_response")
        while True:
            if self._cancel.is_set():
                raise _Cancelled()
            ticket = self._acquire(request, stats)
            stats["requests"] += 1
            try:
                response, headers = self._send(request, raw)
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
                shared_wait = self._tell_limiter(ticket, exc, status)
                if status == 429:
                    stats["throttled"] = stats.get("throttled", 0) + 1
                self._retry_or_raise(exc, status, attempt, shared_wait)
                attempt += 1
                stats["retries"] += 1
                continue
            except BaseException:
                if ticket is not None:
                    self.limiter.release(ticket)
                raise
            self._settle(ticket, response, headers, request)
            return response

    def _tell_limiter(self, ticket: Ticket | None, exc: BaseException, status: int | None) -> float | None:
        """Share a failed call's news: a 429 blocks every worker (or, without a wait, stops them). Returns the
        shared block's seconds (None without the limiter: the runner waits on its own)."""
        if ticket is None:
            return None
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if status == 429 and not _has_retry_after(exc):
            self.limiter.spend_capped(ticket, str(getattr(exc, "message", exc))[:300])
            return None
        if status == 429:
            return self.limiter.throttled(ticket, anthropic_observation(headers, 429))
        self.limiter.release(ticket)
        return None

    def _retry_or_raise(self, exc: Any, status: int | None, attempt: int, shared_wait: float | None) -> None:
        """Raise :class:`ModelRequestError` when the failure is final, else sleep before the next attempt (with
        the shared limiter, a 429's wait is the next acquire's: every worker waits it out together)."""
        should = None
        if status is not None:
            header = exc.response.headers.get("x-should-retry")
            should = {"true": True, "false": False}.get((header or "").lower())
        retryable = status is None or status in (408, 409, 429) or status >= 500
        if should is not None:
            retryable = should
        if status == 429 and not _has_retry_after(exc):
            # A 429 that names no wait is the spend limit (or a hard quota): waiting does not help, and
            # neither does the task's retry.
            raise ModelRequestError(
                "the Messages API answered 429 without retry-after: the organisation's spend limit (or a "
                f"hard quota) is reached ({getattr(exc, 'message', exc)}). Waiting does not help: raise the "
                "limit in the Anthropic Console, then clear the failed tasks.",
                status_code=status, error_type="rate_limit_error", retryable=False,
            ) from None
        api_message = getattr(exc, "api_message", None) or getattr(exc, "message", str(exc))
        error_type = getattr(exc, "type", None) if status is not None else type(exc).__name__
        request_id = getattr(exc, "request_id", None) if status is not None else None
        what = f"HTTP {status}" if status else type(exc).__name__
        if not retryable:
            raise ModelRequestError(
                f"the Messages API refused the request (HTTP {status} {error_type}): {api_message}. "
                + _fix_hint(status),
                status_code=status, error_type=error_type, api_message=api_message, request_id=request_id,
            ) from None
        if attempt >= self.max_retries:
            raise ModelRequestError(
                f"the Messages API kept failing after {attempt + 1} attempts ({what}: {api_message}); "
                "it is transient (rate limit, overload or network): retry the task later or lower the "
                "parallelism.",
                status_code=status, error_type=error_type, api_message=api_message, request_id=request_id,
                retryable=True,
            ) from None
        told = _retry_after_seconds(exc)
        if told is not None and told > MAX_RETRY_AFTER_S:
            # Waiting that out would hold a worker slot for minutes (or forever, for inf): fail now as
            # retryable, so the task's own retry comes back later with the slot free meanwhile.
            raise ModelRequestError(
                f"the Messages API asks to wait {told:g}s before the next request ({what}: {api_message}), more "
                f"than the {MAX_RETRY_AFTER_S:g}s a runner waits inside a worker slot; failing now as retryable so "
                "the task's retry comes back later (raise retry_delay, or lower the parallelism).",
                status_code=status, error_type=error_type, api_message=api_message, request_id=request_id,
                retryable=True,
            ) from None
        if shared_wait is not None:
            delay = 0.0  # the shared block: the next acquire waits it out with every other worker
        elif told is not None:
            told = min(told, self.max_retry_wait)
            delay = told + random.uniform(0, 0.1 * max(told, 0.1))
        else:
            delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)
        self.log.warning("Messages API %s; retry %d/%d in %.2fs%s",
                         f"HTTP {status} {error_type}" if status else type(exc).__name__,
                         attempt + 1, self.max_retries, delay,
                         f" (the shared limit blocks every worker {shared_wait:.1f}s)" if shared_wait else "")
        self._sleep(delay)

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
        self._sent_bytes, self._est_ratio = 0, 1.0
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


def _fix_hint(status: int | None) -> str:
    return {
        400: "Fix the request parameters (model id, max_tokens, prompt size).",
        401: "Check the API key in the anthropic connection (its password field).",
        403: "The key lacks permission for this model or feature; check the workspace and key.",
        404: "Check the model id and the connection's base URL (host field).",
        413: "The prompt is too large; use smaller shards.",
    }.get(status or 0, "Check the request and the connection.")


