"""A shard's spending cap (:class:`Budget`) and the pessimistic prompt-size bound it is checked with.

Before every model call a runner checks the call's worst case (its whole prompt priced as a cache write, plus
its ``max_tokens`` of output) against what is left. Imports the runners' types and prices.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners.prices import PriceTable
from airflow_provider_worktree.core.runners.types import Usage

# The tool definitions' server-side overhead, added to any size estimate of a request.
_TOOL_OVERHEAD_TOKENS = 1000
# Far below the cap the runner skips count_tokens when the call fits even at this pessimistic size.
_UPPER_BOUND_BYTES_PER_TOKEN = 2


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

    def dollar_cap(self, model: str | None = None) -> tuple[float | None, str]:
        """The budget as one dollar cap, for a runner that can enforce only dollars (the Claude Code CLI's
        ``--max-budget-usd``): the most the token caps can cost at ``model``'s prices (every prompt token at its
        dearest kind, every output token at the output price), or ``max_cost_usd`` if that is lower.

        Returns ``(cap, how)``; ``how`` says in one line what the cap was derived from. Raises
        :class:`ConfigurationError` when a token cap bounds only one side and no dollar cap is given (no dollar
        figure follows from it)."""
        p = self.prices.price(model)
        per_in, per_out = max(p.input, p.cache_write, p.cache_read) / 1e6, p.output / 1e6
        caps_in = [c for c in (self.max_input_tokens, self.max_total_tokens) if c is not None]
        caps_out = [c for c in (self.max_output_tokens, self.max_total_tokens) if c is not None]
        bounds: list[float] = []
        if caps_in and caps_out:
            bounds.append(min(caps_in) * per_in + min(caps_out) * per_out)
        if self.max_total_tokens is not None:
            bounds.append(self.max_total_tokens * max(per_in, per_out))
        named = ", ".join(f"{n}={v}" for n, v in (("max_input_tokens", self.max_input_tokens),
                                                  ("max_output_tokens", self.max_output_tokens),
                                                  ("max_total_tokens", self.max_total_tokens)) if v is not None)
        if named and not bounds and self.max_cost_usd is None:
            raise ConfigurationError(f"{named} bounds only one side of the spend, so no dollar cap follows from it "
                                     "for a runner that enforces dollars only: add the other token cap or "
                                     "budget['max_cost_usd'].")
        from_tokens = round(min(bounds), 6) if bounds else None
        if from_tokens is not None and (self.max_cost_usd is None or from_tokens < self.max_cost_usd):
            return from_tokens, (f"${from_tokens:g} from {named} at the prices of {model or 'an unknown model'} "
                                 f"(${p.input:g}/${p.output:g} per MTok in/out)")
        if self.max_cost_usd is not None:
            return float(self.max_cost_usd), f"max_cost_usd=${self.max_cost_usd:g}"
        return None, "no cap"

    def to_dict(self) -> dict[str, Any]:
        return {"max_input_tokens": self.max_input_tokens, "max_output_tokens": self.max_output_tokens,
                "max_total_tokens": self.max_total_tokens, "max_cost_usd": self.max_cost_usd,
                "spent": self.spent.to_dict(), "spent_usd": round(self.spent_usd, 6)}


def upper_bound_tokens(request: Mapping[str, Any]) -> int:
    """A bound on a request's prompt tokens that no tokenizer exceeds in practice (2 bytes of request JSON per
    token, plus the tool definitions' overhead): a call that fits the budget at this size needs no counting."""
    raw = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return math.ceil(len(raw) / _UPPER_BOUND_BYTES_PER_TOKEN) + _TOOL_OVERHEAD_TOKENS


