"""The shard database's record of campaigns (schema version 7): each campaign's spec (JSON) and, per repository,
the last outcome (``no-diff``, ``pr-opened``, ``pr-updated``, ``failed``, ``rate-limited``, ...) with its reason,
run and pull request. Plain Python, no Airflow; mixed into :class:`~.shards.ShardStore`. The outcome names are
``core.campaigns.types``'s; the store keeps them as text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_worktree.core.store._common import _norm_ts, _ts, bound_error

_REPO_COLUMNS = ("campaign", "repository", "location", "outcome", "reason", "run_id", "url", "updated_at")
_ROUND_COLUMNS = ("forge", "repository", "head", "round_no", "kind", "cause", "run_id", "outcome", "reason",
                  "commit_sha", "cost_usd", "created_at")


class CampaignRecords:
    """Campaign rows of :class:`~.shards.ShardStore` (uses its ``_tx``/``_q``/``_now``)."""

    def save_campaign(self, name: str, spec: Mapping[str, Any]) -> None:
        """Insert or replace the campaign's spec (its repositories' outcomes stay)."""
        now, text = _ts(self._now()), json.dumps(dict(spec), sort_keys=True)
        self._tx(lambda cur: self._q(
            cur, "INSERT INTO campaigns (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET spec = ?, updated_at = ?", (name, text, now, now, text, now)))

    def campaign(self, name: str) -> dict[str, Any] | None:
        """``{"name", "spec", "created_at", "updated_at"}`` or None."""
        def _read(cur: Any) -> Any:
            return self._q(cur, "SELECT name, spec, created_at, updated_at FROM campaigns WHERE name = ?",
                           (name,)).fetchone()

        row = self._tx(_read, write=False)
        if row is None:
            return None
        return {"name": row[0], "spec": json.loads(row[1]), "created_at": _norm_ts(row[2]),
                "updated_at": _norm_ts(row[3])}

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its outcome counts, by name."""
        def _read(cur: Any) -> Any:
            names = self._q(cur, "SELECT name, spec, created_at, updated_at FROM campaigns ORDER BY name").fetchall()
            counts = self._q(cur, "SELECT campaign, outcome, COUNT(*) FROM campaign_repositories "
                                  "GROUP BY campaign, outcome").fetchall()
            return names, counts

        names, counts = self._tx(_read, write=False)
        by: dict[str, dict[str, int]] = {}
        for campaign, outcome, n in counts:
            by.setdefault(campaign, {})[outcome] = int(n)
        return [{"name": n, "spec": json.loads(s), "created_at": _norm_ts(c), "updated_at": _norm_ts(u),
                 "outcomes": by.get(n, {})} for n, s, c, u in names]

    def record_campaign_outcome(self, campaign: str, repository: str, outcome: str, *, reason: str | None = None,
                                run_id: str | None = None, url: str | None = None,
                                location: str | None = None) -> None:
        """The repository's last outcome in the campaign (replaces the one before)."""
        now = _ts(self._now())
        values = (location, outcome, bound_error(reason) if reason else None, run_id, url, now)
        self._tx(lambda cur: self._q(
            cur, "INSERT INTO campaign_repositories (campaign, repository, location, outcome, reason, run_id, url, "
                 "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign, repository) DO UPDATE SET "
                 "location = COALESCE(?, campaign_repositories.location), outcome = ?, reason = ?, run_id = ?, "
                 "url = COALESCE(?, campaign_repositories.url), updated_at = ?",
            (campaign, repository, *values, *values)))

    def campaign_repositories(self, campaign: str, *, outcomes: tuple[str, ...] | None = None,
                              ) -> list[dict[str, Any]]:
        """The campaign's repositories with their last outcome (optionally only ``outcomes``), by repository."""
        sql, params = f"SELECT {', '.join(_REPO_COLUMNS)} FROM campaign_repositories WHERE campaign = ?", [campaign]
        if outcomes:
            sql += f" AND outcome IN ({', '.join('?' * len(outcomes))})"
            params += list(outcomes)
        sql += " ORDER BY repository"
        rows = self._tx(lambda cur: self._q(cur, sql, params).fetchall(), write=False)
        return [{c: _norm_ts(v) for c, v in zip(_REPO_COLUMNS, r)} for r in rows]

    def record_round(self, forge: str, repository: str, head: str, round_no: int, *, kind: str, cause: str,
                     run_id: str | None, outcome: str, reason: str | None = None, commit_sha: str | None = None,
                     cost_usd: float = 0.0) -> None:
        """One fix round of a pull request (``kind`` ``checks`` or ``review``; ``cause``: the failing checks or the
        review that set it off); a round already recorded is replaced (its task retried)."""
        now = _ts(self._now())
        values = (kind, cause, run_id, outcome, bound_error(reason) if reason else None, commit_sha,
                  float(cost_usd or 0.0), now)
        self._tx(lambda cur: self._q(
            cur, "INSERT INTO changeset_rounds (forge, repository, head, round_no, kind, cause, run_id, outcome, "
                 "reason, commit_sha, cost_usd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT (forge, repository, head, round_no) DO UPDATE SET kind = ?, cause = ?, run_id = ?, "
                 "outcome = ?, reason = ?, commit_sha = ?, cost_usd = ?, created_at = ?",
            (forge, repository, head, int(round_no), *values, *values)))

    def rounds(self, *, head: str | None = None, repository: str | None = None) -> list[dict[str, Any]]:
        """Fix rounds, by repository and round."""
        sql, params = f"SELECT {', '.join(_ROUND_COLUMNS)} FROM changeset_rounds WHERE 1 = 1", []
        if head:
            sql, params = sql + " AND head = ?", [*params, head]
        if repository:
            sql, params = sql + " AND repository = ?", [*params, repository]
        sql += " ORDER BY repository, round_no"
        rows = self._tx(lambda cur: self._q(cur, sql, params).fetchall(), write=False)
        return [{c: _norm_ts(v) for c, v in zip(_ROUND_COLUMNS, r)} for r in rows]
