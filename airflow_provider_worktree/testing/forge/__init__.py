"""Offline forges (TEST DOUBLES): a stateful GitHub REST API with git over smart HTTP (:class:`OfflineGitHub`),
built to GitHub's OpenAPI description and driven by the real PyGithub client, and the merge-request subset of
GitLab's API with git over smart HTTP (:class:`OfflineGitLab`), driven by the real python-gitlab client."""

from __future__ import annotations

from airflow_provider_worktree.testing.forge.github import OfflineGitHub
from airflow_provider_worktree.testing.forge.gitlab import OfflineGitLab

__all__ = ["OfflineGitHub", "OfflineGitLab"]
