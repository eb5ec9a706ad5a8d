"""``WorktreePlugin``: what the provider adds to Airflow's own processes."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_worktree.plugins import preload


class WorktreePlugin(AirflowPlugin):
    """The airflow-provider-worktree plugin: the scheduler preloads the Anthropic SDK (see ``preload``)."""

    name = "worktree"
    listeners = [preload]
