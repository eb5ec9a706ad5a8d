"""``changesets``: the pull requests runs were published as (``changesets list``, the default) and ``changesets
sync`` (read their states from GitHub now, through the GitHub connection)."""

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
            rows, failed = _sync(store, rows, args.github_conn_id)
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


def _sync(store: Any, rows: list[dict[str, Any]], conn_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each changeset synced on its own: one failure does not stop the rest (it is recorded on its row)."""
    try:
        from airflow.providers.github.hooks.github import GithubHook
    except ImportError:
        raise CliError("`changesets sync` needs the GitHub provider: pip install 'airflow-provider-worktree[github]'")
    from airflow_provider_worktree.core.forge import ForgeError, GitHubForge

    try:
        forge = GitHubForge(GithubHook(github_conn_id=conn_id).get_conn())
    except Exception as exc:  # noqa: BLE001 - a missing or bad connection, named with the fix
        raise CliError(f"GitHub connection {conn_id!r}: {exc}; create it (conn type github, the token as password, "
                       "host https://HOST/api/v3 for Enterprise) or pass --github-conn-id") from None
    synced, failed = [], []
    for r in rows:
        if not r["number"]:
            continue
        try:
            synced.append(store.record_changeset(forge.sync(r["repository"], r["number"], r["head"]).to_dict()))
        except ForgeError as exc:
            store.record_changeset_failure(r["forge"], r["repository"], r["head"], str(exc))
            failed.append({"repository": r["repository"], "number": r["number"], "error": str(exc)})
    return synced, failed
