"""A Claude Code session under the shared rate limit (:class:`SessionLimitedRunner`).

The ``claude`` CLI makes its own Messages API calls: nothing can reserve tokens before each of them or read their
headers. What can be shared is the session: before a session starts it takes a *session* place from the shared
limiter, and the number of places is what the organisation's input-token limit sustains at the rate sessions were
seen to use (the limit per minute over one session's observed input tokens per minute; unlimited until a session
has been measured or while the limit is unknown). When the session ends, the tokens its calls took are charged to
the shared buckets, so API-runner workers sharing the limit see them, and its rate updates the estimate. A 429 the
CLI met (it retries on its own) is not visible here.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_provider_worktree.core.ratelimit.limiter import LimitWaitTooLong, SpendCapReached
from airflow_provider_worktree.core.runners.types import ModelRequestError, RunResult


class SessionLimitedRunner:
    """Wrap a runner (``run``/``cancel``) so each run holds one shared session place."""

    def __init__(self, runner: Any, limiter: Any) -> None:
        self.runner = runner
        self.limiter = limiter

    def __getattr__(self, name: str) -> Any:  # model, isolation, ... of the wrapped runner
        return getattr(self.runner, name)

    def cancel(self) -> None:
        self.limiter.cancel()
        self.runner.cancel()

    def run(self, worktree_path: str | os.PathLike[str], shard_prompt: str, system_prompt: str | None = None,
            ) -> RunResult:
        try:
            ticket = self.limiter.acquire({}, kind="session")
        except SpendCapReached as exc:
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error", retryable=False) from None
        except LimitWaitTooLong as exc:
            raise ModelRequestError(str(exc), status_code=429, error_type="rate_limit_error", retryable=True) from None
        result: RunResult | None = None
        try:
            result = self.runner.run(worktree_path, shard_prompt, system_prompt)
            result.wait_s = round(result.wait_s + ticket.waited_s, 3)
            return result
        except ModelRequestError as exc:
            result = exc.result
            raise
        finally:
            u = result.usage if result is not None else None
            self.limiter.session_ended(ticket, {
                "requests": result.turns if result is not None else 0,
                "input_tokens": (u.input_tokens + u.cache_write_tokens) if u else 0,
                "output_tokens": u.output_tokens if u else 0})
