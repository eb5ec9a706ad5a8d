""":class:`SharedLimiter`: the workers' side of the shared rate limit.

Every call goes ``ticket = acquire(need)`` -> the call -> ``settle(ticket, usage, headers)`` (or ``throttled``
on a 429, ``spend_capped`` on a 429 without a wait, ``release`` on any other failure). Each of these is one short
transaction on the scope's row in the shard database (see ``core.store.ratelimits``), so every worker on every
host sees the same buckets, the same 429 and the same spend cap.

Waiting. ``acquire`` sleeps what the shared state says (a bucket's refill, a 429's ``retry-after``, a full
concurrency) and asks again, up to ``max_wait_s`` in total per call; past that it raises
:class:`LimitWaitTooLong` (retryable) instead of holding the worker's slot: the operator checks
:meth:`predicted_wait` before a shard starts and *defers* then (the slot is free while the triggerer waits, and
nothing was spent yet); mid-conversation the shard fails retryable and Airflow's retry brings it back later.

The database unavailable: the limiter logs one WARNING and lets calls through; the runner's own back-off (429 +
``retry-after``, capped) is then all there is, as before the shared limiter. It tries the database again after
:data:`DEGRADED_RETRY_S`.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.ratelimit import state as rules
from airflow_provider_worktree.core.ratelimit.headers import Observation

#: Seconds a reservation counts as in flight without being settled (a call's longest plausible duration).
DEFAULT_TTL_S = 600.0
#: After a database failure, seconds before the limiter tries the database again.
DEGRADED_RETRY_S = 30.0
#: Longest single sleep between two asks (so cancellation and fresh headers are noticed).
MAX_SLEEP_S = 5.0


class LimitWaitTooLong(WorktreeProviderError):
    """The shared limit would keep this call waiting longer than a worker slot should be held (retryable)."""

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class SpendCapReached(WorktreeProviderError):
    """The organisation's spend limit was reached (a 429 without ``retry-after``): no new calls (permanent)."""


@dataclass
class Ticket:
    """One call's reservation: its id, what it took, how long it waited; ``shared`` False when the database
    could not be reached and the call went without the shared view."""

    rid: str
    need: dict[str, float]
    waited_s: float = 0.0
    shared: bool = True
    started: float = field(default_factory=time.monotonic)


class SharedLimiter:
    """The limiter of one ``scope`` (an organisation's key, a forge host) over a shard store.

    :param store: a :class:`~airflow_provider_worktree.core.store.ShardStore` (anything with ``rate_update`` and
        ``rate_now``).
    :param scope: the name every worker sharing the limit uses (e.g. ``anthropic:anthropic_default``).
    :param limits: configured buckets, ``{bucket: (limit, period_s)}`` (e.g. ``{"input_tokens": (400000, 60)}``):
        this deployment's share of the organisation's limit. Limits the API's headers report are learnt as well;
        where both are known the smaller holds.
    :param max_concurrency: calls in flight at most (the adaptive concurrency starts there and halves on a 429).
    :param max_wait_s: total seconds one call may wait inside the worker before :class:`LimitWaitTooLong`.
    :param run_id: the DAG run the calls are counted for (``rate_limit_runs``).
    """

    def __init__(self, store: Any, scope: str, *, limits: Mapping[str, tuple[float, float]] | None = None,
                 max_concurrency: int = 64, max_wait_s: float = 60.0, ttl_s: float = DEFAULT_TTL_S,
                 run_id: str | None = None, logger: logging.Logger | None = None,
                 sleep: Callable[[float], bool] | None = None) -> None:
        if not scope:
            raise ValueError("SharedLimiter needs a scope name (the key or host whose limit is shared)")
        self.store = store
        self.scope = scope
        self.limits = {k: (float(v[0]), float(v[1])) for k, v in (limits or {}).items()}
        for name, (limit, period) in self.limits.items():
            if not (limit > 0 and period > 0 and math.isfinite(limit) and math.isfinite(period)):
                raise ValueError(f"rate limit {name}={limit:g} per {period:g}s: both must be positive numbers")
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_wait_s = float(max_wait_s)
        self.ttl_s = float(ttl_s)
        self.run_id = run_id
        self.log = logger or logging.getLogger(__name__)
        self._cancel = threading.Event()
        self._sleep = sleep or (lambda s: self._cancel.wait(s))
        self._degraded_until = 0.0
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:"

    # -- the shared state -------------------------------------------------------------------------------------------
    def _apply(self, fn: Callable[[dict[str, Any], float], Any], delta: Mapping[str, Any] | None = None,
               ) -> tuple[bool, Any]:
        """Run ``fn(state, now)`` on the shared state; (False, None) when the database cannot be reached."""
        if time.monotonic() < self._degraded_until:
            return False, None
        limits, top = self.limits, self.max_concurrency

        def update(state: dict[str, Any] | None, now: float) -> tuple[dict[str, Any], Any, Mapping[str, Any]]:
            if state is None:
                state = rules.fresh(limits, top, now)
            else:
                rules.configure(state, limits, top, now)
            result = fn(state, now)
            return state, result, (delta(result) if callable(delta) else delta) or {}

        try:
            return True, self.store.rate_update(self.scope, update, run_id=self.run_id)
        except Exception as exc:  # noqa: BLE001 - the database is the limiter's, not the call's, problem
            if isinstance(exc, SpendCapReached):
                raise
            self._degraded_until = time.monotonic() + DEGRADED_RETRY_S
            self.log.warning("shared rate limiter %s: the shard database cannot be reached (%s); this worker falls "
                             "back to its own back-off for %.0fs", self.scope, exc, DEGRADED_RETRY_S)
            return False, None

    def cancel(self) -> None:
        """Stop waiting (thread-safe): a waiting :meth:`acquire` raises :class:`LimitWaitTooLong` at once."""
        self._cancel.set()

    def acquire(self, need: Mapping[str, float], *, kind: str = "call", max_wait_s: float | None = None) -> Ticket:
        """Reserve ``need`` (``{"requests": 1, "input_tokens": n, "output_tokens": max_tokens}``), waiting as the
        shared state says; raises :class:`SpendCapReached` or :class:`LimitWaitTooLong`."""
        need = {k: float(v) for k, v in need.items() if v}
        rid = self._prefix + uuid.uuid4().hex[:12]
        budget = self.max_wait_s if max_wait_s is None else float(max_wait_s)
        waited, started = 0.0, time.monotonic()
        ttl = self.ttl_s if kind == "call" else max(self.ttl_s, 6 * 3600.0)
        while True:
            ok, decision = self._apply(
                lambda st, now: rules.reserve(st, now, rid, need, ttl=ttl, run_id=self.run_id, kind=kind),
                lambda d: {"waits": 1, "wait_s": waited} if d.granted and waited > 0 else {})
            if not ok:
                return Ticket(rid, need, waited, shared=False)
            if decision.stopped:
                raise SpendCapReached(
                    f"no new model calls: the organisation's spend limit was reached ({decision.stopped}). Raise "
                    f"the limit in the Anthropic Console, then clear it with `airflow-worktree limits clear "
                    f"{self.scope}` and clear the failed tasks.")
            if decision.granted:
                return Ticket(rid, need, waited)
            if waited + decision.wait_s > budget or self._cancel.is_set():
                self._apply(lambda st, now: rules.release(st, now, rid, {}))
                raise LimitWaitTooLong(
                    f"the shared rate limit {self.scope} would keep this call waiting {decision.wait_s:.0f}s more "
                    f"({decision.reason}), past the {budget:g}s a worker slot is held for it; failing retryable so "
                    "the task comes back later with its slot free (lower the parallelism, or raise the limit)",
                    decision.wait_s)
            pause = min(decision.wait_s, MAX_SLEEP_S) * random.uniform(1.0, 1.1) + 0.005
            if self._sleep(pause):
                continue  # cancelled: the next round raises
            waited = time.monotonic() - started

    def settle(self, ticket: Ticket, actual: Mapping[str, float], obs: Observation | None = None) -> None:
        """The call answered: charge what it cost (``{"requests": 1, "input_tokens": uncached + cache writes,
        "output_tokens": written}``); learn from its headers."""
        if obs is not None and obs.problems:
            self.log.info("rate-limit headers ignored: %s", "; ".join(obs.problems))
        if not ticket.shared:
            return
        calls = {"calls": 1, "input_tokens": int(actual.get("input_tokens", 0)),
                 "output_tokens": int(actual.get("output_tokens", 0))}
        self._apply(lambda st, now: rules.settle(st, now, ticket.rid, ticket.need, actual, obs), calls)

    def throttled(self, ticket: Ticket, obs: Observation) -> float:
        """The call answered 429 with a wait: tell every worker. Returns the seconds the shared view now blocks."""
        if not ticket.shared:
            return obs.block_s or 0.0
        ok, wait = self._apply(lambda st, now: rules.throttle(st, now, ticket.rid, ticket.need, obs), {"throttled": 1})
        return float(wait) if ok else (obs.block_s or 0.0)

    def spend_capped(self, ticket: Ticket, message: str) -> None:
        """A 429 without a wait: stop every worker's new calls."""
        self._apply(lambda st, now: rules.stop(st, now, ticket.rid, message), {"throttled": 1})

    def release(self, ticket: Ticket) -> None:
        """The call failed for another reason (network, 5xx, a refusal): give its reservation back."""
        if ticket.shared:
            self._apply(lambda st, now: rules.release(st, now, ticket.rid, ticket.need))

    def session_ended(self, ticket: Ticket, actual: Mapping[str, float]) -> None:
        """A Claude Code session ended: charge its calls to the buckets, learn its rate."""
        if not ticket.shared:
            return
        minutes = (time.monotonic() - ticket.started) / 60.0
        counters = {"calls": int(actual.get("requests", 0) or 0), "input_tokens": int(actual.get("input_tokens", 0)),
                    "output_tokens": int(actual.get("output_tokens", 0))}
        self._apply(lambda st, now: rules.charge(st, now, ticket.rid, actual, minutes), counters)

    def predicted_wait(self, need: Mapping[str, float], kind: str = "call") -> tuple[float, str]:
        """How long a call of ``need`` would wait now, and why (``inf`` under the spend cap); changes nothing
        that matters (the probe is dropped). ``(0, "")`` without the database."""
        ok, result = self._apply(lambda st, now: rules.predicted_wait(st, now, need, kind))
        return result if ok else (0.0, "")

    def snapshot(self) -> dict[str, Any]:
        """The scope's shared state as stored (empty when nothing was recorded or the database is away)."""
        ok, state = self._apply(lambda st, now: (rules.tidy(st, now), st)[1])
        return dict(state) if ok else {}


def run_figures(row: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run's figures for the report and the CLI from its ``rate_limit_runs`` row (and the scope's state, for
    the limit): calls, 429s and their share, time waiting, input tokens per minute achieved (over the span from the
    first call to the last, a minute at least) and the limit."""
    calls = int(row.get("calls") or 0)
    throttled = int(row.get("throttled") or 0)
    first, last = row.get("first_at"), row.get("last_at")
    # Over the run's span of calls, at least a minute: a burst of calls in a second is not a rate per minute.
    minutes = max(1.0, (float(last) - float(first)) / 60.0) if first is not None and last is not None else 0.0
    tokens = int(row.get("input_tokens") or 0)
    bucket = ((state or {}).get("buckets") or {}).get("input_tokens")
    limit = bucket["limit"] * 60.0 / bucket["period"] if bucket else None
    achieved = tokens / minutes if minutes > 0 else None
    return {
        "scope": row.get("scope"), "calls": calls, "throttled": throttled,
        "throttled_share": round(throttled / (calls + throttled), 4) if calls + throttled else 0.0,
        "waits": int(row.get("waits") or 0), "wait_s": round(float(row.get("wait_s") or 0.0), 1),
        "input_tokens": tokens, "output_tokens": int(row.get("output_tokens") or 0),
        "input_tpm": round(achieved) if achieved is not None else None,
        "input_tpm_limit": round(limit) if limit else None,
        "of_limit": round(achieved / limit, 3) if achieved is not None and limit else None,
    }
