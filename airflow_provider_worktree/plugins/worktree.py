"""``WorktreePlugin``: what the provider adds to Airflow's own processes.

- the scheduler preloads the Anthropic SDK (see ``preload``);
- the api-server serves the shard dashboard (``airflow_provider_worktree.ui``) at ``/worktree``, reached from
  the Airflow navigation ("Worktree shards") and from a tab of each DAG run ("Shards").
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_worktree.plugins import preload

DASHBOARD_PREFIX = "/worktree"


class _LazyApp:
    """An ASGI app built on its first request: processes that load plugins but serve no HTTP (the scheduler,
    workers) never import FastAPI's side of the dashboard."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_worktree.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class WorktreePlugin(AirflowPlugin):
    """The airflow-provider-worktree plugin: scheduler preload and the shard dashboard."""

    name = "worktree"
    listeners = [preload]
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": DASHBOARD_PREFIX, "name": "Worktree shards"}]
    external_views = [
        {"name": "Worktree shards", "href": "worktree/", "url_route": "worktree", "destination": "nav",
         "nav_top_level": True},
        {"name": "Shards", "href": "worktree/?embed=run#/run/{RUN_ID}", "url_route": "worktree-run",
         "destination": "dag_run"},
    ]
