"""The api runner's side of the shared rate limit (:class:`CallLimit`): what a call is estimated to take, its
reservation before it is sent, its settlement with the response's usage and headers, a 429 told to every worker.

The estimate: one request, ``max_tokens`` of output (as the API itself estimates output when a call starts) and
the input the prompt cache will not hold: the bytes the request grew by since the conversation's previous call
(the whole request on its first), at the conservative 3 bytes per token, times the ratio of charged to estimated
input the run's responses showed so far (never below 1). The settlement charges what the input limit counts (uncached input and
cache writes; cache reads are free on current models) and gives the estimate back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from airflow_provider_worktree.core.ratelimit.headers import anthropic_observation, has_retry_after
from airflow_provider_worktree.core.ratelimit.limiter import LimitWaitTooLong, SpendCapReached, Ticket
from airflow_provider_worktree.core.runners.types import ModelRequestError, Usage

_BYTES_PER_TOKEN = 3
_PAD = 16


class CallLimit:
    """One run's calls under a :class:`~airflow_provider_worktree.core.ratelimit.SharedLimiter`."""

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.sent_bytes = 0  # request bytes already sent in this conversation (what the cache holds next call)
        self.ratio = 1.0  # charged / estimated input tokens, learnt over the run's calls

    def need(self, request: dict[str, Any]) -> tuple[dict[str, float], int]:
        size = len(json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        new = max(0, size - self.sent_bytes) if self.sent_bytes else size
        estimate = math.ceil(new / _BYTES_PER_TOKEN * self.ratio) + _PAD
        return {"requests": 1, "input_tokens": estimate, "output_tokens": int(request["max_tokens"])}, size

    def acquire(self, request: dict[str, Any]) -> Ticket:
        """Reserve the call's estimate, waiting as the shared state says; the limiter's refusals become
        :class:`ModelRequestError` (the spend cap permanent, a wait too long for a worker slot retryable)."""
        need, size = self.need(request)
        try:
            ticket = self.limiter.acquire(need)
        except SpendCapReached as exc:
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error", retryable=False) from None
        except LimitWaitTooLong as exc:
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error",
                                    retryable=True) from None
        ticket.size = size  # type: ignore[attr-defined]
        return ticket

    def settle(self, ticket: Ticket, response: Any, headers: Any, worst: Callable[[], Usage]) -> None:
        u = Usage.from_api(getattr(response, "usage", None), worst=worst)
        charged = u.input_tokens + u.cache_write_tokens
        estimate = ticket.need.get("input_tokens", 0.0)
        if estimate > _PAD and charged > 0:
            seen = charged / ((estimate - _PAD) / self.ratio)
            # Only upwards: an estimate over the charge is given back at settlement, one under it is a 429. (The
            # first call overshoots whenever the system prompt was cached by another shard; learning that would
            # shrink the estimate of the next, uncached, tool result.)
            self.ratio = min(4.0, max(1.0, 0.5 * self.ratio + 0.5 * seen))
        self.sent_bytes = getattr(ticket, "size", 0)
        self.limiter.settle(ticket, {"requests": 1, "input_tokens": charged, "output_tokens": u.output_tokens},
                            anthropic_observation(headers) if headers is not None else None)

    def failed(self, ticket: Ticket, exc: BaseException, status: int | None) -> float | None:
        """Share a failed call's news: a 429 with a wait blocks every worker (returns the block's seconds), one
        without stops them (the spend cap); any other failure gives the reservation back."""
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if status == 429 and not has_retry_after(headers):
            self.limiter.spend_capped(ticket, str(getattr(exc, "message", exc))[:300])
            return None
        if status == 429:
            return self.limiter.throttled(ticket, anthropic_observation(headers, 429))
        self.limiter.release(ticket)
        return None
