"""When a failed Messages API call is retried, and how long the runner waits first (:func:`retry_delay`).

Retried: connection errors, 408, 409, 429 and 5xx, unless the response's ``x-should-retry`` says otherwise, up to
``max_retries``. Never: a 429 without ``retry-after`` (the spend limit: waiting does not help), any other 4xx. A
``retry-after`` over :data:`MAX_RETRY_AFTER_S` fails at once as retryable, so the task's retry comes back later
with the worker slot free meanwhile. With the shared limiter a 429's wait is the next reservation's (every worker
waits it out together), so the runner itself does not sleep.
"""

from __future__ import annotations

import math
import random
from typing import Any

from airflow_provider_worktree.core.ratelimit.headers import has_retry_after
from airflow_provider_worktree.core.runners.types import MAX_RETRY_AFTER_S, ModelRequestError


def retry_after_seconds(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
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


def fix_hint(status: int | None) -> str:
    return {
        400: "Fix the request parameters (model id, max_tokens, prompt size).",
        401: "Check the API key in the anthropic connection (its password field).",
        403: "The key lacks permission for this model or feature; check the workspace and key.",
        404: "Check the model id and the connection's base URL (host field).",
        413: "The prompt is too large; use smaller shards.",
    }.get(status or 0, "Check the request and the connection.")


def retry_delay(exc: Any, status: int | None, attempt: int, shared_wait: float | None, *, max_retries: int,
                max_retry_wait: float, backoff_base: float, backoff_max: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``, or :class:`ModelRequestError` when the failure is final."""
    should = None
    if status is not None:
        header = exc.response.headers.get("x-should-retry")
        should = {"true": True, "false": False}.get((header or "").lower())
    retryable = status is None or status in (408, 409, 429) or status >= 500
    if should is not None:
        retryable = should
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if status == 429 and not has_retry_after(headers):
        raise ModelRequestError(
            "the Messages API answered 429 without retry-after: the organisation's spend limit (or a hard quota) is "
            f"reached ({getattr(exc, 'message', exc)}). Waiting does not help: raise the limit in the Anthropic "
            "Console, then clear the failed tasks.",
            status_code=status, error_type="rate_limit_error", retryable=False,
        ) from None
    api_message = getattr(exc, "api_message", None) or getattr(exc, "message", str(exc))
    error_type = getattr(exc, "type", None) if status is not None else type(exc).__name__
    request_id = getattr(exc, "request_id", None) if status is not None else None
    what = f"HTTP {status}" if status else type(exc).__name__
    details = {"status_code": status, "error_type": error_type, "api_message": api_message, "request_id": request_id}
    if not retryable:
        raise ModelRequestError(f"the Messages API refused the request (HTTP {status} {error_type}): {api_message}. "
                                + fix_hint(status), **details) from None
    if attempt >= max_retries:
        raise ModelRequestError(
            f"the Messages API kept failing after {attempt + 1} attempts ({what}: {api_message}); it is transient "
            "(rate limit, overload or network): retry the task later or lower the parallelism.",
            retryable=True, **details) from None
    told = retry_after_seconds(exc)
    if told is not None and told > MAX_RETRY_AFTER_S:
        raise ModelRequestError(
            f"the Messages API asks to wait {told:g}s before the next request ({what}: {api_message}), more than "
            f"the {MAX_RETRY_AFTER_S:g}s a runner waits inside a worker slot; failing now as retryable so the task's "
            "retry comes back later (raise retry_delay, or lower the parallelism).",
            retryable=True, **details) from None
    if shared_wait is not None:
        return 0.0
    if told is not None:
        told = min(told, max_retry_wait)
        return told + random.uniform(0, 0.1 * max(told, 0.1))
    return min(backoff_max, backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)
