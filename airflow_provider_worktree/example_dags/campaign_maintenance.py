"""One campaign across many repositories: every repository's shards mapped in one DAG run, one pull request each.

Trigger with the campaign's name. A campaign recorded with ``airflow-worktree campaign create`` brings its spec (the
task, the repositories listed or selected by a GitHub search, the pacing); an unknown name is recorded from the
``repositories`` and ``task`` Params (paths or clone URLs). ``retry_failed`` runs only the repositories whose last
outcome was ``failed`` or ``rate-limited``.

- ``select``: the repositories (each clone URL cloned or fetched into this worker's cache; archived, empty and
  forked ones skipped with the reason, recorded as outcome ``skipped``), and each one's shards planned with the
  shard budget split so the run fits ``[core] max_map_length``. Shard ids carry the repository's prefix.
- ``maintain``: the shards of every repository, mapped in one run (``parallel_limit`` at once).
- ``merge``: per repository, its accepted shards merged into the campaign's branch ``campaign/<name>``; a repository
  with a failed shard is not published (outcome ``failed`` with the shard's reason) and the others go on.
- ``publish``: one pull request per repository on the forge (a draft by default), updated in place by a re-run,
  closed when the run finds no diff, within the campaign's pacing (``paced`` otherwise).
- ``merge_green`` (``auto_merge``): each open pull request synced; those with passing checks and an approving review
  merged (squash, else merge, else rebase), outcome ``merged``; drafts are never merged.
- ``summary``: the per-repository table and the campaign's totals (cost per merged change) beside the shard
  database; the run fails when a repository failed, naming them (``airflow-worktree campaign retry-failed``).

Parsing does no git or database work. See docs/campaigns.md.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_provider_worktree.operators.changesets import ChangesetPublishOperator
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator

MAX_PARALLEL = int(os.environ.get("WORKTREE_MAX_PARALLEL", "32"))
TASKS = ["todo", "docstrings", "lint", "tests", "custom"]
BUDGET = {"max_input_tokens": "{{ params.max_input_tokens }}", "max_output_tokens": "{{ params.max_output_tokens }}"}

with DAG(
    dag_id="campaign_maintenance",
    description="One maintenance change across many repositories, one pull request each",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    max_active_runs=1,
    tags=["worktree", "claude", "campaign"],
    params={
        "campaign": Param(type="string", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                          description="The campaign's name (required; names the branch campaign/<name>)"),
        "repositories": Param(None, type=["null", "array"], items={"type": "string"},
                              description="For a campaign not recorded yet: repository paths or clone URLs"),
        "task": Param("todo", type="string", enum=TASKS, description="For a campaign not recorded yet"),
        "prompt": Param(None, type=["null", "string"], description="Instructions of the custom task"),
        "retry_failed": Param(False, type="boolean",
                              description="Only the repositories whose last outcome failed or was rate-limited"),
        "publish": Param("draft", type="string", enum=["none", "draft", "ready"]),
        "forge": Param("github", type="string", enum=["github", "gitlab"]),
        "base_branch": Param("main", type="string", description="Used when the forge does not say"),
        "auto_merge": Param(False, type="boolean",
                            description="Merge each pull request whose checks pass and whose review approved it "
                                        "(squash, else merge, else rebase); drafts are never merged"),
        "fix_red": Param(False, type="boolean",
                         description="Fix on red: each open pull request whose checks fail or whose review requested "
                                     "changes gets a round on its branch (the checks' output and the review comments "
                                     "to the model), pushed, commented, each review comment answered"),
        "max_fix_rounds": Param(3, type="integer", minimum=1, description="Fix rounds per pull request at most"),
        "fix_task": Param("custom", type="string", enum=TASKS,
                          description="The task of a fix round (lint with lint_command for lint checks)"),
        "lint_command": Param(None, type=["null", "string"], description="For the lint task, e.g. 'ruff check'"),
        "max_files_per_shard": Param(5, type="integer", minimum=1),
        "parallel_limit": Param(10, type="integer", minimum=1, maximum=MAX_PARALLEL),
        "max_input_tokens": Param(200_000, type="integer", minimum=1),
        "max_output_tokens": Param(20_000, type="integer", minimum=1),
    },
) as dag:

    @task(retries=0)
    def select(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """The campaign's repositories, cloned where needed, and every repository's shards (registered)."""
        from airflow_provider_worktree.core.campaigns import CampaignSpec
        from airflow_provider_worktree.core.campaigns.fixes import cause_of, fix_prompt, fix_shard, red_changesets
        from airflow_provider_worktree.core.campaigns.run import prefixed, repo_prefix, shard_budget
        from airflow_provider_worktree.core.campaigns.types import RETRY_OUTCOMES
        from airflow_provider_worktree.core.planning import plan_repository
        from airflow_provider_worktree.core.tasks import get_task
        from airflow_provider_worktree.hooks.forges import campaign_selection, forge_resolver
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
        from airflow_provider_worktree.version_compat import conf

        hook = ShardStatusHook()
        store = hook.get_store()
        name = params["campaign"]
        record = store.campaign(name)
        if record is None:
            if not params["repositories"]:
                raise ValueError(f"campaign {name!r} is not recorded: give the repositories Param (paths or clone "
                                 f"URLs), or record it with `airflow-worktree campaign create {name} ...`")
            spec = CampaignSpec(name=name, task=params["task"], repositories=tuple(params["repositories"]),
                                forge=params["forge"])
            store.save_campaign(name, spec.to_dict())
        else:
            spec = CampaignSpec.from_dict(record["spec"])
        selection = campaign_selection(spec)
        for s in selection.skipped:
            store.record_campaign_outcome(name, s.repository, "skipped", reason=s.reason, run_id=run_id)
        targets = selection.targets
        if params["retry_failed"]:
            failed = {r["repository"] for r in store.campaign_repositories(name, outcomes=RETRY_OUTCOMES)}
            targets = [t for t in targets if t.repository in failed]
            print(f"retry_failed: {len(targets)} of {len(selection.targets)} repositories: {sorted(failed)}")
        budget = shard_budget(conf.getint("core", "max_map_length", fallback=1024), len(targets))
        task_ = get_task(spec.task, **({"prompt": params["prompt"]} if params["prompt"] else {}))
        options = {"lint_command": params["lint_command"]} if params["lint_command"] else None
        red = {}
        if params["fix_red"]:  # fix on red: only the pull requests whose checks fail, one round each
            red = {r["row"]["repository"]: r for r in
                   red_changesets(store, forge_resolver(store, run_id=run_id), spec.head, params["max_fix_rounds"])}
            targets = [t for t in targets if t.repository in red]
            for r in red.values():
                print(f"{r['row']['repository']}: " + (r.get("reason") or f"fix round {r['round']} "
                                                       f"({cause_of(r['failing'], r['comments'])})"))
        out = []
        for t in targets:
            base = spec.base or t.default_branch or params["base_branch"]
            fix = red.get(t.repository)
            if fix is not None and fix["round"] is None:
                continue
            try:  # one repository that cannot be cloned or planned stops none of the others
                path = (t.location if os.path.isdir(t.location)
                        else GitWorktreeHook(repo=t.location).get_manager().repo_path)
                if fix is None:
                    plan = plan_repository(path, task_, max_files=params["max_files_per_shard"], max_shards=budget)
                    shards, prompt, base_ref = prefixed(plan.shards, t), params["prompt"], "HEAD"
                    print(f"{t.repository}: {len(shards)} shard(s) ({plan.summary()})")
                else:
                    shards = [fix_shard(path, fix, repo_prefix(t.repository), params["fix_task"], base)]
                    prompt = fix_prompt(fix["failing"], fix["round"], fix["comments"])
                    base_ref = fix["row"]["head_sha"]
            except Exception as exc:  # noqa: BLE001 - recorded as the repository's outcome, with the reason
                store.record_campaign_outcome(name, t.repository, "failed", reason=f"not planned: {exc}",
                                              run_id=run_id, location=t.location)
                print(f"{t.repository}: not planned: {exc}")
                continue
            hook.register_shards(run_id, shards)
            out.append({"repository": t.repository, "path": path, "forge": t.forge or spec.forge, "base": base,
                        "head": spec.head, "prefix": repo_prefix(t.repository), "shards": shards,
                        "task": spec.task, "prompt": prompt, "base_ref": base_ref, "task_options": options,
                        "fix": None if fix is None else {
                            "round": fix["round"], "kind": fix["kind"], "number": fix["row"]["number"],
                            "cause": cause_of(fix["failing"], fix["comments"]),
                            "comments": [c["id"] for c in fix["comments"]]}})
        return out

    @task(retries=0)
    def shards_of(targets: list[dict]) -> list[dict]:
        """Every repository's shards, one mapped maintain task each."""
        return [{"repo": t["path"], "shard": s, "prompt": t["prompt"], "base_ref": t["base_ref"],
                 "task_options": t["task_options"]} for t in targets for s in t["shards"]]

    targets = select()
    maintain = ClaudeMaintenanceOperator.partial(
        task_id="maintain",
        budget=BUDGET,
        max_active_shards="{{ params.parallel_limit }}",
        retries=2,
        retry_delay=pendulum.duration(seconds=5),
        max_active_tis_per_dagrun=MAX_PARALLEL,
    ).expand_kwargs(shards_of(targets))

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def merge(targets: list[dict], params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """Per repository: accepted shards merged into the campaign's branch; what to publish."""
        from airflow_provider_worktree.core.health.report import build_report, merge_branches
        from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        store = ShardStatusHook().get_store()
        publish = []
        for t in targets:
            if t["fix"] is not None:  # a fix round is pushed onto the pull request's head by push_fixes
                continue
            rep = build_report(store, run_id, shard_prefix=t["prefix"])
            not_done = rep["failed"] + rep["unfinished"]
            if not_done:
                why = "; ".join(f"{s['shard_id'][len(t['prefix']):]}: {s['error']}" for s in not_done[:3])
                store.record_campaign_outcome(params["campaign"], t["repository"], "failed", reason=why,
                                              run_id=run_id)
                continue
            branches = [s["branch"] for s in rep["shards"] if s["status"] == "completed" and s["commit_sha"]]
            if branches:
                merge_branches(GitWorktreeHook(repo=t["path"]).get_manager(), branches, t["head"], run_id=run_id)
            if params["publish"] == "none" or "/" not in t["repository"]:
                store.record_campaign_outcome(params["campaign"], t["repository"],
                                              "committed" if branches else "no-diff", run_id=run_id,
                                              reason=f"on branch {t['head']}" if branches else None)
                continue
            publish.append({"repository": t["repository"], "repo": t["path"], "base": t["base"],
                            "forge": t["forge"], "shard_prefix": t["prefix"]})
        return publish

    merged = merge(targets)
    maintain >> merged

    publish = ChangesetPublishOperator.partial(
        task_id="publish",
        head="campaign/{{ params.campaign }}",
        campaign="{{ params.campaign }}",
        publish="{{ 'draft' if params.publish == 'draft' else 'ready' }}",
        task_name="{{ params.campaign }}",
        retries=2,
        retry_delay=pendulum.duration(seconds=5),
    ).expand_kwargs(merged)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=1, retry_delay=pendulum.duration(seconds=5))
    def push_fixes(targets: list[dict], params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """fix_red: each round's verified commit pushed onto its pull request's head, a comment, the round recorded."""
        from airflow_provider_worktree.core.campaigns.fixes import finish_round
        from airflow_provider_worktree.hooks.forges import DEFAULT_CONN, forge_resolver, push_head
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        store = ShardStatusHook().get_store()
        forge_of = forge_resolver(store, run_id=run_id)

        def push(t: dict, sha: str) -> str | None:
            return push_head(forge_of(t["forge"]), t["forge"], DEFAULT_CONN[t["forge"]], t["repository"], t["head"],
                             repo=t["path"], source=sha)

        results = [finish_round(store, forge_of, t, params["campaign"], run_id, push)
                   for t in targets if t["fix"] is not None]
        for r in results:
            print(f"{r['repository']}: fix round {r['round']}: {r['outcome']}" + (f" ({r['reason']})" if r["reason"]
                                                                                   else ""))
        return results

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=1, retry_delay=pendulum.duration(seconds=5))
    def merge_green(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """auto_merge: the campaign's pull requests with passing checks and an approving review, merged."""
        if not params["auto_merge"]:
            return []
        from airflow_provider_worktree.core.campaigns.run import auto_merge
        from airflow_provider_worktree.hooks.forges import forge_resolver
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        store = ShardStatusHook().get_store()
        results = auto_merge(store, forge_resolver(store, run_id=run_id), params["campaign"],
                             f"campaign/{params['campaign']}", run_id=run_id)
        for r in results:
            print(f"{r['repository']}: {r['result']} ({r['reason']})")
        return results

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def summary(params: dict | None = None, run_id: str | None = None) -> dict:
        """The campaign's table beside the shard database; fails when a repository failed."""
        from airflow_provider_worktree.core.campaigns.run import markdown, repo_prefix, summarize
        from airflow_provider_worktree.core.health.report import build_report
        from airflow_provider_worktree.hooks.shard_status import ShardStatusHook

        hook = ShardStatusHook()
        store = hook.get_store()
        name = params["campaign"]
        rows = [r for r in store.campaign_repositories(name) if r["run_id"] == run_id]
        reports = {r["repository"]: build_report(store, run_id, shard_prefix=repo_prefix(r["repository"]))
                   for r in rows}
        result = summarize(name, rows, store.changesets(), reports, f"campaign/{name}")
        text = markdown(result, run_id)
        path = os.path.join(hook.report_dir(), "reports", f"campaign-{name}-{run_id.replace(':', '_')}.md")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
        print(text)
        failed = [r for r in result["repositories"] if r["outcome"] in ("failed", "rate-limited")]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(rows)} repositories failed: "
                               + "; ".join(f"{r['repository']}: {r['reason']}" for r in failed[:5])
                               + f". Re-run only them: trigger with retry_failed, or `airflow-worktree campaign "
                                 f"retry-failed {name}` to see the plan. See {path}")
        return {**result, "path": path}

    fixes = push_fixes(targets)
    maintain >> fixes
    publish >> fixes >> merge_green() >> summary()
