"""The offline server enforces an organisation's rate limits like the Messages API (issue 21): the real
``anthropic`` SDK over HTTP, the documented ``anthropic-ratelimit-*`` headers on every response, a continuously
refilling bucket, 429 with ``retry-after`` when a bucket is empty, cache reads not counted as input, and the spend
cap (429 without ``retry-after``) that the runner does not retry."""

from __future__ import annotations

from datetime import datetime

import anthropic
import pytest

from airflow_provider_worktree.core.runners import ApiRunner, ModelRequestError
from airflow_provider_worktree.testing import OfflineMessagesServer, RateLimits, ScriptedModel, text_reply
from airflow_provider_worktree.testing.ratelimits import OrgLimiter

MODEL = "claude-sonnet-4-6"
PREFIX = "anthropic-ratelimit-"


def _client(server: OfflineMessagesServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0)


def _ask(client, text: str, max_tokens: int = 64, cached: bool = False):
    block = {"type": "text", "text": text, **({"cache_control": {"type": "ephemeral"}} if cached else {})}
    return client.messages.with_raw_response.create(model=MODEL, max_tokens=max_tokens,
                                                    messages=[{"role": "user", "content": [block]}])


def test_every_response_carries_the_documented_headers():
    limits = RateLimits(requests_per_minute=50, input_tokens_per_minute=30_000, output_tokens_per_minute=8_000)
    with OfflineMessagesServer(ScriptedModel([text_reply("ok")] * 3), rate_limits=limits) as srv:
        raw = _ask(_client(srv), "hello there")
    h = raw.headers
    for kind, limit in (("requests", 50), ("input-tokens", 30_000), ("output-tokens", 8_000)):
        assert h[f"{PREFIX}{kind}-limit"] == str(limit)
        assert 0 <= int(h[f"{PREFIX}{kind}-remaining"]) < limit
        datetime.fromisoformat(h[f"{PREFIX}{kind}-reset"].replace("Z", "+00:00"))   # RFC 3339
    assert int(h[f"{PREFIX}requests-remaining"]) == 49
    assert h[f"{PREFIX}tokens-limit"] in ("30000", "8000"), "the most restrictive token bucket"
    usage = raw.parse().usage
    assert int(h[f"{PREFIX}output-tokens-remaining"]) == 8_000 - usage.output_tokens, "estimate corrected"


def test_an_empty_bucket_answers_429_with_retry_after_and_takes_nothing():
    with OfflineMessagesServer(ScriptedModel([text_reply("ok")] * 5),
                               rate_limits=RateLimits(requests_per_minute=2)) as srv:
        client = _client(srv)
        _ask(client, "one")
        _ask(client, "two")
        with pytest.raises(anthropic.RateLimitError) as info:
            _ask(client, "three")
        assert srv.limiter.rejected == 1 and srv.limiter.admitted == 2
    response = info.value.response
    assert response.status_code == 429 and info.value.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(response.headers["retry-after"]) <= 30, "a sixtieth of the limit per second: ~30 s for one"
    assert response.headers[f"{PREFIX}requests-remaining"] == "0"


def test_the_bucket_refills_continuously():
    now = [1000.0]
    limiter = OrgLimiter(RateLimits(input_tokens_per_minute=600), clock=lambda: now[0], wall=lambda: 0.0)
    limiter.admit(600, 1)
    with pytest.raises(Exception) as info:
        limiter.admit(100, 1)
    assert info.value.headers["retry-after"] == "10", "100 tokens at 10 a second"
    now[0] += 5
    with pytest.raises(Exception):
        limiter.admit(100, 1)                     # half refilled: 50 of 100
    now[0] += 5
    headers, _ = limiter.admit(100, 1)
    assert headers[f"{PREFIX}input-tokens-remaining"] == "0"
    now[0] += 600
    assert limiter.admit(1, 1)[0][f"{PREFIX}input-tokens-remaining"] == "599", "never above the limit"


def test_cache_reads_do_not_count_toward_input_tokens():
    prompt = "a long stable prefix " * 400             # ~2,000+ tokens
    limits = RateLimits(input_tokens_per_minute=100_000)
    with OfflineMessagesServer(ScriptedModel([text_reply("ok")] * 3), rate_limits=limits) as srv:
        client = _client(srv)
        first = _ask(client, prompt, cached=True)
        second = _ask(client, prompt, cached=True)
    used_first = 100_000 - int(first.headers[f"{PREFIX}input-tokens-remaining"])
    used_second = int(first.headers[f"{PREFIX}input-tokens-remaining"]) - \
        int(second.headers[f"{PREFIX}input-tokens-remaining"])
    assert second.parse().usage.cache_read_input_tokens > 1000
    assert used_first > 1000 and used_second < used_first / 10, (used_first, used_second)


def test_the_spend_cap_is_a_429_without_retry_after_that_the_runner_does_not_retry(git_repo):
    with OfflineMessagesServer(ScriptedModel([text_reply("never")] * 3),
                               rate_limits=RateLimits(spend_cap=True)) as srv:
        with pytest.raises(anthropic.RateLimitError) as info:
            _ask(_client(srv), "hi")
        assert "retry-after" not in info.value.response.headers
        runner = ApiRunner(anthropic.Anthropic(api_key="sk-ant-test", base_url=srv.base_url), MODEL, max_retries=5)
        with pytest.raises(ModelRequestError, match="spend limit") as err:
            runner.run(git_repo, "go")
        assert len(srv.message_requests()) == 2, "one call by the runner, no retry"
    assert err.value.retryable is False and err.value.status_code == 429
    from airflow_provider_worktree.core.lifecycle import is_permanent

    assert is_permanent(err.value), "the task is not retried either"


def test_limits_are_checked_and_off_by_default():
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimits(requests_per_minute=0)
    with OfflineMessagesServer(ScriptedModel([text_reply("ok")])) as srv:
        raw = _ask(_client(srv), "hi")
        assert srv.limiter is None and not any(k.startswith(PREFIX) for k in raw.headers)
