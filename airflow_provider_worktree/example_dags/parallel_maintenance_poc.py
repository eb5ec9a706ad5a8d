"""parallel_maintenance_poc: split a repository into shards and let Claude maintain them in parallel.

plan (ShardPlanOperator) -> submit_batch (ClaudeBatchSubmitOperator; does nothing unless the ``mode`` Param is ``batch``) -> maintain
(ClaudeMaintenanceOperator mapped over the shards) -> watch_shards (ShardStatusSensor: stale locks) -> report
(Markdown + JSON beside the shard database, optional integration branch).

Mode: ``interactive`` (default) runs each shard's agent loop in its maintain task. ``batch`` sends every shard
as one Message Batches entry at half the price: submit_batch defers while the batch runs (hours at worst; the
results are fine tomorrow morning), then each maintain task applies its shard's reply, verifies and commits. A
shard too large for one prompt, or whose entry failed, runs interactively. ``batch_poll_seconds`` is the first
wait between polls of the batch (growing 1.5x per poll up to 10 minutes).

Every option of a run is a Param with a default and a JSON schema (type, enum, minimum, pattern), so Airflow
refuses a bad value before the run is created: the trigger form keeps its Trigger button disabled and
``airflow dags trigger -c`` answers "Invalid input for param ...". Only ``repo`` has no default (unless
``WORKTREE_REPO`` was set when the file was parsed): it is required, a non-empty local path or URL, e.g.
``airflow dags trigger parallel_maintenance_poc -c '{"repo": "/srv/repo"}'``.

Outcomes:
- **Nothing to do** (the plan finds no file for the task): the maintain map has zero items, the sensor is
  skipped and the report says "nothing to do" and why (task, globs, files skipped). The run is green; the
  dashboard's Shards tab says the run planned no shards.
- **The plan fails** (a repository that does not exist, ``task="lint"`` without ``lint_command``,
  ``task="custom"`` without ``prompt``, a bad ref...): the maintain and watch tasks never start, the report task fails at once naming
  the plan's error, the run is red. Nothing waits for shards that will never come.
- **A shard fails**: the report is written, then the run fails.

Publishing (the ``publish`` Param; ``none`` by default): after a green report, ``publish`` (ChangesetPublishOperator)
pushes the integration branch (``integration_branch``, default ``worktree/<task>``: stable across runs, so a re-run
updates the same pull request) to ``forge_repository`` on GitHub (``github_default``) or GitLab
(``gitlab_default``) and opens a draft pull request, or updates the open one. ``draft`` stops there. ``ready`` then
waits on Airflow's human-in-the-loop ``ApprovalOperator`` (the task ``approve``: Required actions in the UI, the
pull requests in its body; it needs a triggerer), and once approved marks the pull request ready for review. A run
that accepted no change closes the open pull request with a comment. See docs/changesets.md.

The parallel limit is a run-time setting: the ``parallel_limit`` Param sets ``max_active_shards`` of the
maintain tasks, a slot semaphore in the shard database (at most that many shards of the run do work at
once). ``max_active_tis_per_dagrun`` stays as the ceiling of maintain task instances running per run, read
at parse time from ``WORKTREE_MAX_PARALLEL`` (default 32); instances above ``parallel_limit`` wait for a slot.
A ``parallel_limit`` above the ceiling runs at most the ceiling (the plan warns). Keep the ceiling near the
largest limit you use: each waiting instance holds an executor slot.

Parsing does no git or database work: everything happens inside tasks. Settings read at parse time:
- ``WORKTREE_MAX_PARALLEL`` (default 32): the ceiling above.
- ``WORKTREE_PARALLEL_LIMIT`` (default 10): the default of the ``parallel_limit`` Param.
- ``WORKTREE_MODEL_POOL`` (default ``default_pool``): the pool that bounds model calls across DAGs;
  size it to your rate limit (``airflow pools set claude_model_calls 10 "Claude API"``).
- ``WORKTREE_REPO`` (default: none, the Param is then required): the default of the ``repo`` Param.
"""

from __future__ import annotations

import os
import shlex

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_provider_worktree.operators.batch import ClaudeBatchSubmitOperator
from airflow_provider_worktree.operators.changesets import ChangesetPublishOperator
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.operators.plan import ShardPlanOperator
from airflow_provider_worktree.sensors.shard_status import ShardStatusSensor
from airflow_provider_worktree.version_compat import ApprovalOperator

MAX_PARALLEL = int(os.environ.get("WORKTREE_MAX_PARALLEL", "32"))
PARALLEL_LIMIT = min(int(os.environ.get("WORKTREE_PARALLEL_LIMIT", "10")), MAX_PARALLEL)
MODEL_POOL = os.environ.get("WORKTREE_MODEL_POOL", "default_pool")
TASKS = ["todo", "docstrings", "lint", "tests", "custom"]
#: The repo Param's default: WORKTREE_REPO, else none at all (the Param is then required: the form asks for it).
REPO_DEFAULT = [os.environ["WORKTREE_REPO"]] if os.environ.get("WORKTREE_REPO") else []
#: A revision (base_ref: HEAD, main, v1.2, HEAD~1, a commit): no whitespace, no leading "-".
REV_PATTERN = r"^[^-\s]\S*$"
#: A branch name: also none of ~ ^ : ? * [ \ (git check-ref-format).
BRANCH_PATTERN = r"^[^-\s~^:?*\[\\][^\s~^:?*\[\\]*$"

#: The task's own options from the Params: lint_command for lint, prompt for custom, none for the others.
TASK_OPTIONS = ("{{ {'lint': {'lint_command': params.lint_command}, 'custom': {'prompt': params.prompt}}"
                ".get(params.task) }}")
#: The commands the model may run, each Param entry split into its argv; None: no command tool.
ALLOW_COMMANDS = "{{ (params.allow_commands or []) | map('shlex_split') | list or None }}"
#: The branch a run publishes: the integration branch, named from the task when not given (stable across runs).
HEAD_BRANCH = "{{ params.integration_branch or ('worktree/' ~ params.task) }}"
#: What the approval task shows: the draft pull request(s) the publish task opened or updated.
APPROVAL_BODY = ("{% set cs = ti.xcom_pull(task_ids='publish') %}"
                 "Run `{{ run_id }}` published a draft for review:\n\n"
                 "- [{{ cs.repository }} #{{ cs.number }}]({{ cs.url }}): {{ cs.title }} ({{ cs.action }})\n\n"
                 "**Approve** marks it ready for review (its reviewers are notified); **Reject** leaves it a draft.")

#: The per-shard budget, from the Params (the batch submit task checks every request against it too).
BUDGET = {"max_turns": "{{ params.max_turns }}", "max_input_tokens": "{{ params.max_input_tokens }}",
          "max_output_tokens": "{{ params.max_output_tokens }}", "max_cost_usd": "{{ params.max_cost_usd }}"}


def _warn_above_ceiling(context) -> None:
    """The plan task's warning when the parallel_limit Param is above the ceiling this file was parsed with."""
    limit = context["params"]["parallel_limit"]
    if limit > MAX_PARALLEL:
        print(f"WARNING: parallel_limit={limit} is above the ceiling WORKTREE_MAX_PARALLEL={MAX_PARALLEL} this DAG "
              f"was parsed with: at most {MAX_PARALLEL} shards run at once")


with DAG(
    dag_id="parallel_maintenance_poc",
    description="AI-driven maintenance of a git repository, one worktree per shard, in parallel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    user_defined_filters={"shlex_split": shlex.split},
    max_active_runs=1,
    tags=["worktree", "claude", "maintenance"],
    params={
        "repo": Param(*REPO_DEFAULT, type="string", minLength=1, pattern=r"\S",
                      description="Repository (required): a local path on the workers or a URL, e.g. "
                                  "/srv/repo or https://github.com/org/repo.git"),
        "task": Param("todo", type="string", enum=TASKS,
                      description="todo, docstrings, lint (needs lint_command), tests, custom (needs prompt)"),
        "lint_command": Param(None, type=["null", "string"],
                              description="Linter for the lint task, e.g. 'ruff check --output-format=concise' "
                                          "(run without a shell; the shard's files are appended)"),
        "verify_command": Param(None, type=["null", "string"],
                                description="Run in each worktree after the edits, e.g. 'python -m pytest -q'; "
                                            "non-zero fails the shard"),
        "prompt": Param(None, type=["null", "string"],
                        description="Instructions of the custom task; extra instructions for the others"),
        "include": Param(None, type=["null", "array"], items={"type": "string"},
                         description="Only files matching one of these globs, e.g. ['src/**/*.py']"),
        "exclude": Param(None, type=["null", "array"], items={"type": "string"},
                         description="Leave out files matching these globs, e.g. ['tests/**']"),
        "max_files_per_shard": Param(5, type="integer", minimum=1),
        "max_bytes_per_shard": Param(200_000, type="integer", minimum=1),
        "split_by": Param("size", type="string", enum=["size", "directory"]),
        "max_shards": Param(None, type=["null", "integer"], minimum=1,
                            description="Keep only the highest-priority shards (plans larger than "
                                        "[core] max_map_length are grouped to fit in any case)"),
        "parallel_limit": Param(PARALLEL_LIMIT, type="integer", minimum=1, maximum=MAX_PARALLEL,
                                description=f"Shards worked on at once (at most {MAX_PARALLEL}, "
                                            "WORKTREE_MAX_PARALLEL)"),
        "runner": Param("api", type="string", enum=["api", "claude_code"]),
        "mode": Param("interactive", type="string", enum=["interactive", "batch"],
                      description="interactive: each shard's agent loop now; batch: all shards as one Message "
                                  "Batch at half price (results within 24 h), applied per shard"),
        "batch_poll_seconds": Param(60, type="number", minimum=0.1,
                                    description="Batch mode: first wait between polls of the batch (grows 1.5x "
                                                "per poll, up to 10 minutes)"),
        "model": Param(None, type=["null", "string"], description="Default: the anthropic connection's model"),
        "max_turns": Param(20, type="integer", minimum=1),
        "max_input_tokens": Param(200_000, type=["null", "integer"], minimum=1,
                                  description="Per-shard cap on input tokens (all attempts)"),
        "max_output_tokens": Param(20_000, type=["null", "integer"], minimum=1,
                                   description="Per-shard cap on output tokens (all attempts)"),
        "max_cost_usd": Param(None, type=["null", "number"], minimum=0,
                              description="Per-shard cap in dollars"),
        "allow_commands": Param(None, type=["null", "array"], items={"type": "string"},
                                description="Commands the model may run in its worktree, e.g. "
                                            "['python -m pytest']; empty: no command tool"),
        "isolation": Param("auto", type="string", enum=["auto", "bwrap", "none"],
                           description="How code from the model or the repository runs: auto (bubblewrap "
                                       "when it works here, else a restricted environment), bwrap "
                                       "(required), none"),
        "base_ref": Param("HEAD", type="string", minLength=1, pattern=REV_PATTERN,
                          description="Start point of every shard branch: a branch, tag or commit"),
        "push": Param(False, type="boolean", description="Push each shard branch to origin"),
        "integration_branch": Param(None, type=["null", "string"], pattern="^$|" + BRANCH_PATTERN,
                                    description="Merge all shard branches into this branch (publishing: default "
                                                "worktree/<task>)"),
        "publish": Param("none", type="string", enum=["none", "draft", "ready"],
                         description="none: no pull request; draft: open or update a draft pull request; ready: "
                                     "the draft, then an approval in Airflow, then ready for review"),
        "forge": Param("github", type="string", enum=["github", "gitlab"],
                       description="Where to publish: github (connection github_default) or gitlab "
                                   "(gitlab_default)"),
        "forge_repository": Param(None, type=["null", "string"], pattern=r"^[^/\s]+/[^/\s]+$",
                                  description="Publishing: the repository on the forge as owner/name, e.g. "
                                              "octo-org/demo"),
        "base_branch": Param("main", type="string", minLength=1, pattern=BRANCH_PATTERN,
                             description="Publishing: the branch the pull request goes into"),
    },
    doc_md=__doc__,
) as dag:

    # Registers the shards for the run; returns one set of keyword arguments per shard for the maintain tasks, and
    # pushes the plan's summary under the XCom key "plan" for the report. include: only these files, and they win
    # over the default skip rules (vendored, generated, fixtures). The plan of any size maps: more shards than
    # [core] max_map_length are grouped to fit (and the plan says so).
    plan = ShardPlanOperator(
        task_id="plan",
        repo="{{ params.repo or None }}",
        task="{{ params.task }}",
        ref="{{ params.base_ref }}",
        task_options=TASK_OPTIONS,
        include="{{ params.include }}",
        exclude="{{ params.exclude }}",
        max_files="{{ params.max_files_per_shard }}",
        max_bytes="{{ params.max_bytes_per_shard }}",
        split_by="{{ params.split_by }}",
        top="{{ params.max_shards }}",
        shard_kwargs={"task_options": TASK_OPTIONS, "allow_commands": ALLOW_COMMANDS},
        on_execute_callback=_warn_above_ceiling,
        retries=0,
    )
    planned = plan.output

    # Batch mode: every shard in one Message Batch; defers while it runs. Interactive mode: returns at once.
    submit = ClaudeBatchSubmitOperator(
        task_id="submit_batch",
        shards=planned,
        mode="{{ params.mode }}",
        task_name="{{ params.task }}",
        repo="{{ params.repo or None }}",
        prompt="{{ params.prompt }}",
        model="{{ params.model }}",
        budget=BUDGET,
        base_ref="{{ params.base_ref }}",
        poll_interval="{{ params.batch_poll_seconds }}",
        retries=2,  # a retry resumes the recorded batch; deferred tasks want retries (an upstream race)
        retry_delay=pendulum.duration(seconds=5),
    )

    maintain = ClaudeMaintenanceOperator.partial(
        task_id="maintain",
        repo="{{ params.repo or None }}",
        prompt="{{ params.prompt }}",
        runner="{{ params.runner }}",
        runner_options={"model": "{{ params.model }}"},
        budget=BUDGET,
        verify_command="{{ params.verify_command }}",
        base_ref="{{ params.base_ref }}",
        push="{{ params.push }}",
        isolation="{{ params.isolation }}",
        max_active_shards="{{ params.parallel_limit }}",  # the run-time limit (slot semaphore)
        mode="{{ params.mode }}",
        retries=2,
        retry_delay=pendulum.duration(seconds=5),
        max_active_tis_per_dagrun=MAX_PARALLEL,  # the ceiling, fixed at parse time
        pool=MODEL_POOL,
    ).expand_kwargs(planned)

    # Runs only when at least one shard task succeeded: skipped for an empty plan (zero mapped tasks) and
    # for a failed plan, so it never waits for shards that will never be registered.
    watch = ShardStatusSensor(
        task_id="watch_shards",
        run_id="{{ run_id }}",
        on_stale="reset",
        fail_on_critical=False,  # thresholds are logged and in XCom; the report fails the run on failed shards
        poke_interval=5,
        timeout=3600,
        retries=1,
        retry_delay=pendulum.duration(seconds=5),
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
    )

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(params: dict | None = None, run_id: str | None = None, ti=None) -> dict:
        """Write the run's report beside the shard database and merge branches when asked."""
        from airflow_provider_worktree.core.health.report import build_report, merge_branches, write_report
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        planned = ti.xcom_pull(task_ids="plan", key="plan")
        if planned is None:
            raise RuntimeError("The plan task failed, so nothing ran: read the plan task's log for the reason, "
                               "fix the Params and trigger again")
        hook = ShardStatusHook()
        result = build_report(hook.get_store(), run_id)
        result["plan"] = planned
        branches = [s["branch"] for s in result["shards"] if s["status"] == "completed" and s["commit_sha"]]
        target = params["integration_branch"] or (f"worktree/{params['task']}" if params["publish"] != "none" else None)
        if target and branches:
            manager = GitWorktreeHook(repo=params["repo"] or None).get_manager()
            result["integration"] = merge_branches(manager, branches, target, run_id=run_id,
                                                   base_ref=params["base_ref"])
        nothing = planned["shards"] == 0
        if nothing:
            why = (f"no file of {planned['repo']} at {planned['base_ref']} needs the {planned['task']!r} task"
                   + (f" within the globs {planned['globs']}" if planned["globs"] else ""))
            if planned["skipped"]:
                why += f"; {planned['summary']}"
            result["nothing_to_do"] = why
        paths = write_report(result, hook.report_dir())
        if nothing:  # the report's Markdown says so first thing after its title
            with open(paths["markdown"], "a") as fh:
                fh.write(f"\n## Nothing to do\n\n{result['nothing_to_do']}.\n")
            print(f"Nothing to do: {result['nothing_to_do']}")
        with open(paths["markdown"]) as fh:
            print(fh.read())
        t = result["totals"]
        not_done = result["failed"] + result["unfinished"]
        if not_done:  # the report is written either way; the run is green only when every shard's work is done
            reasons = "; ".join(f"{s['shard_id']}: {s['error']}" for s in not_done[:5])
            more = f" (and {len(not_done) - 5} more)" if len(not_done) > 5 else ""
            raise RuntimeError(f"{len(result['failed'])} of {t['shards']} shard(s) failed and "
                               f"{len(result['unfinished'])} not done: {reasons}{more}. See {paths['markdown']}")
        return {"run_id": run_id, "paths": paths, "by_status": t["by_status"], "cost_usd": t["cost_usd"],
                "failed": result["failed"][:20], "unfinished": result["unfinished"][:20], "integration": result["integration"],
                "nothing_to_do": result.get("nothing_to_do")}

    # After a green report: the integration branch as a draft pull request (skipped when publish is "none").
    publish_kwargs = {"repository": "{{ params.forge_repository }}", "head": HEAD_BRANCH,
                      "base": "{{ params.base_branch }}", "task_name": "{{ params.task }}",
                      "repo": "{{ params.repo or None }}", "forge": "{{ params.forge }}",
                      "retries": 2, "retry_delay": pendulum.duration(seconds=5)}
    publish = ChangesetPublishOperator(
        task_id="publish", publish="{{ 'none' if params.publish == 'none' else 'draft' }}", **publish_kwargs)

    plan >> submit >> maintain >> watch >> report() >> publish

    @task.short_circuit(retries=0)
    def wants_ready(params: dict | None = None, ti=None) -> bool:
        """publish="ready" goes on to the approval; "draft" (or nothing published) stops here."""
        return params["publish"] == "ready" and bool(ti.xcom_pull(task_ids="publish"))

    ready = ChangesetPublishOperator(task_id="ready_for_review", publish="ready", **publish_kwargs)
    if ApprovalOperator is not None:
        # A human decides in Airflow (Required actions); deferred meanwhile (a triggerer), so retries >= 1.
        approve = ApprovalOperator(task_id="approve", subject="Mark the draft pull request ready for review?",
                                   body=APPROVAL_BODY, retries=1, retry_delay=pendulum.duration(seconds=5))
        publish >> wants_ready() >> approve >> ready
    else:  # a standard provider without the human-in-the-loop operators: no approval step
        publish >> wants_ready() >> ready
