"""What one response says about the rate limits, parsed defensively (the headers come from a server or a proxy
nobody here controls: a value that is missing, malformed, negative or absurd is ignored and named).

Messages API (https://docs.anthropic.com/en/api/rate-limits): ``anthropic-ratelimit-{requests,input-tokens,
output-tokens}-{limit,remaining,reset}`` (``reset`` RFC 3339), ``retry-after`` (seconds) on a 429; a 429 without
``retry-after`` is the spend limit. GitHub (REST "rate limits" and "best practices"): ``x-ratelimit-{limit,
remaining,reset}`` (``reset`` epoch seconds) for the primary limit; ``retry-after`` on a secondary-limit 403/429,
and where it is absent with ``x-ratelimit-remaining: 0``, wait until ``x-ratelimit-reset``, else at least a minute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A limit above this (per minute) is not believed (no tier comes near); the header is ignored.
MAX_BELIEVABLE_LIMIT = 1e10
#: The longest block one response may impose on every worker (seconds): a retry-after or reset further away
#: is cut to this, so one bogus header cannot stop a fleet for a day; a longer real block is met again.
MAX_BLOCK_S = 600.0
#: GitHub's advice for a secondary limit that names no wait: at least a minute.
GITHUB_DEFAULT_WAIT_S = 60.0

_ANTHROPIC = {"requests": "requests", "input_tokens": "input-tokens", "output_tokens": "output-tokens"}


@dataclass(frozen=True)
class Observation:
    """One response's word on the limits: per bucket the ``limit`` and ``remaining``; ``block_s`` (seconds every
    worker should wait: a 429's ``retry-after``, a spent primary limit's reset); ``spend_cap`` (a 429 that names no
    wait: stop); ``problems`` (headers ignored, for the log)."""

    limits: Mapping[str, float] = field(default_factory=dict)
    remaining: Mapping[str, float] = field(default_factory=dict)
    block_s: float | None = None
    spend_cap: bool = False
    problems: tuple[str, ...] = ()


def _get(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except Exception:  # noqa: BLE001 - a headers object of some client we do not know
        return None
    return None if value is None else str(value).strip()


def _number(headers: Any, name: str, problems: list[str], *, allow_zero: bool = True) -> float | None:
    raw = _get(headers, name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}: {raw[:40]!r} is not a number")
        return None
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{name}: {raw[:40]!r} is not a usable value")
        return None
    if value > MAX_BELIEVABLE_LIMIT:
        problems.append(f"{name}: {raw[:40]!r} is beyond belief")
        return None
    return value


def _retry_after(headers: Any, problems: list[str]) -> float | None:
    ms = _number(headers, "retry-after-ms", problems)
    if ms is not None:
        return ms / 1000.0
    raw = _get(headers, "retry-after")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"retry-after: {raw[:40]!r} is not a number of seconds (an HTTP date is not used)")
        return GITHUB_DEFAULT_WAIT_S  # it says "wait", only not how long: a minute, as GitHub advises
    if math.isnan(value):
        problems.append("retry-after: NaN")
        return GITHUB_DEFAULT_WAIT_S
    if value < 0:
        problems.append(f"retry-after: {raw[:40]!r} is negative; read as 0")
        return 0.0
    if value > MAX_BLOCK_S:
        problems.append(f"retry-after: {raw[:40]!r} is longer than {MAX_BLOCK_S:g}s; cut to it")
        return MAX_BLOCK_S
    return value


def has_retry_after(headers: Any) -> bool:
    """Whether a wait is named at all (a value that is no number still means "wait", not "stop")."""
    return any(_get(headers, h) not in (None, "") for h in ("retry-after", "retry-after-ms"))


def anthropic_observation(headers: Any, status: int | None = None) -> Observation:
    """Read a Messages API response's (or error's) headers; ``status`` 429 makes it a block or the spend cap."""
    problems: list[str] = []
    limits: dict[str, float] = {}
    remaining: dict[str, float] = {}
    for bucket, part in _ANTHROPIC.items():
        limit = _number(headers, f"anthropic-ratelimit-{part}-limit", problems, allow_zero=False)
        left = _number(headers, f"anthropic-ratelimit-{part}-remaining", problems)
        if limit is not None:
            limits[bucket] = limit
            if left is not None and left > limit:
                problems.append(f"anthropic-ratelimit-{part}-remaining {left:g} is above its limit {limit:g}")
                left = limit
        if left is not None:
            remaining[bucket] = left
    block, spend = None, False
    if status == 429:
        if has_retry_after(headers):
            block = _retry_after(headers, problems)
        else:
            spend = True
    return Observation(limits, remaining, block, spend, tuple(problems))


def github_observation(headers: Any, status: int | None = None, now: float | None = None) -> Observation:
    """Read a GitHub REST response's headers (primary limit, secondary limit's ``retry-after``)."""
    problems: list[str] = []
    remaining_left = _number(headers, "x-ratelimit-remaining", problems)
    limit = _number(headers, "x-ratelimit-limit", problems, allow_zero=False)
    reset = _number(headers, "x-ratelimit-reset", problems)
    block: float | None = None
    if has_retry_after(headers):
        block = _retry_after(headers, problems)
    elif remaining_left == 0 and reset is not None:
        now = datetime.now().timestamp() if now is None else now
        block = min(MAX_BLOCK_S, max(0.0, reset - now))
    elif status in (403, 429) and (remaining_left is None or remaining_left > 0):
        block = GITHUB_DEFAULT_WAIT_S  # a secondary limit that names no wait: at least a minute
    limits = {"core": limit} if limit is not None else {}
    remaining = {"core": remaining_left} if remaining_left is not None else {}
    return Observation(limits, remaining, block, False, tuple(problems))
