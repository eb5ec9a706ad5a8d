"""``changesets``: the pull and merge requests runs were published as (``changesets list``, the default) and
``changesets sync`` (read their states from the forge now, through its Airflow connection)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_provider_worktree.cli.common import EXIT_ERROR, EXIT_OK, CliError
from airflow_provider_worktree.cli.render import Render
from airflow_provider_worktree.cli.target import _close, open_store

_FILTERS = (("state", "external_state"), ("review", "review"), ("checks", "checks"))


def cmd_changesets(args: argparse.Namespace, out: Render) -> tuple[Any, str, int]:
    store, desc = open_store(args, write=args.action == "sync")
    try:
        rows = store.changesets(repository=args.repo)
        rows = [r for r in rows if all(getattr(args, a) in (None, r[col]) for a, col in _FILTERS)]
        failed: list[dict[str, Any]] = []
        if args.action == "sync":
            rows, failed = _sync(store, rows, {"github": args.github_conn_id, "gitlab": args.gitlab_conn_id})
    finally:
        _close(store)
    data = {"database": desc, "changesets": rows, "failed": failed}
    if not rows and not failed:
        return data, f"No changeset in {desc}" + (" matches the filters." if args.repo or any(
            getattr(args, a) for a, _ in _FILTERS) else ": no run published one yet."), EXIT_OK
    table = out.table(["REPOSITORY", "#", "STATE", "PUBLICATION", "REVIEW", "CHECKS", "HEAD", "URL"],
                      [[r["repository"], str(r["number"] or "-"), r["external_state"], r["publication"], r["review"],
                        r["checks"], r["head"], r["url"] or "-"] for r in rows], right=(1,))
    lines = [table] + [f"{out.level('error')} {f['repository']}#{f['number']}: {f['error']}" for f in failed]
    return data, "\n".join(lines), EXIT_ERROR if failed else EXIT_OK


def _sync(store: Any, rows: list[dict[str, Any]], conns: dict[str, str],
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each changeset synced on its own: one failure does not stop the rest (it is recorded on its row)."""
    from airflow_provider_worktree.core.forge import ForgeError
    from airflow_provider_worktree.hooks.forges import forge_for

    forges: dict[str, Any] = {}
    synced, failed = [], []
    for r in rows:
        if not r["number"]:
            continue
        if r["forge"] not in forges:
            try:
                forges[r["forge"]] = forge_for(r["forge"], conns.get(r["forge"]))
            except Exception as exc:  # noqa: BLE001 - a missing provider or connection, named with the fix
                raise CliError(f"{r['forge']} connection {conns.get(r['forge'])!r}: {exc}; create it (the token as "
                               "password; GitHub Enterprise host https://HOST/api/v3, GitLab host its URL) or pass "
                               f"--{r['forge']}-conn-id") from None
        try:
            synced.append(store.record_changeset(forges[r["forge"]].sync(r["repository"], r["number"],
                                                                         r["head"]).to_dict()))
        except ForgeError as exc:
            store.record_changeset_failure(r["forge"], r["repository"], r["head"], str(exc))
            failed.append({"repository": r["repository"], "number": r["number"], "error": str(exc)})
    return synced, failed
