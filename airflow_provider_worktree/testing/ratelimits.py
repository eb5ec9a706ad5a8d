"""An organisation's rate limits, enforced by the offline server as the Messages API documents them (a TEST
DOUBLE of the API's limiter, for the throughput work; off by default).

- Requests, input tokens and output tokens per minute, each a bucket that refills continuously (the limit per
  minute, a sixtieth of it each second, up to the limit), not a window that resets at the minute.
- Input tokens count the uncached input and the cache writes; cache reads do not count (current models).
- Output tokens are estimated from the request's ``max_tokens`` when it starts and corrected to the tokens
  written when it ends.
- Every response of ``POST /v1/messages`` carries ``anthropic-ratelimit-{requests,input-tokens,output-tokens,
  tokens}-{limit,remaining,reset}`` (``reset``: RFC 3339, when the bucket is full again; ``tokens``: the most
  restrictive of input and output) for the limits that are set.
- A request that does not fit is answered ``429 rate_limit_error`` with ``retry-after`` (whole seconds until it
  fits) and takes nothing from the buckets.
- ``spend_cap=True``: every request is answered 429 without ``retry-after``, as when the organisation's spend
  limit is reached; waiting does not help, so no wait is offered.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow_provider_worktree.testing.errors import ApiError

__all__ = ["RateLimits", "OrgLimiter", "SPEND_CAP_MESSAGE"]

SPEND_CAP_MESSAGE = ("You have reached your specified API usage limits. You will regain access once the limit "
                     "resets or it is raised (offline test double).")


@dataclass(frozen=True)
class RateLimits:
    """The limits of an organisation; ``None`` is no limit."""

    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    spend_cap: bool = False

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name}={value!r}: give a whole number of at least 1, or None for no limit")

    @property
    def active(self) -> bool:
        return self.spend_cap or any(v is not None for v in (self.requests_per_minute, self.input_tokens_per_minute,
                                                             self.output_tokens_per_minute))


class _Bucket:
    """Continuously refilling: ``limit`` per minute, never above ``limit``."""

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.level = float(limit)
        self.at = now

    def refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + max(0.0, now - self.at) * self.limit / 60.0)
        self.at = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 when it does now)."""
        need = min(amount, self.limit) - self.level
        return 0.0 if need <= 0 else need * 60.0 / self.limit

    def full_in(self) -> float:
        return (self.limit - self.level) * 60.0 / self.limit


class OrgLimiter:
    """The buckets of one :class:`RateLimits`, shared by all the server's connections. Thread-safe.
    ``clock`` (monotonic seconds) and ``wall`` (epoch seconds, for the ``reset`` headers) are injectable."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock, self._wall = clock, wall
        now = clock()
        self._buckets = {name: _Bucket(limit, now) for name, limit in (
            ("requests", limits.requests_per_minute), ("input-tokens", limits.input_tokens_per_minute),
            ("output-tokens", limits.output_tokens_per_minute)) if limit is not None}
        self._lock = threading.Lock()
        self.rejected = 0           # requests answered 429 by the limiter
        self.admitted = 0

    def admit(self, input_tokens: int, max_tokens: int) -> tuple[dict[str, str], float]:
        """Take one request, its ``input_tokens`` and ``max_tokens`` (the output estimate) from the buckets, or
        raise the API's 429. Returns the rate-limit headers and the output reservation to :meth:`settle`."""
        if self.limits.spend_cap:
            with self._lock:
                self.rejected += 1
            raise ApiError(429, SPEND_CAP_MESSAGE, "rate_limit_error", {})
        need = {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": float(max_tokens)}
        with self._lock:
            now = self._clock()
            for bucket in self._buckets.values():
                bucket.refill(now)
            waits = {name: b.wait(need[name]) for name, b in self._buckets.items()}
            if any(w > 0 for w in waits.values()):
                self.rejected += 1
                worst = max(waits, key=lambda k: waits[k])
                headers = {**self._headers(), "retry-after": str(max(1, math.ceil(waits[worst])))}
                raise ApiError(429, f"This request would exceed your organization's rate limit of "
                                    f"{self._buckets[worst].limit} {worst.replace('-', ' ')} per minute "
                                    f"(offline test double). Wait, or lower the request rate.",
                               "rate_limit_error", headers)
            for name, bucket in self._buckets.items():
                bucket.level -= min(need[name], bucket.limit)
            self.admitted += 1
            reserved = min(need["output-tokens"], self._buckets["output-tokens"].limit) \
                if "output-tokens" in self._buckets else 0.0
            return self._headers(), reserved

    def settle(self, reserved_output: float, output_tokens: int) -> dict[str, str]:
        """Correct the output estimate to the tokens written; the headers after it."""
        with self._lock:
            bucket = self._buckets.get("output-tokens")
            if bucket is not None:
                bucket.refill(self._clock())
                bucket.level = min(float(bucket.limit), bucket.level + reserved_output - output_tokens)
            return self._headers()

    def _headers(self) -> dict[str, str]:
        wall = self._wall()
        out: dict[str, str] = {}

        def add(name: str, bucket: _Bucket) -> None:
            reset = datetime.fromtimestamp(wall + bucket.full_in(), timezone.utc).replace(microsecond=0)
            out[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
            out[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, math.floor(bucket.level)))
            out[f"anthropic-ratelimit-{name}-reset"] = reset.isoformat().replace("+00:00", "Z")

        for name, bucket in self._buckets.items():
            add(name, bucket)
        tokens = [b for n, b in self._buckets.items() if n != "requests"]
        if tokens:
            add("tokens", min(tokens, key=lambda b: b.level))
        return out
