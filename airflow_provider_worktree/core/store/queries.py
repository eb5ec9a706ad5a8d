"""Reads of the shard database: shards, stale leases and their reset, summaries, runs."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Sequence

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
)
from airflow_provider_worktree.core.store._common import (
    _COLS_SQL,
    SHARD_ID_RE,
    STATUSES,
    _norm_ts,
    _ts,
)
from airflow_provider_worktree.core.store.errors import ShardNotFound


class ShardQueries:
    """Reads (and the stale reset) of :class:`~.shards.ShardStore`."""

    # ---------------------------------------------------------------------------------------- reads
    def get_shard(self, run_id: str, shard_id: str) -> dict[str, Any]:
        """The shard's row as a dict (column name -> value; JSON columns decoded). Raises :class:`ShardNotFound`."""
        def _get(cur: Any) -> dict[str, Any] | None:
            self._q(cur, f"SELECT {_COLS_SQL} FROM shard_status WHERE run_id = ? AND shard_id = ?", (run_id, shard_id))
            return self._row(cur, cur.fetchone())

        row = self._tx(_get, write=False)
        if row is None:
            raise ShardNotFound(f"shard {shard_id!r} of run {run_id!r} is not in {self.description}: check the "
                                "run id and shard id (list_shards / airflow-worktree status)")
        return row

    def list_shards(self, run_id: str | None = None, status: str | Sequence[str] | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Rows (dicts) filtered by run and status (one status or several), ordered by run, priority desc,
        shard id; at most ``limit``."""
        where, params = self._filters(run_id, status)
        sql = f"SELECT {_COLS_SQL} FROM shard_status{where} ORDER BY run_id, priority DESC, shard_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def _filters(self, run_id: str | None, status: str | Sequence[str] | None,
                 ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            bad = [s for s in wanted if s not in STATUSES]
            if bad:
                raise ConfigurationError(f"unknown status {bad}: use one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def stale_leases(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Running shards whose heartbeat (or, if none, start) is older than ``older_than_s`` seconds."""
        cutoff = _ts(self._now() - _dt.timedelta(seconds=float(older_than_s)))
        sql = (f"SELECT {_COLS_SQL} FROM shard_status WHERE status = 'running' "
               "AND COALESCE(heartbeat_at, started_at, updated_at) < ?")
        params: list[Any] = [cutoff]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY heartbeat_at, run_id, shard_id"
        return self._tx(lambda cur: self._rows(self._q(cur, sql, params)), write=False)

    def reset_stale(self, older_than_s: float, run_id: str | None = None) -> list[dict[str, Any]]:
        """Reset stale leases (see :meth:`stale_leases`) to pending; returns the reset rows (after the reset).

        ``error_message`` notes the reclaim; ``worker_id`` keeps the last holder; ``attempt`` keeps the dead
        attempt counted. The dead holder's token stops working (its writes raise :class:`LeaseLostError`)."""
        now = self._now()
        nowt = _ts(now)
        cutoff = _ts(now - _dt.timedelta(seconds=float(older_than_s)))
        note_sql = ("'reclaimed stale lease of worker ' || COALESCE(worker_id, 'unknown') || ' (token ' || "
                    "COALESCE(CAST(lease_token AS TEXT), '-') || ', attempt ' || CAST(attempt AS TEXT) || "
                    "', last heartbeat ' || COALESCE(CAST(heartbeat_at AS TEXT), 'never') || ' UTC) at ' || ?")
        sql = (f"UPDATE shard_status SET status = 'pending', error_message = {note_sql}, started_at = NULL, "
               "heartbeat_at = NULL, lease_expires_at = NULL, updated_at = ? "
               "WHERE status = 'running' AND COALESCE(heartbeat_at, started_at, updated_at) < ?")
        params: list[Any] = [nowt, nowt, cutoff]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += f" RETURNING {_COLS_SQL}"

        def _reset(cur: Any) -> list[dict[str, Any]]:
            rows = self._rows(self._q(cur, sql, params))
            for r in rows:
                self._q(cur, "UPDATE shard_attempts SET status = 'lost', ended_at = ?, error_message = COALESCE("
                             "error_message, 'reclaimed as stale') WHERE run_id = ? AND shard_id = ? "
                             "AND status = 'running'", (nowt, r["run_id"], r["shard_id"]))
            return rows

        rows = self._tx(_reset)
        return sorted(rows, key=lambda r: (r["run_id"], r["shard_id"]))

    def summary(self, run_id: str | None = None) -> dict[str, Any]:
        """Per-status counts and durations (the runbook's statistics query), token and cost totals.

        Returns ``{"run_id", "total", "counts": {status: n} (all four statuses), "by_status": [{"status",
        "count", "avg_duration_minutes", "max_duration_minutes"}], "avg_duration_s", "max_duration_s"
        (finished shards), "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cost_usd", "attempts"}``."""
        where, params = self._filters(run_id, None)
        dur = self.dialect.duration_s("started_at", "completed_at")

        def _sum(cur: Any) -> dict[str, Any]:
            self._q(cur, f"SELECT status, COUNT(*), AVG({dur}), MAX({dur}) FROM shard_status{where} "
                         "GROUP BY status ORDER BY status", params)
            by = cur.fetchall()
            self._q(cur, f"SELECT COUNT(*), AVG({dur}), MAX({dur}), COALESCE(SUM(input_tokens), 0), "
                         "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), "
                         "COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(cost_usd), 0), "
                         f"COALESCE(SUM(attempt), 0) FROM shard_status{where}", params)
            return {"by": by, "tot": cur.fetchone()}

        res = self._tx(_sum, write=False)

        def _f(v: Any) -> float | None:
            return None if v is None else float(v)

        counts = {s: 0 for s in STATUSES}
        by_status = []
        for status, n, avg, mx in res["by"]:
            counts[status] = int(n)
            by_status.append({"status": status, "count": int(n),
                              "avg_duration_minutes": None if avg is None else float(avg) / 60.0,
                              "max_duration_minutes": None if mx is None else float(mx) / 60.0})
        total, avg, mx, i_t, o_t, cr_t, cw_t, cost, attempts = res["tot"]
        return {"run_id": run_id, "total": int(total), "counts": counts, "by_status": by_status,
                "avg_duration_s": _f(avg), "max_duration_s": _f(mx),
                "input_tokens": int(i_t), "output_tokens": int(o_t), "cache_read_tokens": int(cr_t),
                "cache_write_tokens": int(cw_t), "cost_usd": float(cost), "attempts": int(attempts)}

    def runs(self) -> list[dict[str, Any]]:
        """One dict per run: ``run_id, total, pending, running, completed, failed, created_at, updated_at,
        cost_usd``; newest run first."""
        sql = ("SELECT run_id, COUNT(*), "
               + ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in STATUSES)
               + ", MIN(created_at), MAX(updated_at), COALESCE(SUM(cost_usd), 0) FROM shard_status "
               "GROUP BY run_id ORDER BY MIN(created_at) DESC, run_id")

        def _runs(cur: Any) -> list[dict[str, Any]]:
            out = []
            for r in self._q(cur, sql).fetchall():
                d = {"run_id": r[0], "total": int(r[1])}
                d.update({s: int(r[2 + i] or 0) for i, s in enumerate(STATUSES)})
                d.update({"created_at": _norm_ts(r[6]), "updated_at": _norm_ts(r[7]), "cost_usd": float(r[8])})
                out.append(d)
            return out

        return self._tx(_runs, write=False)

    def db_size_bytes(self) -> int:
        """Size of the database on disk: SQLite file plus WAL; on PostgreSQL, the store's tables with indexes."""
        return self._tx(self.dialect.size_bytes, write=False)

    # ---------------------------------------------------------------------------------- validation
    @staticmethod
    def _check_run_id(run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r} (use the Airflow run id)")

    @staticmethod
    def _check_shard_id(shard_id: str) -> None:
        if not SHARD_ID_RE.match(shard_id):
            raise ConfigurationError(
                f"shard id {shard_id!r} is invalid: use letters, digits, '.', '_' and '-', starting with a "
                "letter or digit (core.tasks.plan_shards produces valid ids)")
