"""Registering a run's shards and claiming them: leases with fencing tokens."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Iterable, Sequence

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
)
from airflow_provider_worktree.core.store._common import (
    _COLS_SQL,
    COMPLETED,
    PENDING,
    RUNNING,
    _loads,
    _norm_ts,
    _ts,
)
from airflow_provider_worktree.core.store.errors import (
    Lease,
    LeaseLostError,
    NoSlotAvailable,
    ShardAlreadyCompleted,
    ShardBusy,
    ShardNotFound,
)


class ClaimRecords:
    """Registration and claims of :class:`~.shards.ShardStore` (uses its ``_tx``/``_q``/``_now``)."""

    def register_shards(self, run_id: str, shards: Iterable[dict[str, Any] | str]) -> int:
        """Insert the run's shards as pending; idempotent. Existing rows (of any status) are left unchanged.

        ``shards``: shard dicts (``shard_id``, ``task``, ``files``, ``priority``; see docs/architecture.md) or
        bare shard ids. Returns how many rows were new."""
        self._check_run_id(run_id)
        rows = []
        seen: set[str] = set()
        now = _ts(self._now())
        for s in shards:
            if isinstance(s, str):
                s = {"shard_id": s}
            if not isinstance(s, dict) or "shard_id" not in s:
                raise ConfigurationError(f"shard {s!r} is not a shard dict with a 'shard_id' key: "
                                         "pass dicts from core.tasks.plan_shards (or bare shard ids)")
            sid = str(s["shard_id"])
            self._check_shard_id(sid)
            if sid in seen:
                continue
            seen.add(sid)
            files = s.get("files") or []
            if isinstance(files, str) or not all(isinstance(f, str) for f in files):
                raise ConfigurationError(f"shard {sid}: 'files' must be a list of path strings, got {files!r}")
            try:
                priority = int(s.get("priority") or 0)
            except (TypeError, ValueError):
                raise ConfigurationError(f"shard {sid}: 'priority' must be an integer, got {s.get('priority')!r}")
            rows.append((run_id, sid, PENDING, s.get("task"), json.dumps(list(files)), priority, now, now))

        def _insert(cur: Any) -> int:
            new = 0
            for i in range(0, len(rows), 100):
                chunk = rows[i:i + 100]
                values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                self._q(cur, "INSERT INTO shard_status (run_id, shard_id, status, task, files, priority, "
                             f"created_at, updated_at) VALUES {values} ON CONFLICT (run_id, shard_id) DO NOTHING",
                        [v for r in chunk for v in r])
                new += max(cur.rowcount, 0)
            return new

        return self._tx(_insert) if rows else 0

    # ------------------------------------------------------------------------------------- claiming
    def assign_shard(self, run_id: str, worker_id: str, shard_id: str | None = None, *,
                     max_active: int | None = None) -> Lease | None:
        """Claim a shard atomically and return its :class:`Lease`.

        Without ``shard_id``: the next pending shard of the run (highest priority, then shard id), or ``None``
        when nothing is pending. With ``shard_id``: that shard, if pending or failed, or running with a
        stale heartbeat (taken over; the old holder's token stops working). Raises
        :class:`ShardAlreadyCompleted` if completed, :class:`ShardBusy` if running with a fresh heartbeat,
        :class:`ShardNotFound` if not registered. A claim sets status running, attempt+1, a new fencing
        token, ``started_at`` and ``heartbeat_at`` to now, and adds the attempt's row to ``shard_attempts``
        (an earlier attempt still marked running there becomes ``lost``).

        ``max_active``: the run's slot limit. The claim succeeds only while fewer than ``max_active`` other
        shards of the run are running under a live lease (heartbeat fresher than ``stale_after_s``); otherwise
        :class:`NoSlotAvailable`, and nothing changes. A dead holder's slot frees itself when its heartbeat
        goes stale."""
        self._check_run_id(run_id)
        if max_active is not None and (isinstance(max_active, bool) or not isinstance(max_active, int)
                                       or max_active < 1):
            raise ConfigurationError(f"max_active={max_active!r} must be a positive integer (or None: no limit)")
        if not worker_id or not isinstance(worker_id, str):
            raise ConfigurationError("assign_shard needs a non-empty worker_id (e.g. host:pid:task-instance)")
        d = self.dialect

        def _claim(cur: Any) -> Lease | None:
            if max_active is not None:
                d.lock_run_slots(cur, run_id)
            now = self._now()  # after the lock: the claim's times never precede the slot it was given
            note = None
            if shard_id is None:
                self._q(cur, "SELECT shard_id FROM shard_status WHERE run_id = ? AND status = 'pending' "
                             f"ORDER BY priority DESC, shard_id LIMIT 1{d.skip_locked}", (run_id,))
                found = cur.fetchone()
                if found is None:
                    return None
                sid = found[0]
            else:
                sid = shard_id
                self._q(cur, "SELECT status, worker_id, heartbeat_at, started_at, lease_token FROM shard_status "
                             f"WHERE run_id = ? AND shard_id = ?{d.row_lock}", (run_id, sid))
                found = cur.fetchone()
                if found is None:
                    raise ShardNotFound(f"shard {sid!r} of run {run_id!r} is not registered: call "
                                        "register_shards first (or check the run id)")
                status, holder, hb, started, token = found
                if status == COMPLETED:
                    raise ShardAlreadyCompleted(
                        f"shard {sid!r} of run {run_id!r} is already completed (by {holder}); its result "
                        "stands. Register a new run to redo it.")
                if status == RUNNING:
                    last = _norm_ts(hb or started)
                    cutoff = _ts(now - _dt.timedelta(seconds=self.stale_after_s))
                    if last is not None and last >= cutoff:
                        raise ShardBusy(
                            f"shard {sid!r} of run {run_id!r} is running under worker {holder} (token {token}, "
                            f"last heartbeat {last} UTC, fresher than {self.stale_after_s:.0f}s): wait for it, "
                            "or reclaim it once stale (reset_stale / airflow-worktree reset-stale)")
                    note = (f"lease taken over from worker {holder} (token {token}, last heartbeat {last} UTC, "
                            f"stale after {self.stale_after_s:.0f}s)")
            if max_active is not None:
                fresh = _ts(now - _dt.timedelta(seconds=self.stale_after_s))
                self._q(cur, "SELECT COUNT(*) FROM shard_status WHERE run_id = ? AND status = 'running' "
                             "AND shard_id <> ? AND COALESCE(heartbeat_at, started_at, updated_at) >= ?",
                        (run_id, sid, fresh))
                active = int(cur.fetchone()[0])
                if active >= max_active:
                    raise NoSlotAvailable(
                        f"run {run_id!r} already has {active} shard(s) running under live leases "
                        f"(max_active={max_active}): wait for a slot")
            token = d.next_token(cur)
            nowt = _ts(now)
            exp = _ts(now + _dt.timedelta(seconds=self.stale_after_s))
            sets = ("status = 'running', worker_id = ?, attempt = attempt + 1, lease_token = ?, started_at = ?, "
                    "heartbeat_at = ?, lease_expires_at = ?, updated_at = ?, completed_at = NULL")
            params: list[Any] = [worker_id, token, nowt, nowt, exp, nowt]
            if note:
                sets += ", error_message = ?"
                params.append(note)
            self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? "
                         "RETURNING attempt, task, files", [*params, run_id, sid])
            attempt, task, files = cur.fetchone()
            self._q(cur, "UPDATE shard_attempts SET status = 'lost', ended_at = ?, error_message = COALESCE("
                         "error_message, ?) WHERE run_id = ? AND shard_id = ? AND status = 'running'",
                    (nowt, f"lease taken over by worker {worker_id} (attempt {attempt})", run_id, sid))
            self._q(cur, "INSERT INTO shard_attempts (run_id, shard_id, attempt, worker_id, lease_token, "
                         "started_at, status) VALUES (?, ?, ?, ?, ?, ?, 'running') ON CONFLICT (run_id, shard_id, "
                         "attempt) DO UPDATE SET worker_id = excluded.worker_id, lease_token = excluded.lease_token, "
                         "started_at = excluded.started_at, status = 'running', ended_at = NULL",
                    (run_id, sid, int(attempt), worker_id, token, nowt))
            return Lease(run_id=run_id, shard_id=sid, worker_id=worker_id, token=int(token), attempt=int(attempt),
                         task=task, files=list(_loads(files, [])))

        return self._tx(_claim)

    # ------------------------------------------------------------------------------- fenced writes
    def _fenced(self, lease: Lease, action: str, sets: str, params: Sequence[Any]) -> dict[str, Any]:
        if not isinstance(lease, Lease):
            raise ConfigurationError(f"{action} needs a Lease from assign_shard (or Lease.from_dict), got {lease!r}")

        def _write(cur: Any) -> dict[str, Any]:
            self._q(cur, f"UPDATE shard_status SET {sets} WHERE run_id = ? AND shard_id = ? AND lease_token = ? "
                         f"AND status = 'running' RETURNING {_COLS_SQL}",
                    [*params, lease.run_id, lease.shard_id, lease.token])
            row = self._row(cur, cur.fetchone())
            if row is not None:
                return row
            self._q(cur, "SELECT status, worker_id, lease_token, attempt FROM shard_status "
                         "WHERE run_id = ? AND shard_id = ?", (lease.run_id, lease.shard_id))
            now_row = cur.fetchone()
            raise self._lease_lost(lease, action, now_row)

        return self._tx(_write)

    @staticmethod
    def _lease_lost(lease: Lease, action: str, now_row: Sequence[Any] | None) -> LeaseLostError:
        head = (f"{action} refused: the lease of worker {lease.worker_id} on shard {lease.shard_id!r} of run "
                f"{lease.run_id!r} (token {lease.token}, attempt {lease.attempt}) is no longer valid; ")
        if now_row is None:
            return LeaseLostError(head + "the shard no longer exists in the database. Discard this work.")
        status, holder, token, attempt = now_row
        if status == RUNNING:
            why = f"it is now held by worker {holder} (token {token}, attempt {attempt}), reclaimed after a stale heartbeat"
        elif status == PENDING:
            why = f"it was reset to pending (stale-lock reclaim or release); last worker {holder}"
        else:
            why = f"it is already {status} by worker {holder} (token {token}, attempt {attempt})"
        return LeaseLostError(head + why + ". Stop working on this shard; its result will not be recorded.",
                              current_status=status, current_worker_id=holder,
                              current_token=None if token is None else int(token))

