"""One rate limiter shared by every worker (issue 21): its state in the shard database (SQLite and PostgreSQL),
driven by worker processes, with the real ``anthropic`` SDK against the offline server that enforces an
organisation's limits like the Messages API. Faults: bad headers, a clock jump, a worker killed holding a
reservation, the database away."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time

import anthropic
import pytest

from airflow_provider_worktree.core.ratelimit import (
    LimitWaitTooLong,
    SharedLimiter,
    SpendCapReached,
    anthropic_observation,
    github_observation,
    run_figures,
)
from airflow_provider_worktree.core.ratelimit import state as rules
from airflow_provider_worktree.core.runners import ApiRunner, ModelRequestError
from airflow_provider_worktree.core.store import ShardStore, StoreError
from airflow_provider_worktree.testing import OfflineMessagesServer, RateLimits, ScriptedModel, text_reply

SPAWN = mp.get_context("spawn")
MODEL = "claude-sonnet-4-6"
SCOPE = "anthropic:test"


# -- the rules, on plain data -----------------------------------------------------------------------------------
def test_a_bucket_refills_continuously_and_never_above_its_limit():
    st = rules.fresh({"input_tokens": (600, 60.0)}, 8, now=0.0)
    assert rules.reserve(st, 0.0, "a", {"input_tokens": 600}, ttl=60).granted
    d = rules.reserve(st, 0.0, "b", {"input_tokens": 100}, ttl=60)
    assert not d.granted and d.wait_s == pytest.approx(10.0), "10 tokens a second: 100 take 10 s"
    assert "input_tokens: 100 needed, 0 left of 600 per 60s" in d.reason
    assert rules.reserve(st, 10.0, "b", {"input_tokens": 100}, ttl=60).granted
    rules.tidy(st, 10_000.0)
    assert st["buckets"]["input_tokens"]["level"] == 600.0


def test_settling_gives_back_the_estimate_and_takes_the_usage():
    st = rules.fresh({"input_tokens": (1000, 60.0)}, 8, now=0.0)
    rules.reserve(st, 0.0, "a", {"input_tokens": 800}, ttl=60)
    rules.settle(st, 0.0, "a", {"input_tokens": 800}, {"input_tokens": 150}, None)
    assert st["buckets"]["input_tokens"]["level"] == pytest.approx(850.0) and st["inflight"] == {}


def test_the_oldest_waiter_goes_first_so_a_big_call_is_not_starved_by_small_ones():
    st = rules.fresh({"input_tokens": (600, 60.0)}, 8, now=0.0)
    rules.reserve(st, 0.0, "drain", {"input_tokens": 600}, ttl=60)
    big = rules.reserve(st, 0.0, "big", {"input_tokens": 500}, ttl=60)
    assert not big.granted
    # 10 s later 100 tokens are back: a small newcomer would fit, but it must leave the big waiter's need
    small = rules.reserve(st, 10.0, "small", {"input_tokens": 50}, ttl=60)
    assert not small.granted and "earlier waiter goes first" in small.reason
    assert rules.reserve(st, 50.0, "big", {"input_tokens": 500}, ttl=60).granted
    assert rules.reserve(st, 56.0, "small", {"input_tokens": 50}, ttl=60).granted


def test_a_waiter_that_stops_asking_drops_out_of_the_queue():
    st = rules.fresh({"input_tokens": (600, 60.0)}, 8, now=0.0)
    rules.reserve(st, 0.0, "drain", {"input_tokens": 600}, ttl=60)
    rules.reserve(st, 0.0, "dead", {"input_tokens": 590}, ttl=60)   # its worker dies now
    assert rules.reserve(st, rules.QUEUE_TTL_S + 1, "live", {"input_tokens": 100}, ttl=60).granted


def test_a_429_blocks_every_worker_and_halves_the_concurrency():
    st = rules.fresh({}, 8, now=0.0)
    assert rules.reserve(st, 0.0, "a", {"requests": 1}, ttl=60).granted
    obs = anthropic_observation({"retry-after": "7"}, 429)
    assert rules.throttle(st, 0.0, "a", {"requests": 1}, obs) == pytest.approx(7.0)
    assert st["concurrency"] == 4.0
    other = rules.reserve(st, 1.0, "b", {"requests": 1}, ttl=60)
    assert not other.granted and other.wait_s == pytest.approx(6.0) and "429" in other.reason
    assert rules.reserve(st, 7.5, "b", {"requests": 1}, ttl=60).granted


def test_concurrency_grows_back_one_step_per_round_after_a_429():
    st = rules.fresh({}, 4, now=0.0)
    rules.throttle(st, 0.0, "x", {}, anthropic_observation({"retry-after": "0"}, 429))
    assert st["concurrency"] == 2.0
    for i in range(2):
        rules.reserve(st, 1.0, f"r{i}", {"requests": 1}, ttl=60)
    assert not rules.reserve(st, 1.0, "third", {"requests": 1}, ttl=60).granted, "2 in flight is the limit now"
    for i in range(4):
        rules.settle(st, 1.0, f"r{i}", {}, {}, None)
    assert 3.0 <= st["concurrency"] <= 4.0


def test_a_reservation_of_a_killed_worker_expires_and_nothing_leaks():
    st = rules.fresh({"input_tokens": (600, 60.0)}, 1, now=0.0)
    assert rules.reserve(st, 0.0, "killed", {"input_tokens": 600}, ttl=30).granted   # never settled
    assert not rules.reserve(st, 10.0, "next", {"requests": 1}, ttl=30).granted, "concurrency 1: it still counts"
    assert rules.reserve(st, 31.0, "next", {"requests": 1}, ttl=30).granted, "past its time to live it does not"
    rules.tidy(st, 200.0)
    assert st["buckets"]["input_tokens"]["level"] == 600.0, "the bucket refills to its limit"


def test_a_clock_jump_back_reanchors_the_refill_instead_of_freezing_it():
    st = rules.fresh({"input_tokens": (600, 60.0)}, 4, now=10_000.0)
    rules.reserve(st, 10_000.0, "a", {"input_tokens": 600}, ttl=30)
    rules.tidy(st, 6_400.0)               # an hour back: no refill, and no negative one
    assert st["buckets"]["input_tokens"]["level"] == 0.0 and st["buckets"]["input_tokens"]["at"] == 6_400.0
    assert st["inflight"] == {}, "a reservation stamped in the future is not believed"
    assert rules.reserve(st, 6_410.0, "b", {"input_tokens": 100}, ttl=30).granted, "refill resumed from the jump"


def test_the_spend_cap_stops_everyone_until_cleared():
    st = rules.fresh({}, 4, now=0.0)
    rules.stop(st, 0.0, "a", "You have reached your specified API usage limits")
    d = rules.reserve(st, 999.0, "b", {"requests": 1}, ttl=60)
    assert not d.granted and "usage limits" in d.stopped


@pytest.mark.parametrize(("headers", "problem"), [
    ({"anthropic-ratelimit-input-tokens-limit": "lots"}, "is not a number"),
    ({"anthropic-ratelimit-input-tokens-limit": "-5"}, "not a usable value"),
    ({"anthropic-ratelimit-input-tokens-limit": "0"}, "not a usable value"),
    ({"anthropic-ratelimit-input-tokens-limit": "1e30"}, "beyond belief"),
    ({"anthropic-ratelimit-input-tokens-limit": "inf"}, "not a usable value"),
    ({"anthropic-ratelimit-input-tokens-limit": "1000", "anthropic-ratelimit-input-tokens-remaining": "5000"},
     "above its limit"),
], ids=["malformed", "negative", "zero", "absurd", "infinite", "remaining-above-limit"])
def test_a_bad_limit_header_is_ignored_and_named(headers, problem):
    obs = anthropic_observation(headers)
    assert any(problem in p for p in obs.problems), obs.problems
    st = rules.fresh({"input_tokens": (600, 60.0)}, 4, now=0.0)
    rules.observe(st, 0.0, obs)
    b = st["buckets"]["input_tokens"]
    assert b["limit"] == (600.0 if problem != "above its limit" else 600.0) and 0 <= b["level"] <= 600.0


def test_missing_headers_change_nothing_and_a_huge_retry_after_is_cut():
    assert anthropic_observation({}) == anthropic_observation(None)
    assert anthropic_observation({}).limits == {} and anthropic_observation({}).block_s is None
    obs = anthropic_observation({"retry-after": "86400"}, 429)
    assert obs.block_s == 600.0 and not obs.spend_cap and "cut to it" in obs.problems[0]
    assert anthropic_observation({"retry-after": "-3"}, 429).block_s == 0.0
    assert anthropic_observation({}, 429).spend_cap, "a 429 that names no wait is the spend cap"


def test_github_rules_primary_reset_secondary_retry_after_and_the_one_minute_default():
    assert github_observation({"retry-after": "30"}, 403).block_s == 30.0
    spent = github_observation({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000120",
                                "x-ratelimit-limit": "5000"}, 403, now=1_000_000.0)
    assert spent.block_s == pytest.approx(120.0) and spent.limits == {"core": 5000.0}
    assert github_observation({"x-ratelimit-remaining": "12"}, 403).block_s == 60.0, "secondary, no wait named"
    assert github_observation({"x-ratelimit-remaining": "12"}, 201).block_s is None
    st = rules.fresh(rules.GITHUB_CONTENT_LIMITS, rules.GITHUB_MAX_CONCURRENCY, now=0.0)
    granted = sum(rules.reserve(st, 0.0, f"pr{i}", {"content_minute": 1, "content_hour": 1}, ttl=60).granted
                  for i in range(100))
    assert granted == 80, "80 content-creating requests a minute, no more"


# -- the shared state in the shard database, across processes --------------------------------------------------
def _store_target(request, tmp_path):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / "shards.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    return _store_target(request, tmp_path)


def _hammer(target: str, name: str, calls: int, out) -> None:
    store = ShardStore.open(target)
    limiter = SharedLimiter(store, SCOPE, limits={"input_tokens": (100, 1.0)}, run_id="run-1", max_wait_s=120)
    granted = []
    for _ in range(calls):
        ticket = limiter.acquire({"requests": 1, "input_tokens": 10})
        granted.append(time.time())
        limiter.settle(ticket, {"requests": 1, "input_tokens": 10, "output_tokens": 1})
    out.put((name, granted))


def test_workers_in_processes_share_one_bucket(target):
    """Six processes ask for 10 tokens 8 times each from one bucket of 100 a second: the first 10 go at once
    (the bucket is full), the other 38 at its refill rate (one call every 0.1 s), never faster, whatever process
    asks."""
    ShardStore.open(target).close()
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=_hammer, args=(target, f"w{i}", 8, out)) for i in range(6)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
    times = sorted(t for _, ts in results for t in ts)
    assert len(times) == 48
    start = times[0]
    for k, t in enumerate(times):
        allowed = 10 + (t - start + 0.3) * 10.0   # full bucket + refill, 0.3 s of slack
        assert k + 1 <= allowed, f"call {k + 1} at +{t - start:.2f}s: faster than the bucket allows"
    assert times[-1] - start >= 38 * 0.1 * 0.8, "the last 38 calls waited for the refill"
    store = ShardStore.open(target, read_only=True)
    (row,) = store.rate_runs("run-1")
    assert row["calls"] == 48 and row["input_tokens"] == 480 and row["waits"] > 0 and row["wait_s"] > 0


def _die_holding(target: str) -> None:
    store = ShardStore.open(target)
    SharedLimiter(store, SCOPE, max_concurrency=1, ttl_s=2.0).acquire({"requests": 1})
    os._exit(0)  # killed mid-call: never settled


def test_a_killed_workers_reservation_expires(tmp_path):
    target = str(tmp_path / "shards.db")
    p = SPAWN.Process(target=_die_holding, args=(target,))
    p.start()
    p.join(60)
    store = ShardStore.open(target)
    limiter = SharedLimiter(store, SCOPE, max_concurrency=1, ttl_s=2.0)
    assert limiter.predicted_wait({"requests": 1})[0] > 0, "the dead worker's call still counts for a while"
    limiter.release(limiter.acquire({"requests": 1}, max_wait_s=30))   # raises LimitWaitTooLong if it never expires
    assert store.rate_scopes()[0]["state"]["inflight"] == {}


def test_the_database_away_falls_back_to_the_workers_own_back_off(caplog):
    class Away:
        def rate_update(self, *a, **k):
            raise StoreError("the shard status database x is unreachable: connection refused")

    limiter = SharedLimiter(Away(), SCOPE)
    with caplog.at_level(logging.WARNING):
        ticket = limiter.acquire({"requests": 1, "input_tokens": 10})
        limiter.settle(ticket, {"input_tokens": 10})
    assert not ticket.shared
    assert any("falls back to its own back-off" in r.getMessage() for r in caplog.records)


def test_too_long_a_wait_fails_retryable_instead_of_holding_the_slot(tmp_path):
    store = ShardStore.open(str(tmp_path / "shards.db"))
    limiter = SharedLimiter(store, SCOPE, limits={"input_tokens": (600, 60.0)}, max_wait_s=2.0)
    limiter.settle(limiter.acquire({"input_tokens": 600}), {"input_tokens": 600})
    with pytest.raises(LimitWaitTooLong, match="past the 2s a worker slot is held") as info:
        limiter.acquire({"input_tokens": 500})
    assert info.value.wait_s > 40
    assert store.rate_scopes()[0]["state"]["queue"] == {}, "a waiter that gave up leaves the queue"


# -- the runner, the real SDK, the offline server enforcing the limits -----------------------------------------
def _runner(server, store, tmp_path, **kw):
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0)
    limiter = SharedLimiter(store, SCOPE, run_id="run-1", **kw) if store is not None else None
    return ApiRunner(client, MODEL, max_tokens=64, limiter=limiter, backoff_base=0.01, max_retry_wait=1.0)


def test_the_runner_learns_the_limits_from_the_headers_and_settles_the_usage(tmp_path):
    store = ShardStore.open(str(tmp_path / "shards.db"))
    limits = RateLimits(requests_per_minute=100, input_tokens_per_minute=50_000, output_tokens_per_minute=9_000)
    with OfflineMessagesServer(ScriptedModel([text_reply("done")] * 3), rate_limits=limits) as srv:
        result = _runner(srv, store, tmp_path).run(tmp_path, "Say done.")
    assert result.stop_reason == "end_turn" and result.throttled == 0
    buckets = store.rate_scopes()[0]["state"]["buckets"]
    assert {n: b["limit"] for n, b in buckets.items()} == {"requests": 100, "input_tokens": 50_000,
                                                          "output_tokens": 9_000}
    figures = run_figures(store.rate_runs("run-1")[0], store.rate_scopes()[0]["state"])
    assert figures["calls"] == 1 and figures["input_tokens"] == result.usage.input_tokens + \
        result.usage.cache_write_tokens and figures["input_tpm_limit"] == 50_000


def test_a_spend_cap_seen_by_one_worker_stops_the_others_before_they_send(tmp_path):
    store = ShardStore.open(str(tmp_path / "shards.db"))
    with OfflineMessagesServer(ScriptedModel([text_reply("x")] * 4),
                               rate_limits=RateLimits(spend_cap=True)) as srv:
        with pytest.raises(ModelRequestError, match="spend limit") as first:
            _runner(srv, store, tmp_path).run(tmp_path, "hello")
        sent = len(srv.message_requests())
        with pytest.raises(ModelRequestError, match="limits clear anthropic:test") as second:
            _runner(srv, ShardStore.open(str(tmp_path / "shards.db")), tmp_path).run(tmp_path, "hello")
        assert len(srv.message_requests()) == sent, "the second worker sent nothing"
    assert first.value.retryable is False and second.value.retryable is False
    with pytest.raises(SpendCapReached):
        SharedLimiter(store, SCOPE).acquire({"requests": 1})
    assert store.rate_clear(SCOPE) and SharedLimiter(store, SCOPE).acquire({"requests": 1}).shared


def _one_shard(target: str, base_url: str, name: str, out) -> None:
    store = ShardStore.open(target) if target else None
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=base_url, max_retries=0)
    limiter = SharedLimiter(store, SCOPE, run_id="run-1", max_wait_s=120) if store else None
    runner = ApiRunner(client, MODEL, max_tokens=32, limiter=limiter, max_retries=3, backoff_base=0.05,
                       max_retry_wait=2.0)
    prompt = f"{name}: " + "please summarise this paragraph of text. " * 80
    ok = failed = throttled = 0
    for i in range(3):
        try:
            r = runner.run(os.getcwd(), f"{prompt} ({i})")
            ok += r.stop_reason == "end_turn"
            throttled += r.throttled
        except ModelRequestError as exc:
            failed += 1
            throttled += getattr(exc.result, "throttled", 0) if exc.result else 0
    out.put((ok, failed, throttled))


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-worker"])
def test_six_worker_processes_at_an_input_token_limit(tmp_path, shared):
    """The same load with and without the shared limiter: each worker alone retries into 429s (and may run out
    of retries); sharing, the workers wait their turn and no call is refused."""
    target = str(tmp_path / "shards.db") if shared else ""
    limits = RateLimits(input_tokens_per_minute=12_000)
    replies = [text_reply("ok")] * 40
    with OfflineMessagesServer(ScriptedModel(replies), rate_limits=limits) as srv:
        out = SPAWN.Queue()
        procs = [SPAWN.Process(target=_one_shard, args=(target, srv.base_url, f"w{i}", out)) for i in range(6)]
        for p in procs:
            p.start()
        results = [out.get(timeout=240) for _ in procs]
        for p in procs:
            p.join(30)
        rejected = srv.limiter.rejected
    ok = sum(r[0] for r in results)
    if shared:
        assert ok == 18 and rejected <= 1, f"shared: {ok} of 18 done, {rejected} calls answered 429"
    else:
        assert rejected >= 3, f"per worker: only {rejected} 429s, the load did not reach the limit"
