"""Budget.dollar_cap: the token caps as the dollars they can cost, for a runner that enforces dollars only."""

from __future__ import annotations

import pytest

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners import Budget, PriceTable

HAIKU = "claude-haiku-4-5"   # $1 in, $1.25 cache write, $5 out per MTok in the default table


def test_both_token_caps_cost_their_dearest_kind():
    cap, how = Budget(max_input_tokens=1_000_000, max_output_tokens=100_000).dollar_cap(HAIKU)
    assert cap == pytest.approx(1.25 + 0.5) and HAIKU in how and "max_input_tokens=1000000" in how


def test_the_total_cap_bounds_both_sides_and_the_lowest_bound_wins():
    assert Budget(max_total_tokens=100_000).dollar_cap(HAIKU)[0] == pytest.approx(0.5)
    both = Budget(max_input_tokens=10_000, max_output_tokens=10_000, max_total_tokens=1_000_000)
    assert both.dollar_cap(HAIKU)[0] == pytest.approx(10_000 * 1.25e-6 + 10_000 * 5e-6)


def test_a_lower_dollar_cap_wins_and_a_dollar_cap_alone_passes_through():
    assert Budget(max_input_tokens=1_000_000, max_output_tokens=100_000, max_cost_usd=0.3).dollar_cap(HAIKU) == (
        0.3, "max_cost_usd=$0.3")
    assert Budget(max_cost_usd=2).dollar_cap(None)[0] == 2
    assert Budget().dollar_cap(HAIKU) == (None, "no cap")


def test_custom_prices_and_unknown_models_count():
    table = PriceTable({"my-model": {"input": 10, "output": 10}}, include_defaults=False)
    assert Budget(max_total_tokens=1_000_000, prices=table).dollar_cap("my-model")[0] == pytest.approx(12.5)
    # an unknown model is priced at the dearest list price, so the cap never undercounts
    assert Budget(max_total_tokens=1_000_000).dollar_cap("claude-next-9")[0] == pytest.approx(75.0)


def test_one_sided_token_cap_without_dollars_is_refused_with_the_fix():
    with pytest.raises(ConfigurationError, match=r"max_output_tokens=5 bounds only one side.*max_cost_usd"):
        Budget(max_output_tokens=5).dollar_cap(HAIKU)
    assert Budget(max_output_tokens=5, max_cost_usd=1.0).dollar_cap(HAIKU)[0] == 1.0
