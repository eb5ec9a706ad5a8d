"""parallel_maintenance_poc: split a repository into shards and let Claude maintain them in parallel.

plan -> maintain (ClaudeMaintenanceOperator mapped over the shards) -> watch_shards (ShardStatusSensor:
stale locks) -> report (Markdown + JSON beside the shard database, optional integration branch).

Parsing does no git or database work: everything happens inside tasks.

Settings read at parse time (they shape the schedule, not one run):
- ``WORKTREE_PARALLEL_LIMIT`` (default 10): mapped shards running at once per run
  (``max_active_tis_per_dagrun``); the ``parallel_limit`` Param must match it (the plan task checks).
- ``WORKTREE_MODEL_POOL`` (default ``default_pool``): the pool that bounds model calls across DAGs;
  size it to your rate limit (``airflow pools set claude_model_calls 10 "Claude API"``).
- ``WORKTREE_REPO`` (default: empty, give the ``repo`` Param when triggering).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.sensors.shard_status import ShardStatusSensor

PARALLEL_LIMIT = int(os.environ.get("WORKTREE_PARALLEL_LIMIT", "10"))
MODEL_POOL = os.environ.get("WORKTREE_MODEL_POOL", "default_pool")

with DAG(
    dag_id="parallel_maintenance_poc",
    description="AI-driven maintenance of a git repository, one worktree per shard, in parallel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    max_active_runs=1,
    tags=["worktree", "claude", "maintenance"],
    params={
        "repo": Param(os.environ.get("WORKTREE_REPO", ""), type="string",
                      description="Repository: a local path or a URL"),
        "task": Param("todo", enum=["todo", "docstrings", "lint", "tests", "custom"]),
        "prompt": Param(None, type=["null", "string"], description="Instructions for the custom task"),
        "globs": Param(None, type=["null", "array"], description="File globs to restrict discovery"),
        "max_files_per_shard": Param(5, type="integer", minimum=1),
        "max_bytes_per_shard": Param(200_000, type="integer", minimum=1),
        "split_by": Param("size", enum=["size", "directory"]),
        "max_shards": Param(None, type=["null", "integer"], minimum=1),
        "parallel_limit": Param(PARALLEL_LIMIT, type="integer", minimum=1),
        "model": Param(None, type=["null", "string"], description="Default: the anthropic connection's model"),
        "runner": Param("api", enum=["api", "claude_code"]),
        "max_turns": Param(20, type="integer", minimum=1),
        "max_input_tokens": Param(200_000, type=["null", "integer"], minimum=1),
        "max_output_tokens": Param(20_000, type=["null", "integer"], minimum=1),
        "max_cost_usd": Param(None, type=["null", "number"], minimum=0),
        "verify_command": Param(None, type=["null", "string"], description="e.g. 'python -m pytest -q'"),
        "base_ref": Param("HEAD", type="string"),
        "push": Param(False, type="boolean"),
        "integration_branch": Param(None, type=["null", "string"],
                                    description="Merge all shard branches into this branch"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def plan(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """Discover and split the repository's files into shards and register them for this run."""
        from airflow_provider_worktree.core.tasks import plan_shards
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        if params["parallel_limit"] != PARALLEL_LIMIT:
            raise ValueError(
                f"parallel_limit={params['parallel_limit']} but this DAG was parsed with "
                f"WORKTREE_PARALLEL_LIMIT={PARALLEL_LIMIT}; the limit shapes scheduling, so set the "
                "environment variable for the DAG processor and scheduler instead of the Param."
            )
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

    shards = plan()

    maintain = ClaudeMaintenanceOperator.partial(
        task_id="maintain",
        repo="{{ params.repo or None }}",
        prompt="{{ params.prompt }}",
        model="{{ params.model }}",
        runner="{{ params.runner }}",
        max_turns="{{ params.max_turns }}",
        max_input_tokens="{{ params.max_input_tokens }}",
        max_output_tokens="{{ params.max_output_tokens }}",
        max_cost_usd="{{ params.max_cost_usd }}",
        verify_command="{{ params.verify_command }}",
        base_ref="{{ params.base_ref }}",
        push="{{ params.push }}",
        retries=2,
        retry_delay=pendulum.duration(seconds=5),
        max_active_tis_per_dagrun=PARALLEL_LIMIT,
        pool=MODEL_POOL,
    ).expand(shard=shards)

    watch = ShardStatusSensor(
        task_id="watch_shards",
        run_id="{{ run_id }}",
        on_stale="reset",
        fail_on_critical=False,  # thresholds are logged and in XCom; the report fails the run on failed shards
        poke_interval=5,
        timeout=3600,
        retries=1,
        retry_delay=pendulum.duration(seconds=5),
        trigger_rule=TriggerRule.ALL_DONE,
    )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(params: dict | None = None, run_id: str | None = None) -> dict:
        """Write the run's report beside the shard database and merge branches when asked."""
        from airflow_provider_worktree.core.report import build_report, merge_branches, write_report
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        hook = ShardStatusHook()
        result = build_report(hook.get_store(), run_id)
        branches = [s["branch"] for s in result["shards"] if s["status"] == "completed" and s["commit_sha"]]
        if params["integration_branch"] and branches:
            manager = GitWorktreeHook(repo=params["repo"] or None).get_manager()
            result["integration"] = merge_branches(manager, branches, params["integration_branch"],
                                                   run_id=run_id, base_ref=params["base_ref"])
        paths = write_report(result, hook.report_dir())
        print(open(paths["markdown"]).read())
        t = result["totals"]
        if result["failed"]:  # the report is written either way; the run must not look green
            raise RuntimeError(f"{len(result['failed'])} of {t['shards']} shard(s) failed; see {paths['markdown']}")
        return {"run_id": run_id, "paths": paths, "by_status": t["by_status"], "cost_usd": t["cost_usd"],
                "failed": result["failed"][:20], "integration": result["integration"]}

    shards >> maintain >> watch >> report()
