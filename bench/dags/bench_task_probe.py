"""bench_task_probe: where a ClaudeMaintenanceOperator task process spends its time (bench/bench_e2e.py --probe).

Two tasks, each in its own task process of the running LocalExecutor (so connection lookups go through the
supervisor and the execution API, as in the real DAG):

- ``steps``: times the operator's set-up steps one by one (import of the operator module and of the Anthropic
  hook, the Anthropic client, connection lookups that find nothing, the shard store, the worktree manager);
- ``profiled``: runs ``ClaudeMaintenanceOperator.execute`` on one shard under cProfile.

Each writes ``$AIRFLOW_HOME/probe_<task>.json``. The module level imports only ``airflow.sdk``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

with DAG(
    dag_id="bench_task_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["worktree", "benchmark"],
) as dag:

    @task
    def steps(params: dict | None = None) -> None:
        import json
        import os
        import resource
        import time

        out: list[tuple[str, float, float]] = []

        def step(name, fn):
            t = time.perf_counter()
            try:
                value = fn()
                note = ""
            except Exception as exc:  # noqa: BLE001 - a probe reports, it does not fail
                value, note = None, f" ({type(exc).__name__})"
            out.append((name + note, round(time.perf_counter() - t, 4),
                        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)))
            return value

        def imp_operator():
            import airflow_provider_worktree.operators.maintenance  # noqa: F401

        def imp_hook():
            from airflow.providers.anthropic.hooks.anthropic import AnthropicHook  # noqa: F401

        def client():
            from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

            return AnthropicHook(conn_id="anthropic_default").get_conn()

        def lookup(conn_id):
            from airflow.sdk import BaseHook

            return lambda: BaseHook.get_connection(conn_id)

        def store():
            from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

            s = ShardStatusHook().get_store()
            s.list_shards(run_id="probe-none")

        def manager():
            from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook

            return GitWorktreeHook(repo=params["repo"]).get_manager()

        step("import operators.maintenance", imp_operator)
        step("import AnthropicHook (anthropic SDK)", imp_hook)
        step("AnthropicHook.get_conn()", client)
        step("get_connection('anthropic_default') again", lookup("anthropic_default"))
        step("get_connection('git_worktree_default'), missing", lookup("git_worktree_default"))
        step("get_connection('git_worktree_default'), missing, again", lookup("git_worktree_default"))
        step("get_connection('shard_status_default'), missing", lookup("shard_status_default"))
        step("ShardStatusHook().get_store() + a query", store)
        step("GitWorktreeHook(repo).get_manager()", manager)
        with open(os.path.join(os.environ["AIRFLOW_HOME"], "probe_steps.json"), "w") as fh:
            json.dump(out, fh)

    @task
    def profiled(params: dict | None = None, run_id: str | None = None) -> None:
        import cProfile
        import io
        import json
        import os
        import pstats
        import time

        from airflow.sdk import get_current_context

        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        from airflow_provider_worktree.core.planning import plan_shards
        from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator

        shard = plan_shards(params["repo"], "todo", max_files=1, top=1)[0]
        op = ClaudeMaintenanceOperator(task_id="probe_maintain", shard=shard, repo=params["repo"],
                                       budget={"max_input_tokens": 200_000, "max_output_tokens": 20_000})
        result = op.execute(get_current_context())
        prof.disable()
        wall = time.perf_counter() - t
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        rows = []
        for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
            rows.append((ct, tt, nc, f"{filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{line}({func})"))
        rows.sort(reverse=True)
        with open(os.path.join(os.environ["AIRFLOW_HOME"], "probe_profiled.json"), "w") as fh:
            json.dump({"wall_s": wall, "durations": result.get("durations"), "top": rows[:400]}, fh)

    steps() >> profiled()
