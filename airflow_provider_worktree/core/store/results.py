"""Writes of a lease holder: heartbeats, outcomes, attempts, release (each fenced by the lease token)."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
)
from airflow_provider_worktree.core.store._common import (
    _ATT_COLS_SQL,
    _COLS_SQL,
    _INT_RESULT_FIELDS,
    _USAGE_FIELDS,
    ATTEMPT_STATUSES,
    COMPLETED,
    FAILED,
    RESULT_FIELDS,
    _ts,
    bound_error,
)
from airflow_provider_worktree.core.store.errors import Lease


class ResultRecords:
    """Fenced writes of :class:`~.shards.ShardStore` (uses its ``_tx``/``_q``/``_fenced``)."""

    def heartbeat(self, lease: Lease) -> dict[str, Any]:
        """Refresh the lease's heartbeat (and ``lease_expires_at``). Raises :class:`LeaseLostError` if fenced out.

        Returns the updated row."""
        now = self._now()
        return self._fenced(lease, "heartbeat", "heartbeat_at = ?, lease_expires_at = ?, updated_at = ?",
                            [_ts(now), _ts(now + _dt.timedelta(seconds=self.stale_after_s)), _ts(now)])

    def _result_sets(self, result: dict[str, Any]) -> tuple[list[str], list[Any]]:
        unknown = set(result) - set(RESULT_FIELDS) - {"result_summary"}
        if unknown:
            raise ConfigurationError(f"unknown result field(s) {sorted(unknown)}: allowed are {', '.join(RESULT_FIELDS)}")
        sets, params = [], []
        for key, value in result.items():
            if value is None:
                continue
            if key in ("summary", "result_summary"):
                sets.append("result_summary = ?")
                params.append(json.dumps(value, default=str))
            elif key == "files_changed":
                sets.append("files_changed = ?")
                params.append(json.dumps(list(value)))
            elif key in _INT_RESULT_FIELDS:
                sets.append(f"{key} = ?")
                params.append(int(value))
            elif key == "cost_usd":
                sets.append("cost_usd = ?")
                params.append(float(value))
            else:
                sets.append(f"{key} = ?")
                params.append(str(value))
        return sets, params

    def _finish_fenced(self, lease: Lease, action: str, status: str, error_message: str | None,
                       result: dict[str, Any]) -> dict[str, Any]:
        """Fenced: the shard row's outcome, this attempt's row (its own spend) and the shard row's cumulative
        spend, in one transaction."""
        if not isinstance(lease, Lease):
            raise ConfigurationError(f"{action} needs a Lease from assign_shard (or Lease.from_dict), got {lease!r}")
        usage = {k: result.pop(k) for k in _USAGE_FIELDS if k in result}
        sets, params = self._result_sets(result)
        sets = [f"status = '{status}'", "completed_at = ?", "updated_at = ?", "error_message = ?",
                "lease_expires_at = NULL", *sets]

        def _write(cur: Any) -> dict[str, Any]:
            nowt = _ts(self._now())
            self._q(cur, f"UPDATE shard_status SET {', '.join(sets)} WHERE run_id = ? AND shard_id = ? "
                         "AND lease_token = ? AND status = 'running'",
                    [nowt, nowt, error_message, *params, lease.run_id, lease.shard_id, lease.token])
            if cur.rowcount != 1:
                self._q(cur, "SELECT status, worker_id, lease_token, attempt FROM shard_status "
                             "WHERE run_id = ? AND shard_id = ?", (lease.run_id, lease.shard_id))
                raise self._lease_lost(lease, action, cur.fetchone())
            self._write_attempt(cur, lease, status, error_message, usage, result, nowt)
            return self._refresh_totals(cur, lease.run_id, lease.shard_id)

        return self._tx(_write)

    def _write_attempt(self, cur: Any, lease: Lease, status: str, error_message: str | None,
                       usage: dict[str, Any], result: dict[str, Any], nowt: str) -> None:
        vals = [max(0, int(usage.get(k) or 0)) for k in _INT_RESULT_FIELDS]
        cost = max(0.0, float(usage.get("cost_usd") or 0.0))
        self._q(cur, "INSERT INTO shard_attempts (run_id, shard_id, attempt, worker_id, lease_token, ended_at, "
                     "status, error_message, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                     "cost_usd, isolation, commit_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (run_id, shard_id, attempt) DO UPDATE SET ended_at = excluded.ended_at, "
                     "status = excluded.status, error_message = excluded.error_message, "
                     "input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, "
                     "cache_read_tokens = excluded.cache_read_tokens, "
                     "cache_write_tokens = excluded.cache_write_tokens, cost_usd = excluded.cost_usd, "
                     "isolation = COALESCE(excluded.isolation, shard_attempts.isolation), "
                     "commit_sha = COALESCE(excluded.commit_sha, shard_attempts.commit_sha)",
                (lease.run_id, lease.shard_id, lease.attempt, lease.worker_id, lease.token, nowt, status,
                 error_message, *vals, cost, result.get("isolation"), result.get("commit_sha")))

    def _refresh_totals(self, cur: Any, run_id: str, shard_id: str) -> dict[str, Any]:
        sub = ("(SELECT COALESCE(SUM({c}), 0) FROM shard_attempts a WHERE a.run_id = shard_status.run_id "
               "AND a.shard_id = shard_status.shard_id)")
        sets = ", ".join(f"{c} = {sub.format(c=c)}" for c in _USAGE_FIELDS)
        self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? RETURNING {_COLS_SQL}",
                (run_id, shard_id))
        return self._row(cur, cur.fetchone())  # type: ignore[return-value]

    def complete(self, lease: Lease, **result: Any) -> dict[str, Any]:
        """Mark the shard completed with its result fields (``branch, commit_sha, files_changed, diffstat,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, summary, isolation``).

        The token and cost fields are this attempt's spend: they go to the attempt's ``shard_attempts`` row,
        and the shard row's token and cost columns become the sum over all its attempts.
        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        return self._finish_fenced(lease, "complete", COMPLETED, None, dict(result))

    def fail(self, lease: Lease, error_message: str, **result: Any) -> dict[str, Any]:
        """Mark the shard failed with ``error_message`` (bounded to :data:`MAX_ERROR_CHARS`) and any result
        fields known so far (this attempt's tokens spent, as for :meth:`complete`).

        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        return self._finish_fenced(lease, "fail", FAILED, bound_error(error_message), dict(result))

    def record_attempt(self, lease: Lease, status: str, error_message: str | None = None,
                       **usage: Any) -> dict[str, Any]:
        """Record an attempt's own outcome and spend without touching the shard's result: for an attempt that
        was fenced out (``status='lost'``) but spent tokens. Not fenced (the spend happened); the shard row's
        cumulative token and cost columns are refreshed. Returns the shard row."""
        if status not in ATTEMPT_STATUSES:
            raise ConfigurationError(f"attempt status {status!r}: use one of {', '.join(ATTEMPT_STATUSES)}")
        unknown = set(usage) - set(_USAGE_FIELDS) - {"isolation", "commit_sha"}
        if unknown:
            raise ConfigurationError(f"unknown attempt field(s) {sorted(unknown)}: allowed are "
                                     f"{', '.join(_USAGE_FIELDS)}, isolation, commit_sha")
        nowt = _ts(self._now())
        err = None if error_message is None else bound_error(error_message)

        def _write(cur: Any) -> dict[str, Any]:
            self._write_attempt(cur, lease, status, err, usage, usage, nowt)
            return self._refresh_totals(cur, lease.run_id, lease.shard_id)

        return self._tx(_write)

    def update_attempt(self, lease: Lease, *, isolation: str | None = None, remote_sha: str | None = None) -> None:
        """Note facts about a running attempt on its ``shard_attempts`` row (and ``isolation`` on the shard
        row while the lease is current)."""
        def _write(cur: Any) -> None:
            self._q(cur, "UPDATE shard_attempts SET isolation = COALESCE(?, isolation), "
                         "remote_sha = COALESCE(?, remote_sha) WHERE run_id = ? AND shard_id = ? AND attempt = ?",
                    (isolation, remote_sha, lease.run_id, lease.shard_id, lease.attempt))
            if isolation is not None:
                self._q(cur, "UPDATE shard_status SET isolation = ? WHERE run_id = ? AND shard_id = ? "
                             "AND lease_token = ?", (isolation, lease.run_id, lease.shard_id, lease.token))

        self._tx(_write)

    def list_attempts(self, run_id: str, shard_id: str | None = None) -> list[dict[str, Any]]:
        """The ``shard_attempts`` rows of a run (or one shard), ordered by shard id and attempt."""
        sql = f"SELECT {_ATT_COLS_SQL} FROM shard_attempts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if shard_id is not None:
            sql += " AND shard_id = ?"
            params.append(shard_id)
        sql += " ORDER BY shard_id, attempt"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def prior_spend(self, run_id: str, shard_id: str, before_attempt: int) -> dict[str, Any]:
        """What the shard's attempts numbered below ``before_attempt`` spent: ``{input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, cost_usd, attempts}`` (sums)."""
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in _USAGE_FIELDS)

        def _read(cur: Any) -> dict[str, Any]:
            self._q(cur, f"SELECT {sums}, COUNT(*) FROM shard_attempts WHERE run_id = ? AND shard_id = ? "
                         "AND attempt < ?", (run_id, shard_id, int(before_attempt)))
            r = cur.fetchone()
            out: dict[str, Any] = {k: int(v) for k, v in zip(_INT_RESULT_FIELDS, r)}
            out["cost_usd"], out["attempts"] = float(r[4]), int(r[5])
            return out

        return self._tx(_read, write=False)

    def release(self, lease: Lease) -> dict[str, Any]:
        """Give the shard back: status pending, ready for another claim (the attempt stays counted).

        Fenced: raises :class:`LeaseLostError` if the lease is no longer current. Returns the updated row."""
        nowt = _ts(self._now())
        row = self._fenced(lease, "release", "status = 'pending', started_at = NULL, heartbeat_at = NULL, "
                           "lease_expires_at = NULL, completed_at = NULL, updated_at = ?", [nowt])
        self._tx(lambda cur: self._q(cur, "UPDATE shard_attempts SET status = 'released', ended_at = ? WHERE "
                                          "run_id = ? AND shard_id = ? AND attempt = ? AND status = 'running'",
                                     (nowt, lease.run_id, lease.shard_id, lease.attempt)))
        return row
