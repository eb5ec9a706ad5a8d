"""Forges and changesets: a run's result published as a pull request and tracked until merged.

``types``   the vocabulary: :class:`ChangesetSpec` (what to publish), :class:`Changeset` (what the forge holds, in
            orthogonal states: publication, external state, review, checks), :class:`ForgeError`.
``body``    the pull request's text: a Jinja template over the run's report (sandboxed), model-written text
            neutralised (no ``@mention`` pings, no HTML hides content, under GitHub's 65,536 characters), and a
            hidden marker that identifies the changeset.
``github``  :class:`GitHubForge` over the official PyGithub client (the Airflow GitHub provider's ``GithubHook``
            gives it): publish idempotently by (repository, head branch), sync, close; every write paced by a
            :class:`~airflow_provider_worktree.core.ratelimit.SharedLimiter` with GitHub's content limits.
``gitlab``  :class:`GitLabForge` over python-gitlab: the same contract for merge requests.

May import: ``core.errors`` and ``core.ratelimit``. Plain Python, no Airflow.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Changeset": "airflow_provider_worktree.core.forge.types",
    "ChangesetSpec": "airflow_provider_worktree.core.forge.types",
    "ForgeError": "airflow_provider_worktree.core.forge.types",
    "GitHubForge": "airflow_provider_worktree.core.forge.github",
    "GitLabForge": "airflow_provider_worktree.core.forge.gitlab",
    "MAX_BODY_CHARS": "airflow_provider_worktree.core.forge.body",
    "changeset_marker": "airflow_provider_worktree.core.forge.body",
    "neutralise": "airflow_provider_worktree.core.forge.body",
    "render_body": "airflow_provider_worktree.core.forge.body",
})
