"""The shard database's record of batch mode (schema version 4): which Message Batches a run submitted, and
what became of each shard's entry. Plain Python, no Airflow; mixed into :class:`~.store.ShardStore`.

``shard_batches``  one row per batch of a run (``part`` 0, 1, ... when the run was split at the API's limits):
                   the batch id is written right after the API created the batch, so a retried task, a killed
                   worker or a restarted triggerer resumes that batch instead of paying for a second one.
``batch_entries``  one row per shard: its ``custom_id``, the commit its prompt was read from (``base_sha``, where
                   the shard's worktree must start so the edits apply), its state (``queued`` in a batch;
                   ``succeeded``/``errored``/``expired``/``canceled`` once collected; ``interactive`` when the
                   shard was too large for one prompt; ``over_budget`` when even its worst case did not fit the
                   budget) and the reply to apply.

An entry's spend is recorded once, when its result is collected, as the shard's attempt 0 (status ``batch``) in
``shard_attempts``: the shard's cumulative columns and the budget of any later (interactive) attempt include it,
and collecting twice writes nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_worktree.core.store._common import (
    _INT_RESULT_FIELDS,
    _norm_ts,
    _ts,
)

#: Entry states. ``queued``: in a batch, result not collected yet.
ENTRY_STATES = ("queued", "succeeded", "errored", "expired", "canceled", "interactive", "over_budget")
ENTRY_RESULTS = ("succeeded", "errored", "expired", "canceled")
#: The ``shard_attempts`` attempt number that holds a shard's batch spend (real attempts count from 1).
BATCH_ATTEMPT = 0

_BATCH_COLS = ("run_id", "part", "batch_id", "status", "requests", "model", "created_at", "ended_at",
               "collected_at", "request_counts")
_ENTRY_COLS = ("run_id", "shard_id", "part", "custom_id", "base_sha", "status", "reason", "model", "max_tokens",
               "response", "stop_reason", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cost_usd", "updated_at")


class BatchRecords:
    """Batch-mode reads and writes of :class:`~.store.ShardStore` (uses its ``_tx``/``_q``/``_now``)."""

    # -- batches ------------------------------------------------------------------------------------------------
    def batch_parts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's batches, by part: ``{run_id, part, batch_id, status, requests, model, created_at, ended_at,
        collected_at, request_counts}``. Empty when the run submitted nothing."""
        sql = f"SELECT {', '.join(_BATCH_COLS)} FROM shard_batches WHERE run_id = ? ORDER BY part"
        return self._tx(lambda cur: [_batch_row(r) for r in self._q(cur, sql, (run_id,)).fetchall()], write=False)

    def begin_batch_part(self, run_id: str, part: int, requests: int, model: str | None) -> dict[str, Any]:
        """Note that part ``part`` of the run is about to be created (before the API call, so a crash between the
        call and :meth:`set_batch_id` is noticed). Returns the part's row; an existing row is left as it is."""
        def _write(cur: Any) -> dict[str, Any]:
            self._q(cur, "INSERT INTO shard_batches (run_id, part, status, requests, model, created_at) "
                         "VALUES (?, ?, 'submitting', ?, ?, ?) ON CONFLICT (run_id, part) DO NOTHING",
                    (run_id, int(part), int(requests), model, _ts_now(self)))
            self._q(cur, f"SELECT {', '.join(_BATCH_COLS)} FROM shard_batches WHERE run_id = ? AND part = ?",
                    (run_id, int(part)))
            return _batch_row(cur.fetchone())

        return self._tx(_write)

    def set_batch_id(self, run_id: str, part: int, batch_id: str) -> None:
        """Record the id the API gave part ``part`` (only once: a recorded id is never replaced)."""
        self._tx(lambda cur: self._q(cur, "UPDATE shard_batches SET batch_id = ?, status = 'in_progress' "
                                          "WHERE run_id = ? AND part = ? AND batch_id IS NULL",
                                     (batch_id, run_id, int(part))))

    def update_batch(self, run_id: str, part: int, *, status: str, request_counts: Mapping[str, int] | None = None,
                     ended: bool = False, collected: bool = False) -> None:
        """Note what the API said of the part's batch (``status``: in_progress, canceling, ended, collected)."""
        now = _ts_now(self)
        self._tx(lambda cur: self._q(
            cur, "UPDATE shard_batches SET status = ?, request_counts = COALESCE(?, request_counts), "
                 "ended_at = CASE WHEN ? THEN COALESCE(ended_at, ?) ELSE ended_at END, "
                 "collected_at = CASE WHEN ? THEN ? ELSE collected_at END WHERE run_id = ? AND part = ?",
            (status, json.dumps(dict(request_counts)) if request_counts is not None else None, bool(ended), now,
             bool(collected), now, run_id, int(part))))

    def batch_state(self, run_id: str) -> dict[str, Any]:
        """A run's batch mode at a glance (JSON-safe): ``{run_id, batch_ids, collected (nothing left to wait
        for), entries (state -> count), interactive, over_budget (shard ids), cost_usd (the entries' spend at
        batch prices), parts}``."""
        parts = self.batch_parts(run_id)
        entries = self.batch_entries(run_id)
        counts: dict[str, int] = {}
        for e in entries:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        return {
            "run_id": run_id,
            "batch_ids": [p["batch_id"] for p in parts if p["batch_id"]],
            # every batch collected, or nothing was sent (every shard runs interactively)
            "collected": all(p["status"] == "collected" for p in parts) if parts else bool(entries),
            "entries": counts,
            "interactive": sorted(e["shard_id"] for e in entries if e["status"] == "interactive"),
            "over_budget": sorted(e["shard_id"] for e in entries if e["status"] == "over_budget"),
            "cost_usd": round(sum(e["cost_usd"] for e in entries), 6),
            "parts": [{k: p[k] for k in ("part", "batch_id", "status", "requests", "request_counts")} for p in parts],
        }

    # -- entries ------------------------------------------------------------------------------------------------
    def put_batch_entries(self, run_id: str, entries: Iterable[Mapping[str, Any]]) -> int:
        """Record the run's entries (``shard_id``, ``status``, and any of ``part, custom_id, base_sha, reason,
        model, max_tokens``); an entry already recorded is kept (a resumed submission changes nothing). Returns
        how many were new."""
        rows = [dict(e) for e in entries]
        cols = ("part", "custom_id", "base_sha", "status", "reason", "model", "max_tokens")

        def _write(cur: Any) -> int:
            now, new = _ts_now(self), 0
            for e in rows:
                self._q(cur, "INSERT INTO batch_entries (run_id, shard_id, " + ", ".join(cols) + ", updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, shard_id) DO NOTHING",
                        (run_id, e["shard_id"], *(e.get(c) for c in cols), now))
                new += max(0, cur.rowcount)
            return new

        return self._tx(_write)

    def batch_entries(self, run_id: str, *, part: int | None = None, with_response: bool = False,
                      ) -> list[dict[str, Any]]:
        """The run's entries by shard id (``response`` decoded only when ``with_response``)."""
        cols = [c for c in _ENTRY_COLS if with_response or c != "response"]
        sql = f"SELECT {', '.join(cols)} FROM batch_entries WHERE run_id = ?"
        params: list[Any] = [run_id]
        if part is not None:
            sql += " AND part = ?"
            params.append(int(part))
        sql += " ORDER BY shard_id"
        return self._tx(lambda cur: [_entry_row(cols, r) for r in self._q(cur, sql, params).fetchall()],
                        write=False)

    def batch_entry(self, run_id: str, shard_id: str) -> dict[str, Any] | None:
        """One shard's entry with its reply, or None when the shard is not in batch mode."""
        sql = f"SELECT {', '.join(_ENTRY_COLS)} FROM batch_entries WHERE run_id = ? AND shard_id = ?"
        return self._tx(lambda cur: _entry_row(_ENTRY_COLS, self._q(cur, sql, (run_id, shard_id)).fetchone()),
                        write=False)

    def record_batch_result(self, run_id: str, custom_id: str, status: str, *, response: Any = None,
                            stop_reason: str | None = None, reason: str | None = None,
                            usage: Mapping[str, int] | None = None, cost_usd: float = 0.0) -> bool:
        """Record a collected result of a queued entry, and its spend as the shard's attempt 0 (status
        ``batch``), in one transaction. Returns False (and writes nothing) when the entry was collected before
        or no queued entry has that ``custom_id``: an entry is never billed twice in the accounts."""

        if status not in ENTRY_RESULTS:
            raise ValueError(f"batch result status {status!r}: one of {', '.join(ENTRY_RESULTS)}")
        counts = [max(0, int((usage or {}).get(k) or 0)) for k in _INT_RESULT_FIELDS]
        cost = max(0.0, float(cost_usd or 0.0))

        def _write(cur: Any) -> bool:
            now = _ts_now(self)
            self._q(cur, "UPDATE batch_entries SET status = ?, response = ?, stop_reason = ?, reason = ?, "
                         "input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, cache_write_tokens = ?, "
                         "cost_usd = ?, updated_at = ? WHERE run_id = ? AND custom_id = ? AND status = 'queued' "
                         "RETURNING shard_id",
                    (status, json.dumps(response) if response is not None else None, stop_reason, reason, *counts,
                     cost, now, run_id, custom_id))
            row = cur.fetchone()
            if row is None:
                return False
            if any(counts) or cost:
                self._q(cur, "INSERT INTO shard_attempts (run_id, shard_id, attempt, ended_at, status, "
                             "error_message, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                             "cost_usd) VALUES (?, ?, ?, ?, 'batch', ?, ?, ?, ?, ?, ?) "
                             "ON CONFLICT (run_id, shard_id, attempt) DO NOTHING",
                        (run_id, row[0], BATCH_ATTEMPT, now, reason, *counts, cost))
                self._refresh_totals(cur, run_id, row[0])
            return True

        return self._tx(_write)


def _ts_now(store: Any) -> str:
    return _ts(store._now())


def _batch_row(r: Any) -> dict[str, Any]:
    d = {c: _norm_ts(v) for c, v in zip(_BATCH_COLS, r)}
    d["request_counts"] = json.loads(d["request_counts"]) if d["request_counts"] else {}
    return d


def _entry_row(cols: Iterable[str], r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    d = {c: _norm_ts(v) for c, v in zip(cols, r)}
    if d.get("response"):
        d["response"] = json.loads(d["response"])
    d["cost_usd"] = float(d.get("cost_usd") or 0.0)
    return d
