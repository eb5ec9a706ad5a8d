"""The shard database's record of changesets (schema version 6): one row per (forge, repository, head branch), the
pull request a run's result was published as, in orthogonal states (publication, external state, review, checks),
with when it was last synced, how often syncing failed and the last error. Plain Python, no Airflow; mixed into
:class:`~.shards.ShardStore`. The state names are ``core.forge.types``'s; the store keeps them as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_worktree.core.store._common import _norm_ts, _ts, bound_error

CHANGESET_COLUMNS = ("forge", "repository", "head", "base", "number", "url", "title", "publication",
                     "external_state", "review", "checks", "head_sha", "run_id", "last_action", "created_at",
                     "updated_at", "synced_at", "failures", "last_error")
_STATE = ("base", "number", "url", "title", "publication", "external_state", "review", "checks", "head_sha")


class ChangesetRecords:
    """Changeset rows of :class:`~.shards.ShardStore` (uses its ``_tx``/``_q``/``_now``)."""

    def record_changeset(self, changeset: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, Any]:
        """Insert or update the changeset's row from a ``Changeset.to_dict()`` (a publish or a sync); a success
        clears the failure count. Returns the row."""
        c = dict(changeset)
        now = _ts(self._now())
        key = (c["forge"], c["repository"], c["head"])
        values = [c.get(k) for k in _STATE]

        def _write(cur: Any) -> dict[str, Any]:
            sets = ", ".join(f"{k} = ?" for k in _STATE)
            self._q(cur, f"INSERT INTO changesets (forge, repository, head, {', '.join(_STATE)}, run_id, last_action, "
                         f"created_at, updated_at, synced_at, failures) VALUES (?, ?, ?, {', '.join('?' * len(_STATE))}, "
                         "?, ?, ?, ?, ?, 0) ON CONFLICT (forge, repository, head) DO UPDATE SET "
                         f"{sets}, run_id = COALESCE(?, changesets.run_id), last_action = ?, updated_at = ?, "
                         "synced_at = ?, failures = 0, last_error = NULL",
                    (*key, *values, run_id, c.get("action"), now, now, now, *values, run_id, c.get("action"), now, now))
            return self._changeset_row(cur, key)

        return self._tx(_write)

    def record_changeset_failure(self, forge: str, repository: str, head: str, error: str) -> None:
        """A publish or sync of an existing changeset failed: count it and keep the error (the row stays)."""
        self._tx(lambda cur: self._q(
            cur, "UPDATE changesets SET failures = failures + 1, last_error = ?, updated_at = ? "
                 "WHERE forge = ? AND repository = ? AND head = ?",
            (bound_error(error), _ts(self._now()), forge, repository, head)))

    def changesets(self, *, repository: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Changesets, optionally of one repository and/or one external state, by repository and head."""
        sql, params = f"SELECT {', '.join(CHANGESET_COLUMNS)} FROM changesets WHERE 1 = 1", []
        if repository:
            sql, params = sql + " AND repository = ?", [*params, repository]
        if state:
            sql, params = sql + " AND external_state = ?", [*params, state]
        sql += " ORDER BY repository, head"
        return self._tx(lambda cur: [_row(r) for r in self._q(cur, sql, params).fetchall()], write=False)

    def _changeset_row(self, cur: Any, key: tuple[str, str, str]) -> dict[str, Any]:
        self._q(cur, f"SELECT {', '.join(CHANGESET_COLUMNS)} FROM changesets WHERE forge = ? AND repository = ? "
                     "AND head = ?", key)
        return _row(cur.fetchone())


def _row(r: Any) -> dict[str, Any]:
    return {c: _norm_ts(v) for c, v in zip(CHANGESET_COLUMNS, r)}
