"""Claude runners: the Messages API agent loop (:class:`ApiRunner`); Claude Code headless is in ``core/claude_code.py``.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError
from airflow_provider_worktree.core.sandbox import CommandTool, TextEditorTool, ToolResult

STOP_REASONS = ("end_turn", "max_turns", "budget", "error", "cancelled")

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful software maintainer working inside one git worktree of a repository. "
    "Use the str_replace_based_edit_tool to view and edit files; paths are relative to the repository root "
    "(for example 'src/module.py'; the root is '.'). Absolute paths, '..', and .git are refused. "
    "Edit only the files of your shard, keep the code valid, make the smallest change that does the job, "
    "and finish with a short summary of what you changed."
)

# Conservative fallback for prompt size when count_tokens is unavailable (see module docstring).
_BYTES_PER_TOKEN_ESTIMATE = 3
_TOOL_OVERHEAD_TOKENS = 1000
# Far below the cap the runner skips count_tokens when the call fits even at this pessimistic size.
_UPPER_BOUND_BYTES_PER_TOKEN = 2
# count_tokens is an estimate of the billed count; leave a small margin on top of it.
_COUNT_MARGIN = 1.02
_COUNT_PAD = 8


class ModelRequestError(WorktreeProviderError):
    """A Messages API call failed for good: a request error (4xx), or retries ran out (429/529/5xx/network).

    ``status_code``, ``error_type`` and ``api_message`` come from the API's error body; ``retryable`` says the
    failure was transient (retries exhausted) so an Airflow retry later may succeed. ``result`` is the
    partial :class:`RunResult` (usage so far, files written) so nothing spent is lost from the accounts.
    """

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None,
                 api_message: str | None = None, request_id: str | None = None, retryable: bool = False,
                 result: RunResult | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.api_message = api_message
        self.request_id = request_id
        self.retryable = retryable
        self.result = result


# ---------------------------------------------------------------------------------------------------------------
# Usage, prices, budget
# ---------------------------------------------------------------------------------------------------------------
#: A token count above this in one response is absurd (no model has such a context): it counts at the worst case.
MAX_USAGE_TOKENS = 10_000_000
#: Longest wait a ``retry-after`` header can impose (seconds); inf, nan, negative or a day are clamped to it.
MAX_RETRY_AFTER_S = 60.0


def _token_count(value: Any) -> int | None:
    """A reported token count as a sane int; None (count the worst case) when it is negative, not a finite
    number or absurd. Absent or null is 0 (cache fields are often missing)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or number > MAX_USAGE_TOKENS or number < 0:
        return None
    return math.ceil(number)


@dataclass
class Usage:
    """Token counts of one call or a sum of calls. ``input_tokens`` excludes cache reads and writes (as the API)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_api(cls, usage: Any, worst: Usage | Callable[[], Usage] | None = None) -> Usage:
        """From an SDK ``Usage`` object or its dict (``cache_*_input_tokens`` may be absent or null).

        Counts reported by a server (or a proxy) are untrusted: one that is negative, not a finite number or
        absurd (over :data:`MAX_USAGE_TOKENS`) counts at the call's worst case, ``worst``
        (its prompt's upper bound, its ``max_tokens``; a callable is asked only when needed), or at
        :data:`MAX_USAGE_TOKENS` without one, so a budget is never passed on a bad count."""
        if usage is None:
            return cls()
        get = usage.get if isinstance(usage, Mapping) else (lambda k, d=None: getattr(usage, k, d))
        keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        counts: list[int | None] = [_token_count(get(k, 0)) for k in keys]
        if None in counts:
            bound = worst() if callable(worst) else worst
            fallback = (astuple(bound) if bound is not None else (MAX_USAGE_TOKENS,) * 4)
            counts = [fallback[i] if c is None else c for i, c in enumerate(counts)]
        return cls(*counts)  # type: ignore[arg-type]

    @property
    def prompt_tokens(self) -> int:
        """All input tokens: uncached + cache reads + cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def add(self, other: Usage) -> Usage:
        """Add ``other`` into this one (in place) and return self."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        return self

    def __add__(self, other: Usage) -> Usage:
        return Usage(**asdict(self)).add(other)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(cls, value: Any) -> ModelPrice:
        """From a ModelPrice, a mapping with input/output[/cache_write/cache_read], or a 2- or 4-sequence."""
        if isinstance(value, ModelPrice):
            return value
        if isinstance(value, Mapping):
            try:
                inp, out = float(value["input"]), float(value["output"])
            except (KeyError, TypeError, ValueError):
                raise ConfigurationError(f"price {dict(value)!r} needs numeric 'input' and 'output' $/MTok "
                                         "(and optionally 'cache_write', 'cache_read').") from None
            return cls(inp, out, float(value.get("cache_write", inp * 1.25)), float(value.get("cache_read", inp * 0.1)))
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 4):
            nums = [float(v) for v in value]
            return cls(*nums) if len(nums) == 4 else cls(nums[0], nums[1], nums[0] * 1.25, nums[0] * 0.1)
        raise ConfigurationError(f"price {value!r} is not understood: give {{'input': 3, 'output': 15}} in $/MTok.")


def _p(inp: float, out: float) -> ModelPrice:
    return ModelPrice(inp, out, round(inp * 1.25, 4), round(inp * 0.1, 4))


#: List prices in $/MTok (5-minute cache writes at 1.25x input, cache reads at 0.1x input). Keys are model-id
#: prefixes; the longest matching prefix wins. Check https://www.anthropic.com/pricing and override as needed.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-2025": _p(15.0, 75.0),  # Claude Opus 4 (claude-opus-4-20250514)
    "claude-opus-4-0": _p(15.0, 75.0),
    "claude-opus-4-1": _p(15.0, 75.0),
    "claude-opus-4": _p(5.0, 25.0),  # Opus 4.5 and later
    "claude-sonnet-4": _p(3.0, 15.0),
    "claude-3-7-sonnet": _p(3.0, 15.0),
    "claude-3-5-sonnet": _p(3.0, 15.0),
    "claude-haiku-4": _p(1.0, 5.0),
    "claude-3-5-haiku": _p(0.8, 4.0),
    "claude-3-haiku": _p(0.25, 1.25),
    "claude-3-opus": _p(15.0, 75.0),
}
#: For unknown models (newer families included): the most expensive list price above, so a budget never
#: under-counts. Set real prices with ``PriceTable({"model-prefix": {"input": .., "output": ..}})``.
DEFAULT_PRICE = _p(15.0, 75.0)
#: The Message Batches API bills every token kind (input, output, cache writes and reads) at this share of the
#: list price. Override per table with ``PriceTable(batch_factor=...)``.
BATCH_FACTOR = 0.5


class PriceTable:
    """Per-model prices in $/MTok, user-settable.

    ``PriceTable({"my-model": {"input": 3, "output": 15}}, default=None, include_defaults=True)``; entries are
    model-id prefixes (longest match wins), merged over :data:`DEFAULT_PRICES`. Models matching nothing use
    ``default`` (the most expensive list price unless given). :meth:`for_batch` is the table at Message Batches
    prices (``batch_factor``, :data:`BATCH_FACTOR` of list price).
    """

    def __init__(self, prices: Mapping[str, Any] | None = None, *, default: Any = None,
                 include_defaults: bool = True, batch_factor: float = BATCH_FACTOR) -> None:
        self.prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES) if include_defaults else {}
        for model, price in (prices or {}).items():
            self.prices[str(model)] = ModelPrice.of(price)
        self.default = ModelPrice.of(default) if default is not None else DEFAULT_PRICE
        if not isinstance(batch_factor, (int, float)) or isinstance(batch_factor, bool) or not 0 < batch_factor <= 1:
            raise ConfigurationError(f"batch_factor={batch_factor!r} must be a number in (0, 1] (the Message Batches "
                                     "API's share of the list price, 0.5).")
        self.batch_factor = float(batch_factor)

    def for_batch(self) -> PriceTable:
        """The same table at Message Batches prices (every price times :attr:`batch_factor`)."""
        def scaled(p: ModelPrice) -> ModelPrice:
            f = self.batch_factor
            return ModelPrice(p.input * f, p.output * f, p.cache_write * f, p.cache_read * f)

        table = PriceTable({k: scaled(v) for k, v in self.prices.items()}, default=scaled(self.default),
                           include_defaults=False, batch_factor=1.0)
        return table

    def set(self, model: str, *, input: float, output: float, cache_write: float | None = None,
            cache_read: float | None = None) -> None:
        self.prices[model] = ModelPrice(input, output, input * 1.25 if cache_write is None else cache_write,
                                        input * 0.1 if cache_read is None else cache_read)

    def price(self, model: str | None) -> ModelPrice:
        if model:
            if model in self.prices:
                return self.prices[model]
            matches = [k for k in self.prices if model.startswith(k)]
            if matches:
                return self.prices[max(matches, key=len)]
        return self.default

    def cost(self, usage: Usage, model: str | None) -> float:
        p = self.price(model)
        return (usage.input_tokens * p.input + usage.output_tokens * p.output
                + usage.cache_write_tokens * p.cache_write + usage.cache_read_tokens * p.cache_read) / 1_000_000


class Budget:
    """A hard cap on one shard's spend. ``None`` limits are unlimited.

    ``max_input_tokens`` counts every prompt token (uncached, cache reads and cache writes);
    ``max_total_tokens`` is input plus output; ``max_cost_usd`` uses ``prices``. Call :meth:`record` after each
    call and :meth:`check_call` (or :meth:`fit_max_tokens`) before the next.
    """

    def __init__(self, max_input_tokens: int | None = None, max_output_tokens: int | None = None,
                 max_total_tokens: int | None = None, max_cost_usd: float | None = None,
                 prices: PriceTable | None = None) -> None:
        for name, value in (("max_input_tokens", max_input_tokens), ("max_output_tokens", max_output_tokens),
                            ("max_total_tokens", max_total_tokens), ("max_cost_usd", max_cost_usd)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ConfigurationError(f"{name}={value!r} must be a non-negative number or None (unlimited).")
        self.max_input_tokens = max_input_tokens
        self.max_output_tokens = max_output_tokens
        self.max_total_tokens = max_total_tokens
        self.max_cost_usd = max_cost_usd
        self.prices = prices if prices is not None else PriceTable()
        self.spent = Usage()
        self.spent_usd = 0.0
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return all(v is None for v in (self.max_input_tokens, self.max_output_tokens, self.max_total_tokens,
                                       self.max_cost_usd))

    def less(self, spent: Usage, spent_usd: float) -> Budget:
        """The budget left after ``spent`` (earlier attempts of the same shard): every cap reduced by it, never
        below 0, so a shard's attempts together stay within the caps."""
        def left(cap: int | float | None, used: int | float) -> int | float | None:
            return None if cap is None else max(0, cap - max(0, used))

        return Budget(left(self.max_input_tokens, spent.prompt_tokens), left(self.max_output_tokens, spent.output_tokens),
                      left(self.max_total_tokens, spent.total_tokens), left(self.max_cost_usd, spent_usd), self.prices)

    def record(self, usage: Usage, model: str | None = None) -> None:
        with self._lock:
            self.spent.add(usage)
            self.spent_usd += self.prices.cost(usage, model)

    def max_output_allowed(self, prompt_tokens: int, model: str | None = None) -> tuple[int | None, str | None]:
        """The largest ``max_tokens`` a call with this prompt may ask for: ``(n, None)``, ``(None, None)`` when
        unlimited, or ``(None, reason)`` when even the prompt alone does not fit."""
        with self._lock:
            spent, spent_usd = Usage(**self.spent.to_dict()), self.spent_usd
        limits: list[int] = []
        if self.max_input_tokens is not None and spent.prompt_tokens + prompt_tokens > self.max_input_tokens:
            return None, (f"input token budget: {spent.prompt_tokens} spent + {prompt_tokens} for the next prompt "
                          f"> max_input_tokens={self.max_input_tokens}")
        if self.max_output_tokens is not None:
            limits.append(self.max_output_tokens - spent.output_tokens)
        if self.max_total_tokens is not None:
            left = self.max_total_tokens - spent.total_tokens - prompt_tokens
            if left < 0:
                return None, (f"total token budget: {spent.total_tokens} spent + {prompt_tokens} for the next "
                              f"prompt > max_total_tokens={self.max_total_tokens}")
            limits.append(left)
        if self.max_cost_usd is not None:
            p = self.prices.price(model)
            left_usd = self.max_cost_usd - spent_usd - prompt_tokens * p.cache_write / 1_000_000
            if left_usd < 0:
                return None, (f"cost budget: ${spent_usd:.4f} spent + the next prompt > max_cost_usd="
                              f"${self.max_cost_usd}")
            limits.append(int(math.floor(left_usd * 1_000_000 / p.output)) if p.output > 0 else 10**9)
        if not limits:
            return None, None
        return max(0, min(limits)), None

    def check_call(self, prompt_tokens_estimate: int, max_tokens: int, model: str | None = None) -> str | None:
        """``None`` if the call's worst case fits in what is left, else the reason it does not."""
        allowed, reason = self.max_output_allowed(prompt_tokens_estimate, model)
        if reason:
            return reason
        if allowed is not None and max_tokens > allowed:
            return (f"the call's worst case ({prompt_tokens_estimate} prompt + {max_tokens} output tokens) does not "
                    f"fit in what is left of the budget (at most {allowed} output tokens)")
        return None

    def fit_max_tokens(self, prompt_tokens: int, max_tokens: int, floor: int,
                       model: str | None = None) -> tuple[int | None, str | None]:
        """``(max_tokens to use, None)`` — shrunk to fit if needed but not below ``floor`` — or ``(None, reason)``."""
        allowed, reason = self.max_output_allowed(prompt_tokens, model)
        if reason:
            return None, reason
        if allowed is None or allowed >= max_tokens:
            return max_tokens, None
        if allowed >= min(floor, max_tokens):
            return allowed, None
        return None, (f"budget left allows only {allowed} output tokens for a {prompt_tokens}-token prompt, under the "
                      f"floor of {min(floor, max_tokens)}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_input_tokens": self.max_input_tokens, "max_output_tokens": self.max_output_tokens,
                "max_total_tokens": self.max_total_tokens, "max_cost_usd": self.max_cost_usd,
                "spent": self.spent.to_dict(), "spent_usd": round(self.spent_usd, 6)}


@dataclass
class RunResult:
    """The outcome of one runner run. ``stop_reason`` is one of :data:`STOP_REASONS`."""

    stop_reason: str
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    files_written: list[str] = field(default_factory=list)
    final_text: str = ""
    error: str | None = None
    model: str | None = None
    requests: int = 0  # HTTP attempts to messages.create, retries included
    retries: int = 0
    session_id: str | None = None  # Claude Code only
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.to_dict()
        return d


# ---------------------------------------------------------------------------------------------------------------
# Messages API agent loop
# ---------------------------------------------------------------------------------------------------------------
class _Cancelled(Exception):
    pass


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if hasattr(exc, "response") else None


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
    return min(max(0.0, value), MAX_RETRY_AFTER_S)  # inf, a day, a negative: clamped


def _block_to_param(block: Any) -> tuple[dict[str, Any], Any]:
    """An SDK response content block as a request param (dict) for replay, and the tool input as received.

    A tool input that is not a JSON object is replaced by ``{}`` in the replayed conversation (the API only
    accepts objects there); the tool itself gets the input as received and answers with a tool error.
    """
    if isinstance(block, Mapping):
        data = dict(block)
    elif hasattr(block, "to_dict"):
        data = block.to_dict(mode="json", warnings=False)
    else:
        data = block.model_dump(mode="json", exclude_none=True, warnings=False)
    data = {k: v for k, v in data.items() if v is not None}
    raw_input = data.get("input")
    if data.get("type") == "tool_use" and not isinstance(raw_input, dict):
        data["input"] = {}
    return data, raw_input


def run_tool_uses(content: Sequence[Mapping[str, Any]], handlers: Mapping[str, Callable[[object], ToolResult]],
                  cancelled: Callable[[], bool], log: logging.Logger,
                  raw_input: Callable[[Mapping[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Run the ``tool_use`` blocks of one model reply, in order, through ``handlers`` (tool name -> the tool's
    ``execute``) and return their ``tool_result`` blocks. An unknown tool, a cancelled run or a refused call is
    a tool error, never an exception. The agent loop sends the results back; batch mode applies one reply this
    way (``core.batch``), so both confine and scope-check the model's edits with the same tools."""
    results = []
    for block in content:
        if block.get("type") != "tool_use":
            continue
        handler = handlers.get(block.get("name"))
        if handler is None:
            res = ToolResult(f"Error: unknown tool {block.get('name')!r}; available: {', '.join(handlers)}.",
                             is_error=True)
        elif cancelled():
            res = ToolResult("Error: the run was cancelled.", is_error=True)
        else:
            res = handler(raw_input(block) if raw_input is not None else block.get("input"))
        if res.is_error:
            log.info("tool %s refused: %s", block.get("name"), res.content[:300])
        results.append(res.to_block(str(block.get("id"))))
    return results


def upper_bound_tokens(request: Mapping[str, Any]) -> int:
    """A bound on a request's prompt tokens that no tokenizer exceeds in practice (2 bytes of request JSON per
    token, plus the tool definitions' overhead): a call that fits the budget at this size needs no counting."""
    raw = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return math.ceil(len(raw) / _UPPER_BOUND_BYTES_PER_TOKEN) + _TOOL_OVERHEAD_TOKENS


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
    """

    def __init__(self, client: Any, model: str, *, system_prompt: str | None = None, conventions: str = "",
                 max_turns: int = 20, max_tokens: int = 4096, budget: Budget | None = None,
                 allow_commands: Iterable[Sequence[str] | str] | None = None, command_timeout: float = 300,
                 max_retries: int = 5, logger: logging.Logger | None = None,
                 allowed_write: Callable[[str], bool] | None = None, max_tokens_floor: int = 256,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, max_retry_wait: float = 120.0,
                 count_tokens: bool = True, isolation: str = "auto", hide: Sequence[str] = ()) -> None:
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

    # -- control ---------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run: checked before each call and during retry waits; kills a running command. Thread-safe."""
        self._cancel.set()
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

    def _create(self, request: dict[str, Any], stats: dict[str, int]) -> Any:
        import anthropic  # the SDK is a dependency of the package; imported here to keep the module light

        attempt = 0
        while True:
            if self._cancel.is_set():
                raise _Cancelled()
            stats["requests"] += 1
            try:
                return self.client.messages.create(**request)
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
                should = None
                if status is not None:
                    header = exc.response.headers.get("x-should-retry")
                    should = {"true": True, "false": False}.get((header or "").lower())
                retryable = status is None or status in (408, 409, 429) or status >= 500
                if should is not None:
                    retryable = should
                api_message = getattr(exc, "api_message", None) or getattr(exc, "message", str(exc))
                error_type = getattr(exc, "type", None) if status is not None else type(exc).__name__
                request_id = getattr(exc, "request_id", None) if status is not None else None
                if not retryable:
                    raise ModelRequestError(
                        f"the Messages API refused the request (HTTP {status} {error_type}): {api_message}. "
                        + _fix_hint(status),
                        status_code=status, error_type=error_type, api_message=api_message, request_id=request_id,
                    ) from None
                if attempt >= self.max_retries:
                    raise ModelRequestError(
                        f"the Messages API kept failing after {attempt + 1} attempts "
                        f"({'HTTP ' + str(status) if status else type(exc).__name__}: {api_message}); "
                        "it is transient (rate limit, overload or network): retry the task later or lower the "
                        "parallelism.",
                        status_code=status, error_type=error_type, api_message=api_message, request_id=request_id,
                        retryable=True,
                    ) from None
                told = _retry_after_seconds(exc)
                if told is not None:
                    told = min(told, self.max_retry_wait)
                    delay = told + random.uniform(0, 0.1 * max(told, 0.1))
                else:
                    delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                stats["retries"] += 1
                self.log.warning("Messages API %s; retry %d/%d in %.2fs",
                                 f"HTTP {status} {error_type}" if status else type(exc).__name__,
                                 attempt, self.max_retries, delay)
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
        stats = {"requests": 0, "retries": 0}
        turns = 0
        final_text = ""
        handlers: dict[str, Callable[[object], ToolResult]] = {editor.name: editor.execute}
        if cmd is not None:
            handlers[cmd.name] = cmd.execute

        def result(stop: str, error: str | None = None) -> RunResult:
            return RunResult(stop_reason=stop, turns=turns, usage=usage, cost_usd=round(prices.cost(usage, self.model), 6),
                             files_written=editor.files_written, final_text=final_text, error=error, model=self.model,
                             requests=stats["requests"], retries=stats["retries"],
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


# ---------------------------------------------------------------------------------------------------------------
# Claude Code headless: moved to core/claude_code.py; the names stay importable from here (resolved on first use,
# since claude_code imports this module).
_MOVED_TO_CLAUDE_CODE = ("ClaudeCodeNotFoundError", "ClaudeCodeRunner", "INSTALL_HINT", "_parse_json_result",
                         "_git_changed_files")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_CLAUDE_CODE:
        from airflow_provider_worktree.core.runners import claude_code

        return getattr(claude_code, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
