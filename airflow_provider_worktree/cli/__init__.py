"""``airflow-worktree``: the runbook's procedures as one command (``python -m airflow_provider_worktree.cli``)."""

from __future__ import annotations

from airflow_provider_worktree.cli.common import parse_duration
from airflow_provider_worktree.cli.main import get_provider_cli_commands, main

__all__ = ["get_provider_cli_commands", "main", "parse_duration"]
