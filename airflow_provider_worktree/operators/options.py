"""The operators' settings: the shard's ``budget`` and the maintenance operator's ``runner_options``, and the
error a bad setting fails a task with (:class:`InvalidMaintenanceConfig`).

Each group is one mapping, the way the official anthropic provider's operators take ``budget`` and
``session_kwargs``: a templated field whose values Jinja renders one by one (``{"max_turns": "{{ params.max_turns
}}"}``). The flat keywords they replace (``max_turns=``, ``model=``...) still work for one minor release, with a
``DeprecationWarning``. Values arrive as text when a DAG renders without native objects, so numbers are read
with :func:`templated_number`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners import Budget, PriceTable
from airflow_provider_worktree.version_compat import AirflowFailException

#: ``budget`` keys and their defaults: caps of one shard across all its attempts (``max_turns`` and
#: ``max_tokens`` per run and per model call). ``prices``: ``{model: {"input": $/MTok, "output": ...,
#: "cache_write": ..., "cache_read": ...}}`` overrides of the list prices ``max_cost_usd`` is counted in.
BUDGET_DEFAULTS: dict[str, Any] = {
    "max_turns": 20, "max_tokens": 4096, "max_input_tokens": None, "max_output_tokens": None,
    "max_total_tokens": None, "max_cost_usd": None, "prices": None,
}
#: ``runner_options`` keys and their defaults: the model (default: the Anthropic connection's), and the lease the
#: worker holds while the runner works (seconds between heartbeats; seconds without one before another host may
#: take the shard over, default: the store's 600 s).
RUNNER_DEFAULTS: dict[str, Any] = {"model": None, "heartbeat_interval": 30.0, "lease_timeout": None,
                                   "rate_limit": "shared"}
#: Keys of ``runner_options["rate_limit"]`` as a mapping: the limits per minute are this deployment's share of the
#: organisation's (the API's headers teach the rest); ``max_wait``: seconds one call may wait inside a worker slot.
RATE_LIMIT_KEYS = ("scope", "requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute",
                   "max_concurrency", "max_wait")



class InvalidMaintenanceConfig(AirflowFailException, ConfigurationError):
    """A configuration error of the task: fails it without retry, and is still a ``ConfigurationError``
    (a ``ValueError``) for callers that catch those."""


_TOKEN_LIMITS = ("max_turns", "max_tokens", "max_input_tokens", "max_output_tokens", "max_total_tokens")


def templated_number(name: str, value: Any, kind: type = int) -> Any:
    """A templated numeric parameter (Params arrive as text): None for None, "" or "None"; else a positive int
    (``kind=int``) or a non-negative float (``kind=float``), or a clear error naming the parameter."""
    if value in ("", "None", None):
        return None
    what = "a positive integer" if kind is int else "a non-negative number"
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be {what}, got {value!r}.") from None
    if number < (1 if kind is int else 0):
        raise ConfigurationError(f"{name} must be {what}, got {number}.")
    return number


def is_templated(value: Any) -> bool:
    """Whether ``value``, or a value of the mapping, is still a Jinja template (checked once rendered)."""
    if isinstance(value, Mapping):
        return any(is_templated(v) for v in value.values())
    return isinstance(value, str) and "{{" in value


def _known(group: str, given: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` as a dict of known keys, or a clear error."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(f"{group} must be a mapping such as {{{next(iter(defaults))!r}: ...}}, "
                                 f"got {given!r:.200}.")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigurationError(f"{group} has unknown keys {unknown}: it takes {', '.join(defaults)}.")
    return dict(given)


def grouped(group: str, given: Any, defaults: Mapping[str, Any], flat: Mapping[str, Any], owner: str) -> Any:
    """The ``group`` mapping an operator keeps: ``given`` over ``defaults``, with the deprecated flat keywords
    that were passed (``flat``, None when not) folded in, each with a ``DeprecationWarning``. A templated string
    (``"{{ params.budget }}"``) is kept as it is and checked once rendered."""
    passed = {name: value for name, value in flat.items() if value is not None}
    for name in passed:
        warnings.warn(f"{owner}({name}=...) is deprecated and goes away in the next minor release: pass "
                      f"{group}={{{name!r}: ...}} instead.", DeprecationWarning, stacklevel=4)
    if isinstance(given, str):
        if passed:
            raise ConfigurationError(f"{', '.join(passed)} cannot be given beside a templated {group}={given!r}: "
                                     f"put them in the {group} mapping.")
        return given
    given = _known(group, given, defaults)
    twice = sorted(set(passed) & set(given))
    if twice:
        raise ConfigurationError(f"{', '.join(twice)} given twice, in {group} and as the deprecated keyword: "
                                 f"keep the {group} entry.")
    return {**defaults, **passed, **given}


def checked_budget(budget: Any, defaults: Mapping[str, Any] = BUDGET_DEFAULTS) -> dict[str, Any]:
    """The rendered ``budget``, its numbers read (``max_tokens`` falls back to its default)."""
    checked = {**defaults, **_known("budget", budget, defaults)}
    for name in _TOKEN_LIMITS:
        checked[name] = templated_number(name, checked[name])
    checked["max_tokens"] = checked["max_tokens"] or defaults["max_tokens"]
    checked["max_cost_usd"] = templated_number("max_cost_usd", checked["max_cost_usd"], float)
    if checked["prices"] is not None and not isinstance(checked["prices"], Mapping):
        raise ConfigurationError(f"budget['prices'] must map model ids to prices, e.g. {{'claude-sonnet-4-6': "
                                 f"{{'input': 3, 'output': 15}}}}, got {checked['prices']!r:.200}.")
    return checked


def price_table(budget: Mapping[str, Any]) -> PriceTable | None:
    """The price table of a checked budget (None: the list prices)."""
    return PriceTable(budget["prices"]) if budget.get("prices") else None


def shard_budget(budget: Mapping[str, Any]) -> Budget:
    """The per-shard :class:`Budget` of a checked budget mapping."""
    return Budget(max_input_tokens=budget["max_input_tokens"], max_output_tokens=budget["max_output_tokens"],
                  max_total_tokens=budget["max_total_tokens"], max_cost_usd=budget["max_cost_usd"],
                  prices=price_table(budget))


def check_lease(heartbeat_interval: float, lease_timeout: float | None) -> None:
    """A heartbeat that keeps the lease: positive, and at most half the lease timeout."""
    if heartbeat_interval is None or heartbeat_interval <= 0:
        raise ConfigurationError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval}.")
    if lease_timeout is not None and lease_timeout < 2 * heartbeat_interval:
        raise ConfigurationError(
            f"lease_timeout={lease_timeout}s must be at least twice heartbeat_interval={heartbeat_interval}s, "
            "or a live worker's lease could be taken over between two heartbeats."
        )


def checked_runner_options(options: Any) -> dict[str, Any]:
    """The rendered ``runner_options``, its numbers read and the lease settings checked."""
    checked = {**RUNNER_DEFAULTS, **_known("runner_options", options, RUNNER_DEFAULTS)}
    checked["model"] = checked["model"] or None
    checked["heartbeat_interval"] = templated_number("heartbeat_interval", checked["heartbeat_interval"], float)
    checked["lease_timeout"] = templated_number("lease_timeout", checked["lease_timeout"], float)
    check_lease(checked["heartbeat_interval"], checked["lease_timeout"])
    checked["rate_limit"] = checked_rate_limit(checked["rate_limit"])
    return checked


def checked_rate_limit(value: Any) -> dict[str, Any] | None:
    """``runner_options["rate_limit"]``: ``"shared"`` (the default: one limiter in the shard database for every
    worker using the same Anthropic connection), ``"off"`` (each worker retries on its own), or a mapping of
    :data:`RATE_LIMIT_KEYS`. Returns the mapping, or None for off."""
    if value in (None, "", "off", "none", "None", False):
        return None
    if value in ("shared", "on", True):
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"runner_options['rate_limit']={value!r}: give 'shared', 'off' or a mapping of "
                                 f"{', '.join(RATE_LIMIT_KEYS)}.")
    unknown = sorted(set(value) - set(RATE_LIMIT_KEYS))
    if unknown:
        raise ConfigurationError(f"runner_options['rate_limit'] has unknown keys {unknown}: use "
                                 f"{', '.join(RATE_LIMIT_KEYS)}.")
    checked: dict[str, Any] = {"scope": str(value["scope"]) if value.get("scope") else None}
    for key in RATE_LIMIT_KEYS[1:]:
        checked[key] = templated_number(f"rate_limit.{key}", value.get(key), float if key == "max_wait" else int)
    return checked
