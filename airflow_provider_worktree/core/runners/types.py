"""The runners' shared vocabulary, one floor below every runner: token :class:`Usage`, a run's
:class:`RunResult`, the stop reasons and :class:`ModelRequestError`.

Imports only ``core.errors``. The API loop, Claude Code and batch mode all speak these types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, astuple, dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import WorktreeProviderError

STOP_REASONS = ("end_turn", "max_turns", "budget", "error", "cancelled")


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
    throttled: int = 0  # calls answered 429
    wait_s: float = 0.0  # seconds spent waiting on the shared rate limit before calls
    session_id: str | None = None  # Claude Code only
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.to_dict()
        return d


