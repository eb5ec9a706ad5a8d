"""One rate limiter shared by every worker on every host: the organisation's Messages API limits (requests, input
and output tokens per minute) and a forge's write limits, with their state in the shard database.

``headers``  what one response says about the limits (``anthropic-ratelimit-*``, GitHub's ``x-ratelimit-*`` and
             ``retry-after``), parsed defensively: a missing, malformed, negative or absurd value is ignored and
             named, never trusted.
``state``    the shared state as plain data and its pure update rules: continuously refilling buckets, a
             reservation per call in flight (expiring when its worker dies), a first-come wait queue, a 429's
             block for every worker, the spend cap, an adaptive concurrency.
``limiter``  :class:`SharedLimiter`: acquire before a call, settle after it (or tell it the 429), backed by the
             shard database's ``rate_limits`` row (``core.store``'s :class:`RateLimitRecords`, passed in; not
             imported), falling back to the worker's own back-off when the database cannot be reached.

May import: ``core.errors`` only (the store is handed in). Plain Python, no Airflow.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ANTHROPIC_BUCKETS": "airflow_provider_worktree.core.ratelimit.state",
    "GITHUB_CONTENT_LIMITS": "airflow_provider_worktree.core.ratelimit.state",
    "Decision": "airflow_provider_worktree.core.ratelimit.state",
    "LimitWaitTooLong": "airflow_provider_worktree.core.ratelimit.limiter",
    "Observation": "airflow_provider_worktree.core.ratelimit.headers",
    "SharedLimiter": "airflow_provider_worktree.core.ratelimit.limiter",
    "SpendCapReached": "airflow_provider_worktree.core.ratelimit.limiter",
    "Ticket": "airflow_provider_worktree.core.ratelimit.limiter",
    "anthropic_observation": "airflow_provider_worktree.core.ratelimit.headers",
    "github_observation": "airflow_provider_worktree.core.ratelimit.headers",
    "run_figures": "airflow_provider_worktree.core.ratelimit.limiter",
})
