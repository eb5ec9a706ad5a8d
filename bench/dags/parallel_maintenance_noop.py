"""parallel_maintenance_noop: the no-op twin of airflow_provider_worktree/example_dags/parallel_maintenance_poc.py (bench/bench_e2e.py).

Same shape, same limits, same plan task; the mapped tasks do nothing. bench/bench_e2e.py runs it in the same
Airflow instance as the real DAG to measure the floor: what Airflow alone costs to schedule and run
1 plan + N mapped + 2 trailing task instances with the same parallel limit.

- ``plan``: what the real DAG's plan task (``ShardPlanOperator``) does, as a TaskFlow task (``plan_shards`` on
  the repository + ``register_shards`` in the shard database), so the mapped task count and the plan's own cost
  are the same. Its shards stay ``pending`` in the
  shard database (under the no-op run's id; no other run looks at them).
- ``maintain``: mapped over the shards with the same ``max_active_tis_per_dagrun``, pool and retries; returns
  at once. It is a TaskFlow task, so a task process imports nothing of this package: the difference to the
  real DAG is everything the package adds (its imports, connections, the shard lifecycle).
- ``watch_shards`` and ``report``: ALL_DONE tasks that return at once (the real sensor would wait forever
  on shards that nothing completes).

Module level imports only ``airflow.sdk``, like a DAG that does not use this package.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, task

PARALLEL_LIMIT = int(os.environ.get("WORKTREE_PARALLEL_LIMIT", "10"))
MODEL_POOL = os.environ.get("WORKTREE_MODEL_POOL", "default_pool")

with DAG(
    dag_id="parallel_maintenance_noop",
    description="No-op twin of parallel_maintenance_poc (benchmark floor)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    max_active_runs=1,
    tags=["worktree", "benchmark"],
    params={
        "repo": Param(os.environ.get("WORKTREE_REPO", ""), type="string"),
        "task": Param("todo", enum=["todo", "docstrings", "lint", "tests", "custom"]),
        "prompt": Param(None, type=["null", "string"]),
        "globs": Param(None, type=["null", "array"]),
        "max_files_per_shard": Param(5, type="integer", minimum=1),
        "max_bytes_per_shard": Param(200_000, type="integer", minimum=1),
        "split_by": Param("size", enum=["size", "directory"]),
        "max_shards": Param(None, type=["null", "integer"], minimum=1),
        "parallel_limit": Param(PARALLEL_LIMIT, type="integer", minimum=1),
        "base_ref": Param("HEAD", type="string"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def plan(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """The real DAG's plan (ShardPlanOperator's work): discover and split the files into shards, register them."""
        from airflow_provider_worktree.core.planning import plan_shards
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        if params["parallel_limit"] != PARALLEL_LIMIT:
            raise ValueError(f"parallel_limit={params['parallel_limit']} but WORKTREE_PARALLEL_LIMIT={PARALLEL_LIMIT}")
        manager = GitWorktreeHook(repo=params["repo"] or None).get_manager()
        options = {"prompt": params["prompt"], "globs": params["globs"]} if params["task"] == "custom" else {}
        shards = plan_shards(
            manager.repo_path, params["task"], ref=params["base_ref"], globs=params["globs"],
            max_files=params["max_files_per_shard"], max_bytes=params["max_bytes_per_shard"],
            by=params["split_by"], max_shards=params["max_shards"], task_options=options,
        )
        ShardStatusHook().register_shards(run_id, shards)
        print(f"{len(shards)} shards planned for run {run_id} (parallel limit {PARALLEL_LIMIT})")
        return shards

    @task(
        task_id="maintain",
        retries=2,
        retry_delay=pendulum.duration(seconds=5),
        max_active_tis_per_dagrun=PARALLEL_LIMIT,
        pool=MODEL_POOL,
    )
    def maintain(shard: dict) -> None:
        """Do nothing with the shard."""
        return None

    @task(task_id="watch_shards", trigger_rule=TriggerRule.ALL_DONE, retries=1,
          retry_delay=pendulum.duration(seconds=5))
    def watch_shards() -> None:
        """Stands in for the ShardStatusSensor (whose first poke succeeds once every shard is terminal)."""
        return None

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report() -> None:
        """Stands in for the report task."""
        return None

    shards = plan()
    shards >> maintain.expand(shard=shards) >> watch_shards() >> report()
