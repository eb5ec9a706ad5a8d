"""Campaigns: one change applied across many repositories, re-applied idempotently.

``types``   the vocabulary: :class:`CampaignSpec` (name, task, which repositories, the forge, pacing),
            :class:`Target` (a selected repository), :class:`Skipped` (one left out, with the reason), the outcomes.
``select``  which repositories: a list of paths or URLs, or a GitHub repository search (an organisation or user,
            topics, language, name words) through PyGithub; archived, empty and (unless asked) forked repositories
            are skipped and listed with the reason.
``plan``    before any write, what a run would do per repository (create, update, close, keep, skip), like
            ``terraform plan``, from the campaign's last outcomes and the changesets the shard database records.
``pacing``  the rollout rules: at most K new pull requests per window, none while more than M of the campaign's
            pull requests have checks pending.

The campaign's record (spec, per-repository outcomes) is kept by ``core.store`` (schema version 7).
May import: ``core.errors``, ``core.forge`` (the changeset vocabulary and its bulk actions), ``core.git`` (a fix
round's files) and ``core.health`` (a run's report, one repository's shards). Plain Python, no Airflow.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "CampaignSpec": "airflow_provider_worktree.core.campaigns.types",
    "Pacing": "airflow_provider_worktree.core.campaigns.types",
    "Target": "airflow_provider_worktree.core.campaigns.types",
    "Skipped": "airflow_provider_worktree.core.campaigns.types",
    "Selection": "airflow_provider_worktree.core.campaigns.types",
    "OUTCOMES": "airflow_provider_worktree.core.campaigns.types",
    "select_from_list": "airflow_provider_worktree.core.campaigns.select",
    "select_from_github": "airflow_provider_worktree.core.campaigns.select",
    "plan_campaign": "airflow_provider_worktree.core.campaigns.plan",
    "may_open": "airflow_provider_worktree.core.campaigns.pacing",
})
