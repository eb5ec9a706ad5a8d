"""The shard database's record of shared rate limits (schema version 5). Plain Python, no Airflow; mixed into
:class:`~.shards.ShardStore`.

``rate_limits``      one row per limiter scope (an organisation's Messages API key, a forge host): the scope's
                     whole shared state as one JSON document (buckets, reservations in flight, the wait queue,
                     a 429's block, a spend cap, the adaptive concurrency). The store only locks, reads and writes
                     it; what the document means is :mod:`airflow_provider_worktree.core.ratelimit`'s (the store
                     does not import it: the limiter passes its update function in).
``rate_limit_runs``  per scope and DAG run: calls, 429s, waits and time spent waiting, tokens the calls were
                     charged, the first and last call's time; what the report and the CLI show.

Times in both tables are epoch seconds from the clock of the process that writes (the limiter's buckets refill
by elapsed time, so hosts need NTP-synchronised clocks; a jump is absorbed, see ``core.ratelimit.state``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_worktree.core.store._common import _ts

#: The counters of ``rate_limit_runs`` a limiter's update may add to.
RUN_COUNTERS = ("calls", "throttled", "waits", "wait_s", "input_tokens", "output_tokens")
_RUN_COLS = ("scope", "run_id", *RUN_COUNTERS, "first_at", "last_at")


def _epoch(value: _dt.datetime) -> float:
    return value.replace(tzinfo=_dt.timezone.utc).timestamp() if value.tzinfo is None else value.timestamp()


class RateLimitRecords:
    """Shared rate-limit state of :class:`~.shards.ShardStore` (uses its ``_tx``/``_q``/``_now``)."""

    def rate_now(self) -> float:
        """The store's clock as epoch seconds (the limiter's time base)."""
        return _epoch(self._now())

    def rate_update(self, scope: str, update: Callable[[dict[str, Any] | None, float], tuple[dict[str, Any], Any,
                                                                                             Mapping[str, Any]]],
                    run_id: str | None = None) -> Any:
        """Run ``update(state, now)`` on the scope's state under its row lock and write what it returns.

        ``state`` is the stored document (None the first time); ``update`` returns ``(new_state, result,
        run_delta)``: ``run_delta`` adds to the run's counters (:data:`RUN_COUNTERS`; ``first_at``/``last_at`` are
        kept as the earliest and latest given). Returns ``result``. One transaction: two workers never interleave."""
        d = self.dialect

        def _write(cur: Any) -> Any:
            now = self.rate_now()
            row = self._q(cur, f"SELECT state FROM rate_limits WHERE scope = ?{d.row_lock}", (scope,)).fetchone()
            if row is None:
                self._q(cur, "INSERT INTO rate_limits (scope, state, updated_at) VALUES (?, '{}', ?) "
                             "ON CONFLICT (scope) DO NOTHING", (scope, _ts(self._now())))
                row = self._q(cur, f"SELECT state FROM rate_limits WHERE scope = ?{d.row_lock}", (scope,)).fetchone()
            state = json.loads(row[0]) if row and row[0] not in (None, "", "{}") else None
            new_state, result, delta = update(state, now)
            self._q(cur, "UPDATE rate_limits SET state = ?, updated_at = ? WHERE scope = ?",
                    (json.dumps(new_state, separators=(",", ":")), _ts(self._now()), scope))
            if run_id and delta:
                self._add_run_counters(cur, scope, run_id, delta, now)
            return result

        return self._tx(_write)

    def _add_run_counters(self, cur: Any, scope: str, run_id: str, delta: Mapping[str, Any], now: float) -> None:
        values = [float(delta.get(c) or 0) if c == "wait_s" else int(delta.get(c) or 0) for c in RUN_COUNTERS]
        first = delta.get("first_at", now if delta.get("calls") else None)
        last = delta.get("last_at", now if delta.get("calls") else None)
        sets = ", ".join(f"{c} = rate_limit_runs.{c} + excluded.{c}" for c in RUN_COUNTERS)
        self._q(cur, f"INSERT INTO rate_limit_runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' * len(_RUN_COLS))}) "
                     f"ON CONFLICT (scope, run_id) DO UPDATE SET {sets}, "
                     "first_at = CASE WHEN rate_limit_runs.first_at IS NULL OR excluded.first_at < "
                     "rate_limit_runs.first_at THEN excluded.first_at ELSE rate_limit_runs.first_at END, "
                     "last_at = CASE WHEN rate_limit_runs.last_at IS NULL OR excluded.last_at > "
                     "rate_limit_runs.last_at THEN excluded.last_at ELSE rate_limit_runs.last_at END",
                (scope, run_id, *values, first, last))

    def rate_scopes(self) -> list[dict[str, Any]]:
        """Every scope's stored state: ``{scope, state, updated_at}`` (state decoded; empty dict when unset)."""
        def _read(cur: Any) -> list[dict[str, Any]]:
            rows = self._q(cur, "SELECT scope, state, updated_at FROM rate_limits ORDER BY scope").fetchall()
            return [{"scope": r[0], "state": json.loads(r[1] or "{}"), "updated_at": _ts_text(r[2])} for r in rows]

        return self._tx(_read, write=False)

    def rate_runs(self, run_id: str | None = None, scope: str | None = None) -> list[dict[str, Any]]:
        """The per-run counters (``scope, run_id, calls, throttled, waits, wait_s, input_tokens, output_tokens,
        first_at, last_at``), optionally of one run and/or one scope, most recent first."""
        sql, params = f"SELECT {', '.join(_RUN_COLS)} FROM rate_limit_runs WHERE 1 = 1", []
        if run_id is not None:
            sql, params = sql + " AND run_id = ?", [*params, run_id]
        if scope is not None:
            sql, params = sql + " AND scope = ?", [*params, scope]
        sql += " ORDER BY last_at DESC, scope"
        return self._tx(lambda cur: [dict(zip(_RUN_COLS, r)) for r in self._q(cur, sql, params).fetchall()],
                        write=False)

    def rate_clear(self, scope: str) -> bool:
        """Forget a scope's shared state (its learnt limits, block, spend cap and reservations); the per-run
        counters stay. Returns whether there was a state."""
        def _write(cur: Any) -> bool:
            self._q(cur, "DELETE FROM rate_limits WHERE scope = ?", (scope,))
            return cur.rowcount > 0

        return self._tx(_write)


def _ts_text(value: Any) -> Any:
    return _ts(value) if isinstance(value, _dt.datetime) else value
