"""The maintenance operator's shared rate limit: the limiter from ``runner_options["rate_limit"]``, and the check
before a shard starts that defers it when the limit would keep it waiting (see docs/rate-limits.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_worktree.version_compat import AirflowFailException


def build_limiter(options: dict[str, Any] | None, store: Any, run_id: str, conn_id: str, log: Any) -> Any:
    """The shared limiter of the Anthropic connection ``conn_id`` (None when off or without a shard database)."""
    if options is None or store is None:
        return None
    from airflow_provider_worktree.core.ratelimit import SharedLimiter

    per_minute = {"requests": options.get("requests_per_minute"),
                  "input_tokens": options.get("input_tokens_per_minute"),
                  "output_tokens": options.get("output_tokens_per_minute")}
    return SharedLimiter(store, options.get("scope") or f"anthropic:{conn_id}",
                         limits={k: (v, 60.0) for k, v in per_minute.items() if v}, run_id=run_id, logger=log,
                         max_concurrency=options.get("max_concurrency") or 64,
                         max_wait_s=options.get("max_wait") or 60.0)


def wait_or_defer(op: Any, limiter: Any, kind: str) -> None:
    """Before the shard starts: under the spend cap fail now; if the shared limit would keep the first call (or
    the Claude Code session) waiting past ``max_wait``, defer until it would not. Deferring, not waiting: nothing
    is claimed or spent yet, and the triggerer holds the wait instead of a worker slot; mid-conversation a wait
    that long fails the attempt retryable instead (the conversation cannot be carried through a deferral)."""
    if limiter is None:
        return
    wait, why = limiter.predicted_wait({"requests": 1, "output_tokens": op.budget["max_tokens"]}, kind)
    if wait == float("inf"):
        raise AirflowFailException(f"not started: the organisation's spend limit was reached ({why}); raise it, then "
                                   f"`airflow-worktree limits clear {limiter.scope}` and clear this task")
    if wait > limiter.max_wait_s:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        op.log.info("the shared rate limit %s would keep this shard waiting %.0fs (%s): deferring, so the worker "
                    "slot is free meanwhile", limiter.scope, wait, why)
        op.defer(trigger=DateTimeTrigger(moment=datetime.now(timezone.utc) + timedelta(seconds=wait)),
                 method_name="execute_after_rate_limit")
