"""The shared limiter's state as plain data (a JSON document in the shard database) and its pure update rules.

Nothing here does I/O or reads a clock: every function takes ``now`` (epoch seconds, from the store's clock), so
the rules are tested on their own and applied under the database's row lock by :mod:`.limiter`.

- **Buckets** refill continuously (``limit`` per ``period`` seconds, never above ``limit``), as the Messages API's
  do. A bucket is *configured* (the operator's share of the organisation's limit) or *learnt* from the
  ``anthropic-ratelimit-*-limit`` headers; both known, the smaller holds.
- **Reservations.** A call takes its estimate (input tokens, ``max_tokens`` of output, one request) from the
  buckets before it is sent; its settlement gives back the estimate and takes what the response's usage says.
  Each call in flight is listed with a time to live: a worker killed mid-call stops counting once that passes (the
  tokens it took were spent at the API anyway; the bucket refills by itself, so nothing leaks).
- **Queue.** A worker told to wait is queued; while it waits, a newer worker may take only what leaves the
  oldest waiter's need in the buckets, so a large call (or another DAG run) is not starved by a stream of small
  ones. A waiter that stops asking (its worker died) drops out after :data:`QUEUE_TTL_S`.
- **A 429** blocks every worker until its ``retry-after`` and halves the concurrency; each settled call adds
  back ``1/concurrency`` (additive increase, multiplicative decrease, as TCP does): concurrency settles at what
  the limit sustains.
- **The spend cap** (a 429 without ``retry-after``) stops every new call until someone clears it.
- **Clocks.** Elapsed time is never negative; a clock that jumped back (or a host whose clock runs ahead)
  re-anchors the buckets at ``now`` instead of freezing their refill, and reservations or waiters stamped in the
  future are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_worktree.core.ratelimit.headers import Observation

#: The Messages API's buckets, each per minute.
ANTHROPIC_BUCKETS = ("requests", "input_tokens", "output_tokens")
#: GitHub's documented secondary limits on content-creating requests (80 a minute, 500 an hour) and its limit of
#: 100 concurrent requests (REST API, "rate limits for the REST API").
GITHUB_CONTENT_LIMITS: dict[str, tuple[float, float]] = {"content_minute": (80, 60.0), "content_hour": (500, 3600.0)}
GITHUB_MAX_CONCURRENCY = 100
#: Seconds a queued waiter stays queued without asking again.
QUEUE_TTL_S = 15.0
#: Clock differences smaller than this are ordinary skew between hosts, not a jump.
CLOCK_SKEW_S = 5.0
#: How long a worker held back by the concurrency limit (not by a bucket) waits before asking again.
CONCURRENCY_POLL_S = 0.25
STATE_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """The answer to a reservation: ``granted``, or ``wait_s`` with the ``reason``, or ``stopped`` (the spend
    cap's message)."""

    granted: bool
    wait_s: float = 0.0
    reason: str = ""
    stopped: str | None = None


def fresh(configured: Mapping[str, tuple[float, float]], max_concurrency: int, now: float) -> dict[str, Any]:
    """A new scope's state with its configured buckets full."""
    state: dict[str, Any] = {"v": STATE_VERSION, "buckets": {}, "block_until": 0.0, "block_reason": "",
                             "spend_cap": None, "inflight": {}, "queue": {}, "concurrency": float(max_concurrency),
                             "max_concurrency": int(max_concurrency), "session_tpm": None}
    configure(state, configured, max_concurrency, now)
    return state


def configure(state: dict[str, Any], configured: Mapping[str, tuple[float, float]], max_concurrency: int,
              now: float) -> None:
    """Apply this worker's configured limits (each call: the DAG's settings may change between runs)."""
    buckets = state.setdefault("buckets", {})
    for name, (limit, period) in configured.items():
        b = buckets.get(name)
        if b is None:
            buckets[name] = {"limit": float(limit), "period": float(period), "level": float(limit), "at": now,
                             "configured": float(limit), "learnt": None}
        else:
            b["configured"], b["period"] = float(limit), float(period)
            b["limit"] = _effective(b)
            b["level"] = min(b["level"], b["limit"])
    state["max_concurrency"] = int(max_concurrency)
    state["concurrency"] = min(float(state.get("concurrency") or max_concurrency), float(max_concurrency))


def _effective(b: Mapping[str, Any]) -> float:
    known = [v for v in (b.get("configured"), b.get("learnt")) if v]
    return float(min(known)) if known else float(b["limit"])


def _refill(b: dict[str, Any], now: float) -> None:
    elapsed = now - float(b["at"])
    if elapsed < 0:
        if elapsed < -CLOCK_SKEW_S:  # the clock went back (or a host ahead wrote): refill from now on
            b["at"] = now
        return
    b["level"] = min(b["limit"], float(b["level"]) + elapsed * b["limit"] / b["period"])
    b["at"] = now


def _expire(state: dict[str, Any], now: float) -> None:
    inflight = state.setdefault("inflight", {})
    for rid in [r for r, e in inflight.items() if now > e["at"] + e["ttl"] or e["at"] > now + CLOCK_SKEW_S]:
        del inflight[rid]
    queue = state.setdefault("queue", {})
    for rid in [r for r, e in queue.items() if now - e["seen"] > QUEUE_TTL_S or e["seen"] > now + CLOCK_SKEW_S]:
        del queue[rid]
    if state.get("block_until", 0.0) > now + 2 * 600.0:  # stamped by a clock far ahead: not believed
        state["block_until"] = 0.0


def tidy(state: dict[str, Any], now: float) -> None:
    """Refill every bucket and drop what expired (done by every update)."""
    _expire(state, now)
    for b in state.get("buckets", {}).values():
        _refill(b, now)


def _amounts(state: Mapping[str, Any], need: Mapping[str, float]) -> dict[str, float]:
    buckets = state.get("buckets", {})
    return {k: min(float(v), buckets[k]["limit"]) for k, v in need.items() if k in buckets and v > 0}


def _waits(state: Mapping[str, Any], rid: str, amounts: Mapping[str, float]) -> tuple[float, str]:
    """Seconds until ``amounts`` fit, leaving the oldest other waiter's need in place."""
    buckets = state.get("buckets", {})
    queue = state.get("queue", {})
    mine = queue.get(rid, {}).get("since")
    older = [e for r, e in queue.items() if r != rid and (mine is None or e["since"] < mine)]
    head = min(older, key=lambda e: e["since"])["need"] if older else {}
    wait, why = 0.0, ""
    for name, amount in amounts.items():
        b = buckets[name]
        reserved_ahead = min(float(head.get(name, 0.0)), b["limit"] - amount) if head else 0.0
        short = amount + max(0.0, reserved_ahead) - b["level"]
        if short > 0:
            w = short * b["period"] / b["limit"]
            if w > wait:
                wait = w
                why = (f"{name}: {amount:,.0f} needed, {max(0.0, b['level']):,.0f} left of {b['limit']:,.0f} per "
                       f"{b['period']:g}s" + (" (an earlier waiter goes first)" if reserved_ahead > 0 else ""))
    return wait, why


def reserve(state: dict[str, Any], now: float, rid: str, need: Mapping[str, float], *, ttl: float,
            run_id: str | None = None, kind: str = "call") -> Decision:
    """Take ``need`` for call ``rid`` now, or say how long to wait. ``kind="session"``: a Claude Code session,
    bounded by :func:`session_cap` instead of the call concurrency."""
    tidy(state, now)
    cap = state.get("spend_cap")
    if cap:
        return Decision(False, stopped=cap["message"])
    if state.get("block_until", 0.0) > now:
        _enqueue(state, now, rid, need)
        return Decision(False, state["block_until"] - now, state.get("block_reason") or "a 429 asked to wait")
    inflight = state["inflight"]
    running = sum(1 for e in inflight.values() if e.get("kind", "call") == kind)
    limit = session_cap(state) if kind == "session" else max(1, math.floor(state.get("concurrency", 1)))
    if limit is not None and running >= limit:
        _enqueue(state, now, rid, need)
        return Decision(False, CONCURRENCY_POLL_S * (8 if kind == "session" else 1),
                        f"{running} {kind}s in flight, the most the limit sustains now ({limit})")
    amounts = _amounts(state, need)
    wait, why = _waits(state, rid, amounts)
    if wait > 0:
        _enqueue(state, now, rid, need)
        return Decision(False, wait, why)
    for name, amount in amounts.items():
        state["buckets"][name]["level"] -= amount
    inflight[rid] = {"at": now, "ttl": float(ttl), "run": run_id, "kind": kind}
    state["queue"].pop(rid, None)
    return Decision(True)


def _enqueue(state: dict[str, Any], now: float, rid: str, need: Mapping[str, float]) -> None:
    entry = state.setdefault("queue", {}).setdefault(rid, {"since": now, "need": dict(need)})
    entry["seen"] = now


def observe(state: dict[str, Any], now: float, obs: Observation | None) -> None:
    """Take in what a response said: learnt limits, the server's remaining (the smaller view holds)."""
    if obs is None:
        return
    buckets = state.setdefault("buckets", {})
    for name, limit in obs.limits.items():
        b = buckets.get(name)
        if b is None:
            period = 60.0
            b = buckets[name] = {"limit": float(limit), "period": period, "at": now, "configured": None,
                                 "learnt": float(limit), "level": float(obs.remaining.get(name, limit))}
        b["learnt"] = float(limit)
        b["limit"] = _effective(b)
        b["level"] = min(b["level"], b["limit"])
    for name, left in obs.remaining.items():
        if name in buckets:
            buckets[name]["level"] = min(buckets[name]["level"], float(left))


def settle(state: dict[str, Any], now: float, rid: str, reserved: Mapping[str, float],
           actual: Mapping[str, float], obs: Observation | None) -> None:
    """A call answered: its reservation becomes what it cost; the response's headers update the view."""
    tidy(state, now)
    state["inflight"].pop(rid, None)
    _recharge(state, reserved, actual)
    observe(state, now, obs)
    c, top = float(state.get("concurrency", 1.0)), float(state.get("max_concurrency", 1))
    state["concurrency"] = min(top, c + 1.0 / max(c, 1.0))


def _recharge(state: dict[str, Any], reserved: Mapping[str, float], actual: Mapping[str, float]) -> None:
    for name, b in state.get("buckets", {}).items():
        taken = min(float(reserved.get(name, 0.0)), b["limit"])
        b["level"] = max(-b["limit"], min(b["limit"], b["level"] + taken - float(actual.get(name, 0.0))))


def throttle(state: dict[str, Any], now: float, rid: str, reserved: Mapping[str, float],
             obs: Observation | None) -> float:
    """A call answered 429 with a wait: every worker waits it out; concurrency halves. Returns the block's
    seconds from now. The call took nothing from the server's buckets, so its reservation is given back; the
    429's own headers then say what is left."""
    tidy(state, now)
    state["inflight"].pop(rid, None)
    _recharge(state, reserved, {})
    observe(state, now, obs)
    wait = obs.block_s if obs is not None and obs.block_s is not None else 1.0
    if now + wait > state.get("block_until", 0.0):
        state["block_until"] = now + wait
        state["block_reason"] = f"a 429 asked every worker to wait {wait:g}s"
    state["concurrency"] = max(1.0, float(state.get("concurrency", 1.0)) / 2.0)
    return state["block_until"] - now


def stop(state: dict[str, Any], now: float, rid: str, message: str) -> None:
    """The spend cap: no new call until it is cleared."""
    tidy(state, now)
    state["inflight"].pop(rid, None)
    state["spend_cap"] = {"at": now, "message": message}


def release(state: dict[str, Any], now: float, rid: str, reserved: Mapping[str, float]) -> None:
    """A call failed for another reason (network, 5xx): it is no longer in flight; the estimate is given back."""
    tidy(state, now)
    state["inflight"].pop(rid, None)
    state.get("queue", {}).pop(rid, None)
    _recharge(state, reserved, {})


def charge(state: dict[str, Any], now: float, rid: str, actual: Mapping[str, float], minutes: float) -> None:
    """A Claude Code session ended: what its own calls took is charged to the buckets after the fact, and its rate
    (input tokens per minute) feeds :func:`session_cap`."""
    tidy(state, now)
    state["inflight"].pop(rid, None)
    _recharge(state, {}, actual)
    tokens = float(actual.get("input_tokens", 0.0))
    if tokens > 0 and minutes > 0:
        rate = tokens / max(minutes, 1.0 / 60.0)
        old = state.get("session_tpm")
        state["session_tpm"] = rate if not old else 0.7 * float(old) + 0.3 * rate


def session_cap(state: Mapping[str, Any]) -> int | None:
    """How many Claude Code sessions the input-token limit sustains at once: the limit per minute over one
    session's observed rate (at least one); None while either is unknown."""
    b = state.get("buckets", {}).get("input_tokens")
    rate = state.get("session_tpm")
    if not b or not rate:
        return None
    return max(1, math.floor(b["limit"] * 60.0 / b["period"] / float(rate)))


def predicted_wait(state: Mapping[str, Any], now: float, need: Mapping[str, float],
                   kind: str = "call") -> tuple[float, str]:
    """How long a call of ``need`` would wait now, and why (``inf`` under the spend cap); ``state`` unchanged."""
    import copy

    decision = reserve(copy.deepcopy(dict(state)), now, "\x00probe", need, ttl=1.0, kind=kind)
    if decision.stopped:
        return math.inf, decision.stopped
    return decision.wait_s, decision.reason
