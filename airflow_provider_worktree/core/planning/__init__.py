"""Shard planning: a repository and a task in, a list of disjoint shards out (:func:`plan_repository`,
:func:`plan_shards`, :class:`Plan`, :func:`shard_id_for`), in ``planner``.

May import: ``core.errors``, ``core.git``, ``core.files`` and ``core.tasks``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Plan": "airflow_provider_worktree.core.planning.planner",
    "plan_repository": "airflow_provider_worktree.core.planning.planner",
    "plan_shards": "airflow_provider_worktree.core.planning.planner",
    "shard_id_for": "airflow_provider_worktree.core.planning.planner",
})
