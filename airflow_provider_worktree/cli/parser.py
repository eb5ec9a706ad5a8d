"""The ``airflow-worktree`` command line, declared as data: each command is a row of :data:`COMMANDS` (its name,
help, function and options); every command also takes the common options (``-o/--output``, ``--json``,
``--color``, ``--db``/``--conn-id``), before or after its name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple

from airflow_provider_worktree.cli import campaigns, changesets, db, limits, shards
from airflow_provider_worktree.cli.common import (
    DEFAULT_CONN_ID,
    EXIT_ERROR,
    PROG,
    _fmt_default,
    _threshold_override,
    parse_duration,
)
from airflow_provider_worktree.cli.render import FORMATS


class Command(NamedTuple):
    name: str
    help: str
    func: Callable[..., Any]
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()


def _opt(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


def _older_than(default: float, what: str):
    return _opt("--older-than", type=parse_duration, default=default, metavar="DURATION",
                help=f"{what}, like 90s, 30m, 1h, 2d (default {_fmt_default(default)})")


RUN_ID = _opt("--run-id", help="only this run")
RUN_ID_ALL = _opt("--run-id", help="only this run (default: every run in the database)")
DRY_RUN = _opt("--dry-run", action="store_true", help="list what would change; change nothing")
THRESHOLD = _opt("--threshold", metavar="KEY=VALUE", action="append", type=_threshold_override,
                 help="override a threshold, e.g. stale_locks_warning=2 (see `thresholds`); repeatable")
STALE_AFTER = _opt("--stale-after", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="lease age counted as a stale lock for the thresholds (default 1h)")
WORKTREE_ROOT = _opt("--worktree-root", metavar="DIR", help="where shard worktrees live (default: the manager's)")
OVERWRITE = _opt("--overwrite", action="store_true", help="replace what is there")

COMMANDS: tuple[Command, ...] = (
    Command("status", "shards per status, running shards with their age, recent failures", shards.cmd_status,
            (RUN_ID, STALE_AFTER, THRESHOLD)),
    Command("stale", "running shards whose lease is older than --older-than (stale locks)", shards.cmd_stale,
            (_older_than(3600.0, "lease age counted as stale (the runbook's 1h)"), RUN_ID, THRESHOLD)),
    Command("reset-stale", "put stale shards back to pending so another worker claims them", shards.cmd_reset_stale,
            (_older_than(3600.0, "lease age counted as stale"), RUN_ID, DRY_RUN)),
    Command("report", "per run: shards, durations, tokens, cost, branches, why shards failed or are not done",
            shards.cmd_report, (RUN_ID_ALL,)),
    Command("batches", "batch mode: each run's Message Batches and what became of each shard", shards.cmd_batches,
            (RUN_ID_ALL,)),
    Command("limits", "the shared rate limits: per scope what is left, 429 blocks, the spend cap; per run calls, "
            "429s, waiting, input tokens per minute against the limit; `limits clear SCOPE` resets a scope",
            limits.cmd_limits, (
                _opt("action", nargs="?", choices=("show", "clear"), default="show",
                     help="show (default) or clear a scope"),
                _opt("scope", nargs="?", metavar="SCOPE", help="the scope to clear, e.g. anthropic:anthropic_default"),
                RUN_ID_ALL)),
    Command("changesets", "the pull requests runs were published as, with their states; `sync` reads them from the "
            "forge now; `ready|comment|close|merge` act on every changeset the filters select (one result each)",
            changesets.cmd_changesets, (
                _opt("action", nargs="?", choices=changesets.ACTIONS, default="list",
                     help="list (default), sync, or a bulk action: ready (drafts become ready for review), comment "
                          "(--body), close (optionally with --body), merge (--method, falling back to the others)"),
                _opt("--repo", metavar="OWNER/NAME", help="only this repository"),
                _opt("--state", choices=("open", "merged", "closed"), help="only this external state"),
                _opt("--review", choices=("pending", "approved", "changes_requested"), help="only this review state"),
                _opt("--checks", choices=("pending", "passing", "failing", "unknown"), help="only this checks state"),
                _opt("--github-conn-id", default="github_default", metavar="ID",
                     help="the GitHub connection (default github_default)"),
                _opt("--gitlab-conn-id", default="gitlab_default", metavar="ID",
                     help="the GitLab connection (default gitlab_default)"),
                _opt("--body", metavar="TEXT", help="comment/close: the comment's text (Markdown)"),
                _opt("--body-file", metavar="FILE", help="comment/close: read the comment's text from FILE"),
                _opt("--method", choices=("squash", "merge", "rebase"), default=None,
                     help="merge: the method tried first (default squash, then merge, then rebase, each tried only "
                          "when the repository refuses the one before)"),
                _opt("--dry-run", action="store_true",
                     help="bulk actions: list the changesets the action would touch; send nothing"))),
    Command("campaign", "one change across many repositories: `campaign create NAME --task T (--repository "
            "PATH_OR_URL ... | --org ORG ...)`, `list`, `show NAME`, `plan NAME` (what a run would create, update, "
            "close, keep or skip; sends nothing), `retry-failed NAME` (the plan of only the failed repositories)",
            campaigns.cmd_campaign, (
                _opt("action", choices=campaigns.ACTIONS, help="list, show, create, plan or retry-failed"),
                _opt("name", nargs="?", metavar="NAME", help="the campaign (names its branch campaign/NAME)"),
                _opt("--task", help="create: the maintenance task (todo, docstrings, lint, tests, ...)"),
                _opt("--repository", action="append", metavar="PATH_OR_URL",
                     help="create: a repository (a checkout path or a clone URL); repeatable"),
                _opt("--org", help="create: select the repositories of this GitHub organisation"),
                _opt("--user", help="create: select the repositories of this GitHub user"),
                _opt("--group", help="create: select the projects of this GitLab group and its subgroups "
                                     "(with --forge gitlab)"),
                _opt("--topic", action="append", help="create: only repositories with this topic; repeatable"),
                _opt("--language", help="create: only repositories in this language"),
                _opt("--name-contains", metavar="TEXT", help="create: only repositories whose name has TEXT"),
                _opt("--include-forks", action="store_true", help="create: forks too (skipped by default)"),
                _opt("--forge", choices=("github", "gitlab"), default="github", help="create: where the pull "
                     "requests go (default github)"),
                _opt("--base", help="create: the base branch (default: each repository's default branch)"),
                _opt("--max-new-prs", type=int, default=10, metavar="K",
                     help="create: at most K new pull requests per --window (default 10)"),
                _opt("--window", type=parse_duration, default=3600.0, metavar="DURATION",
                     help="create: the pacing window (default 1h)"),
                _opt("--max-pending-checks", type=int, default=20, metavar="M",
                     help="create: no new pull request while more than M have checks pending (default 20)"),
                _opt("--github-conn-id", default="github_default", metavar="ID",
                     help="plan: the GitHub connection for a search selection (default github_default)"),
                _opt("--gitlab-conn-id", default="gitlab_default", metavar="ID",
                     help="plan: the GitLab connection for a group selection (default gitlab_default)"))),
    Command("prune", "remove leftover shard worktrees older than --older-than", shards.cmd_prune, (
        _opt("--repo", default=".", metavar="PATH", help="the repository (default: the current directory)"),
        WORKTREE_ROOT, _older_than(86400.0, "worktree age before it may be pruned (the runbook's 24h)"), DRY_RUN)),
    Command("check", "evaluate the runbook's alert thresholds (exit 0 ok, 1 warning, 2 critical)", shards.cmd_check, (
        _opt("--run-id", help="only this run (default: the whole database)"), STALE_AFTER,
        _opt("--repo", metavar="PATH", help="also count the repository's active worktrees"),
        _opt("--worktree-root", metavar="DIR", help="also measure free disk space (and worktrees) there"),
        _opt("-q", "--quiet", action="store_true",
             help="print nothing when every threshold is ok (for cron: mail only when something is wrong)"),
        THRESHOLD)),
    Command("thresholds", "print the alert thresholds in force (runbook defaults + overrides)", shards.cmd_thresholds,
            (THRESHOLD,)),
    Command("example-dags", "copy the example DAGs (parallel_maintenance_poc, worktree_health, campaign_maintenance) into a dags "
            "folder",
            db.cmd_example_dags, (_opt("dest", metavar="DEST", nargs="?", default=None,
                                       help="the dags folder (created if missing; default: Airflow's "
                                            "[core] dags_folder, ~/airflow/dags when AIRFLOW_HOME is unset)"),
                                  _opt("--overwrite", action="store_true", help="replace DAG files of the same name"))),
)

DB_COMMANDS: tuple[Command, ...] = (
    Command("backup", "copy the SQLite database with the online backup API (safe while it runs)", db.cmd_db_backup, (
        _opt("dest", metavar="DEST", help="backup file to create, or a directory (gets <name>.<UTC>.bak)"),
        _opt("--overwrite", action="store_true", help="replace DEST if it exists"))),
    Command("restore", "replace the SQLite database with a checked copy of a backup (the replaced file is kept "
            "aside); pause the DAGs first", db.cmd_db_restore,
            (_opt("source", metavar="BACKUP", help="a file written by `db backup`"),)),
    Command("integrity", "PRAGMA integrity_check (exit 0 ok, 2 damaged)", db.cmd_db_integrity, (
        _opt("--quick", action="store_true", help="PRAGMA quick_check: faster, skips index cross-checks"),)),
    Command("archive", "move shards of finished runs older than --older-than into an archive, then delete them",
            db.cmd_db_archive, (
                _opt("--older-than", type=parse_duration, required=True, metavar="DURATION",
                     help="archive shards that ended longer ago than this, like 30d or 12w"),
                _opt("--to", metavar="PATH", help="SQLite archive file (default: <db>.archive.db beside the "
                                                  "database; PostgreSQL: shard_status_archive table)"),
                _opt("--dry-run", action="store_true", help="count what would move; change nothing"),
                _opt("--vacuum", action="store_true", help="vacuum afterwards so the file shrinks"))),
    Command("vacuum", "return free pages to the file system (SQLite VACUUM; PostgreSQL VACUUM ANALYZE)",
            db.cmd_db_vacuum),
    Command("upgrade", "apply schema migrations (creates the tables in an empty database); SQLite files are "
            "backed up first", db.cmd_db_upgrade,
            (_opt("--no-backup", action="store_true", help="do not back the SQLite file up first"),)),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 3 (2 means "critical" here)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes; on a subcommand they default to SUPPRESS so the top level's value (given
    before the command's name) stands unless repeated after it."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("-o", "--output", choices=FORMATS, default=default("table"),
                        help="output format: table (default), json, yaml, plain (tab-separated)")
    parser.add_argument("--json", dest="output", action="store_const", const="json", default=argparse.SUPPRESS,
                        help="the same as -o json")
    parser.add_argument("--color", choices=("auto", "always", "never"), default=default("auto"),
                        help="colour: auto (a TTY without NO_COLOR), always, never")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--db", metavar="PATH", default=default(None),
                       help="the shard database file (SQLite) or a postgresql:// URL; no Airflow needed")
    group.add_argument("--conn-id", metavar="ID", default=default(None),
                       help=f"Airflow connection of the shard database (default: {DEFAULT_CONN_ID} if it exists, "
                            "else $AIRFLOW_HOME/shard_status.db)")


def _add(subs: Any, command: Command) -> None:
    p = subs.add_parser(command.name, help=command.help, description=command.help)
    _common(p, top=False)
    for flags, kwargs in command.options:
        p.add_argument(*flags, **kwargs)
    p.set_defaults(func=command.func)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Operate the shard status database and worktrees of airflow-provider-worktree "
                    "(the runbook's procedures).",
        epilog="Exit codes: 0 ok; 1 a warning threshold (check); 2 a critical threshold (status, stale, check); "
               "3 could not run (no database, not a shard database, bad connection or arguments).",
    )
    _common(parser, top=True)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True
    for command in COMMANDS[:-1]:
        _add(subs, command)
    dbp = subs.add_parser("db", help="database maintenance: backup, restore, integrity, archive, vacuum, upgrade")
    dbs = dbp.add_subparsers(dest="db_command", metavar="DB_COMMAND", parser_class=_Parser)
    dbs.required = True
    for command in DB_COMMANDS:
        _add(dbs, command)
    _add(subs, COMMANDS[-1])  # example-dags, after db as before
    return parser
