"""A run's figures as every face prints them: ``airflow-worktree report``, the Markdown report and the dashboard
(whose JSON carries these texts, so its page formats no figure itself). One wording, one rounding:

- tokens: ``input 12,908 (uncached 0 + cache read 11,000 + cache write 1,908), output 256``; input counts
  every token sent, cached or not (the API's ``input_tokens`` is only the uncached part); in a table
  ``12,908/256`` under the heading :data:`TOKENS_HEADING`;
- durations: one decimal, ``0.2s``, ``2.5 min``, ``1.3 h``;
- cost: ``$0.0123``, with :data:`OFFLINE_MARK` when the run used the offline test double (nothing billed).

Plain Python, no import beyond the standard library.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["NO_SHARDS", "OFFLINE_MARK", "TOKENS_HEADING", "format_cost", "format_count", "format_duration",
           "format_tokens", "format_tokens_short", "input_total", "is_offline", "any_offline"]

#: What a run that planned no shard says, everywhere (it is not an error: nothing matched the task's files).
NO_SHARDS = "this run planned no shards (nothing matched the task's files)"
#: The mark of a run (or shard) against the offline test double: its cost is the list price, never billed.
OFFLINE_MARK = "offline test double, not billed"
#: The heading of a table column of :func:`format_tokens_short`.
TOKENS_HEADING = "tokens in/out"


def _int(d: Mapping[str, Any], key: str) -> int:
    return int(d.get(key) or 0)


def input_total(d: Mapping[str, Any]) -> int:
    """Every input token of a shard, attempt or totals row: uncached plus cache reads plus cache writes."""
    return _int(d, "input_tokens") + _int(d, "cache_read_tokens") + _int(d, "cache_write_tokens")


def format_count(n: Any) -> str:
    """A token count with thousands separators: ``12,908``."""
    return f"{int(n or 0):,}"


def format_tokens(d: Mapping[str, Any]) -> str:
    """``input 12,908 (uncached 0 + cache read 11,000 + cache write 1,908), output 256``."""
    return (f"input {format_count(input_total(d))} (uncached {format_count(d.get('input_tokens'))} + cache read "
            f"{format_count(d.get('cache_read_tokens'))} + cache write {format_count(d.get('cache_write_tokens'))}), "
            f"output {format_count(d.get('output_tokens'))}")


def format_tokens_short(d: Mapping[str, Any]) -> str:
    """``12,908/256``: input (all of it, as :func:`format_tokens`) / output, for a table cell."""
    return f"{format_count(input_total(d))}/{format_count(d.get('output_tokens'))}"


def format_duration(seconds: float | None, none: str = "-") -> str:
    """One decimal: ``0.2s`` under two minutes, ``2.5 min`` under two hours, else ``1.3 h``; ``none`` for None."""
    if seconds is None:
        return none
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_cost(usd: Any, offline: bool = False) -> str:
    """``$0.0123``, followed by ``(offline test double, not billed)`` for a run against the offline server."""
    return f"${float(usd or 0):.4f}" + (f" ({OFFLINE_MARK})" if offline else "")


def is_offline(row: Mapping[str, Any]) -> bool:
    """Whether a shard row's result says it ran against the offline test double."""
    summary = row.get("result_summary")
    return bool(isinstance(summary, Mapping) and summary.get("offline"))


def any_offline(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any shard of a run ran against the offline test double."""
    return any(is_offline(r) for r in rows)
