"""``campaign``: one change across many repositories. ``campaign create NAME`` records the spec (a task, and the
repositories as paths/URLs or a GitHub search); ``list``; ``show NAME`` (each repository's last outcome); ``plan
NAME`` (what a run would create, update, close, keep or skip, before any write); ``retry-failed NAME`` (the plan
of only the repositories whose last outcome failed)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_provider_worktree.cli.common import EXIT_ERROR, EXIT_OK, CliError
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import _close, open_store

ACTIONS = ("list", "show", "create", "plan", "retry-failed")
_STYLE = {"create": "green", "update": "yellow", "close": "red", "keep": None, "skip": "dim"}


def cmd_campaign(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.errors import ConfigurationError

    if args.action != "list" and not args.name:
        raise CliError(f"campaign {args.action} needs the campaign's NAME (see `campaign list`)")
    store, desc = open_store(args, write=args.action == "create")
    try:
        if args.action == "list":
            return _list(store, desc, out)
        if args.action == "create":
            try:
                spec = _spec(args)
            except ConfigurationError as exc:
                raise CliError(str(exc)) from None
            store.save_campaign(spec.name, spec.to_dict())
            return ({"database": desc, "campaign": spec.to_dict()},
                    f"{out.level('success')} campaign {spec.name} recorded (head branch {spec.head}); "
                    f"`campaign plan {spec.name}` shows what a run would do", EXIT_OK)
        record = store.campaign(args.name)
        if record is None:
            raise CliError(f"no campaign {args.name!r} in {desc}: `campaign list` shows the campaigns, "
                           "`campaign create NAME ...` records one")
        if args.action == "show":
            return _show(store, desc, record, out)
        return _plan(args, store, desc, record, out)
    finally:
        _close(store)


def _spec(args: argparse.Namespace) -> Any:
    from airflow_provider_worktree.core.campaigns import CampaignSpec, Pacing

    query = {k: v for k, v in (("org", args.org), ("user", args.user), ("group", args.group),
                               ("topics", args.topic or []), ("language", args.language),
                               ("name", args.name_contains)) if v}
    if not args.task:
        raise CliError("campaign create needs --task (one of the catalog's tasks, e.g. todo or docstrings)")
    return CampaignSpec(name=args.name, task=args.task, repositories=tuple(args.repository or ()), query=query,
                        forge=args.forge, base=args.base, include_forks=args.include_forks,
                        pacing=Pacing(max_new_prs=args.max_new_prs, window_s=args.window,
                                      max_pending_checks=args.max_pending_checks))


def _list(store: Any, desc: str, out: Render) -> tuple[Any, str, int]:
    rows = store.campaigns()
    if not rows:
        return {"database": desc, "campaigns": []}, f"No campaign in {desc}: `campaign create NAME` records one.", 0
    table = out.table(["CAMPAIGN", "TASK", "SELECTION", "OUTCOMES", "UPDATED (UTC)"],
                      [[r["name"], r["spec"]["task"], _selection_text(r["spec"]),
                        ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())) or "-",
                        str(r["updated_at"])[:19]] for r in rows])
    return {"database": desc, "campaigns": rows}, table, EXIT_OK


def _selection_text(spec: dict[str, Any]) -> str:
    if spec.get("repositories"):
        return f"{len(spec['repositories'])} listed"
    q = spec.get("query") or {}
    return " ".join(f"{k}:{','.join(v) if isinstance(v, list) else v}" for k, v in sorted(q.items()))


def _show(store: Any, desc: str, record: dict[str, Any], out: Render) -> tuple[Any, str, int]:
    repos = store.campaign_repositories(record["name"])
    data = {"database": desc, **record, "repositories": repos}
    head = f"Campaign {record['name']}: task {record['spec']['task']}, {_selection_text(record['spec'])}"
    if not repos:
        return data, head + "\nNo run of this campaign recorded an outcome yet.", EXIT_OK
    table = out.table(["REPOSITORY", "OUTCOME", "REASON", "PULL REQUEST", "RUN"],
                      [[r["repository"], r["outcome"], r["reason"] or "", r["url"] or "-", r["run_id"] or "-"]
                       for r in repos])
    return data, head + "\n\n" + table, EXIT_OK


def _plan(args: argparse.Namespace, store: Any, desc: str, record: dict[str, Any],
          out: Render) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.campaigns import CampaignSpec
    from airflow_provider_worktree.core.campaigns.plan import plan_campaign, summary
    from airflow_provider_worktree.core.campaigns.types import RETRY_OUTCOMES

    spec = CampaignSpec.from_dict(record["spec"])
    outcomes = {r["repository"]: r for r in store.campaign_repositories(spec.name)}
    only = None
    if args.action == "retry-failed":
        only = [r for r, o in outcomes.items() if o["outcome"] in RETRY_OUTCOMES]
        if not only:
            return ({"database": desc, "campaign": spec.name, "retry": [], "plan": []},
                    f"Nothing to retry: no repository of campaign {spec.name} ended failed or rate-limited.", EXIT_OK)
    selection = _select(spec, args)
    entries = plan_campaign(spec, selection, store.changesets(), outcomes, only=only)
    counts = summary(entries)
    data = {"database": desc, "campaign": spec.name, "head": spec.head, "plan": [e.to_dict() for e in entries],
            "summary": counts, **({"retry": only} if only is not None else {})}
    table = out.table(["REPOSITORY", "ACTION", "WHY", "PULL REQUEST"],
                      [[e.repository, (e.action, _STYLE[e.action]), e.reason, e.url or "-"] for e in entries])
    line = "Plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items() if n) + " (nothing was sent)"
    return data, f"{table}\n\n{line}", EXIT_OK


def _select(spec: Any, args: argparse.Namespace) -> Any:
    from airflow_provider_worktree.hooks.forges import campaign_selection

    try:
        return campaign_selection(spec, github_conn_id=args.github_conn_id, gitlab_conn_id=args.gitlab_conn_id)
    except Exception as exc:  # noqa: BLE001 - a missing provider or connection, the forge's refusal: named
        conn = args.gitlab_conn_id if spec.forge == "gitlab" else args.github_conn_id
        raise CliError(f"the {spec.forge} selection of campaign {spec.name} failed: {exc}; check the connection "
                       f"{conn!r} (token as password) or pass --{spec.forge}-conn-id", EXIT_ERROR) from None
