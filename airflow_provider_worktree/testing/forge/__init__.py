"""Offline forges (TEST DOUBLES): a stateful GitHub REST API with git over smart HTTP (:class:`OfflineGitHub`),
built to GitHub's OpenAPI description and driven by the real PyGithub client."""

from __future__ import annotations

from airflow_provider_worktree.testing.forge.github import OfflineGitHub

__all__ = ["OfflineGitHub"]
