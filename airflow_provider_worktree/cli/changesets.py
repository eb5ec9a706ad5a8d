"""``changesets``: the pull and merge requests runs were published as (``changesets list``, the default),
``changesets sync`` (read their states from the forge now, through its Airflow connection) and the bulk actions
``ready | comment | close | merge`` on every changeset the filters select, each with its own result."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from airflow_provider_worktree.cli.common import EXIT_ERROR, EXIT_OK, CliError
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import _close, open_store
from airflow_provider_worktree.core.forge.actions import ACTIONS as BULK_ACTIONS

_FILTERS = (("state", "external_state"), ("review", "review"), ("checks", "checks"))
ACTIONS = ("list", "sync", *BULK_ACTIONS)
WRITES = BULK_ACTIONS
_STYLE = {"ok": "green", "failed": "red"}


def cmd_changesets(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    body = _body(args)
    if args.action == "comment" and not body:
        raise CliError("changesets comment needs the comment's text: pass --body TEXT or --body-file FILE")
    writes = args.action != "list" and not (args.action in WRITES and args.dry_run)
    store, desc = open_store(args, write=writes)
    try:
        rows = store.changesets(repository=args.repo)
        rows = [r for r in rows if all(getattr(args, a) in (None, r[col]) for a, col in _FILTERS)]
        failed: list[dict[str, Any]] = []
        conns = {"github": args.github_conn_id, "gitlab": args.gitlab_conn_id}
        if args.action == "sync":
            rows, failed = _sync(store, rows, conns)
        elif args.action in WRITES:
            return _bulk(args, out, store, desc, rows, conns, body)
    finally:
        _close(store)
    data = {"database": desc, "changesets": rows, "failed": failed}
    if not rows and not failed:
        return data, _none(args, desc), EXIT_OK
    table = out.table(["REPOSITORY", "#", "STATE", "PUBLICATION", "REVIEW", "CHECKS", "HEAD", "URL"],
                      [[r["repository"], str(r["number"] or "-"), r["external_state"], r["publication"], r["review"],
                        r["checks"], r["head"], r["url"] or "-"] for r in rows], right=(1,))
    lines = [table] + [f"{out.level('error')} {f['repository']}#{f['number']}: {f['error']}" for f in failed]
    return data, "\n".join(lines), EXIT_ERROR if failed else EXIT_OK


def _none(args: argparse.Namespace, desc: str) -> str:
    filtered = args.repo or any(getattr(args, a) for a, _ in _FILTERS)
    return f"No changeset in {desc}" + (" matches the filters." if filtered else ": no run published one yet.")


def _body(args: argparse.Namespace) -> str | None:
    if getattr(args, "body_file", None):
        try:
            return Path(args.body_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read --body-file {args.body_file}: {exc.strerror}") from None
    return getattr(args, "body", None)


def _forges(rows: list[dict[str, Any]], conns: dict[str, str], store: Any = None) -> Any:
    """The forge of every row's kind, from its Airflow connection (with ``store``, writes paced by the limiter
    every worker shares); a missing provider or connection stops the command with the fix, before any write."""
    from airflow_provider_worktree.hooks.forges import forge_resolver

    forge_of = forge_resolver(store, conns)
    for name in sorted({r["forge"] for r in rows if r["number"]}):
        try:
            forge_of(name)
        except Exception as exc:  # noqa: BLE001 - a missing provider or connection, named with the fix
            raise CliError(f"{name} connection {conns.get(name)!r}: {exc}; create it (the token as password; GitHub "
                           "Enterprise host https://HOST/api/v3, GitLab host its URL) or pass "
                           f"--{name}-conn-id") from None
    return forge_of


def _sync(store: Any, rows: list[dict[str, Any]], conns: dict[str, str],
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each changeset synced on its own: one failure does not stop the rest (it is recorded on its row)."""
    from airflow_provider_worktree.core.forge import ForgeError

    forge_of = _forges(rows, conns)
    synced, failed = [], []
    for r in rows:
        if not r["number"]:
            continue
        try:
            synced.append(store.record_changeset(forge_of(r["forge"]).sync(r["repository"], r["number"],
                                                                           r["head"]).to_dict()))
        except ForgeError as exc:
            store.record_changeset_failure(r["forge"], r["repository"], r["head"], str(exc))
            failed.append({"repository": r["repository"], "number": r["number"], "error": str(exc)})
    return synced, failed


def _bulk(args: argparse.Namespace, out: Render, store: Any, desc: str, rows: list[dict[str, Any]],
          conns: dict[str, str], body: str | None) -> tuple[Any, str, int]:
    """One action on every selected changeset; each gets its own result, a failure stops none of the rest."""
    from airflow_provider_worktree.core.forge.actions import run_bulk

    data: dict[str, Any] = {"database": desc, "action": args.action, "dry_run": bool(args.dry_run)}
    if not rows:
        return {**data, "results": [], "failed": 0}, _none(args, desc), EXIT_OK
    if args.dry_run:
        data["changesets"] = rows
        table = out.table(["REPOSITORY", "#", "STATE", "PUBLICATION", "CHECKS", "URL"],
                          [[r["repository"], str(r["number"] or "-"), r["external_state"], r["publication"],
                            r["checks"], r["url"] or "-"] for r in rows], right=(1,))
        return data, f"{table}\n{out.level('info')} --dry-run: would {args.action} these {len(rows)} changeset(s); " \
                     "nothing was sent", EXIT_OK
    results = [x.to_dict() for x in run_bulk(args.action, rows, _forges(rows, conns, store), store, body=body,
                                             method=args.method)]
    bad = sum(1 for x in results if x["result"] != "ok")
    data.update(results=results, failed=bad)
    table = out.table(["REPOSITORY", "#", "RESULT", "REASON", "URL"],
                      [[x["repository"], str(x["number"] or "-"),
                        (x["result"], _STYLE[x["result"]]), x["reason"],
                        x["url"] or "-"] for x in results], right=(1,))
    summary = f"{args.action}: {len(results) - bad} ok, {bad} failed"
    return data, f"{table}\n{out.level('error' if bad else 'success')} {summary}", EXIT_ERROR if bad else EXIT_OK
