"""``airflow-worktree``: the runbook's procedures as one command.

Subcommands: ``status``, ``stale``, ``reset-stale``, ``report``, ``prune``, ``check``, ``thresholds``,
``db backup|restore|integrity|archive|vacuum|upgrade`` and ``example-dags``. The same commands run as
``airflow worktree ...`` (the provider's ``cli`` entry). Read-only commands (status, stale, report, check,
thresholds, db integrity, db backup) create, migrate and write nothing.
Each takes ``-o/--output table|json|yaml|plain`` (``--json`` is ``-o json``) and ``--db PATH`` or
``--conn-id ID``. With ``--db`` nothing here imports Airflow;
``--conn-id`` (and the default, the ``shard_status_default`` connection when it exists, else
``$AIRFLOW_HOME/shard_status.db``) imports it lazily.

Exit codes (Nagios-style, so cron and monitoring can alert on them):

- 0: done; every evaluated threshold is ok.
- 1: ``check`` only: a warning threshold is crossed.
- 2: a critical threshold is crossed (``status``, ``stale`` and ``check`` evaluate thresholds).
- 2: also ``db integrity`` finding damage.
- 3: could not run: no database, a file that is not the shard database, a damaged or read-only database, a
  bad connection, bad arguments. Always one line on stderr, never a traceback
  (``AIRFLOW_WORKTREE_DEBUG=1`` shows it).

The package: ``common`` (exit codes, errors, formatters), ``render`` (output formats, rich tables), ``target``
(which database), ``shards`` and ``db`` (the commands), ``parser`` (the command line as data), ``main`` (this).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from airflow_provider_worktree.cli.common import EXIT_ERROR, PROG, CliError
from airflow_provider_worktree.cli.parser import build_parser
from airflow_provider_worktree.cli.render import Render, dump
from airflow_provider_worktree.cli.target import _describe_unexpected
from airflow_provider_worktree.core.errors import WorktreeProviderError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.db and args.conn_id:
        parser.error("argument --conn-id: not allowed with argument --db")
    out = Render(args.output, args.color)
    err = Render("table", args.color, sys.stderr)
    try:
        data, text, code = args.func(args, out)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every failure is one line and exit 3, never a traceback
        if os.environ.get("AIRFLOW_WORKTREE_DEBUG"):
            raise
        code = exc.code if isinstance(exc, CliError) else EXIT_ERROR
        message = str(exc) if isinstance(exc, WorktreeProviderError | CliError) else _describe_unexpected(exc)
        print(f"{PROG}: {err.style('error', 'bold', 'red')}: {' '.join(message.split())}", file=sys.stderr)
        return code
    try:
        if args.output in ("json", "yaml"):
            print(dump(data, args.output))
        elif text is not None:
            print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `airflow-worktree status | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


# `airflow worktree ...`: the same commands inside Airflow's CLI (the provider's "cli" entry)

def _airflow_worktree(args: argparse.Namespace) -> None:
    code = main(list(args.worktree_args))
    if code:
        sys.exit(code)



def get_provider_cli_commands() -> list:
    """Airflow's ``cli`` provider entry: ``airflow worktree COMMAND ...`` runs ``airflow-worktree COMMAND ...``."""
    from airflow.cli.cli_config import ActionCommand, Arg

    return [ActionCommand(
        name="worktree",
        help="Shard database and worktrees of airflow-provider-worktree (same as the airflow-worktree command)",
        description="Runs airflow-worktree with the arguments that follow, e.g. `airflow worktree status`, "
                    "`airflow worktree db backup /backups`. Commands: status, stale, reset-stale, report, prune, "
                    "check, thresholds, db, example-dags; `airflow worktree COMMAND --help` shows their options.",
        func=_airflow_worktree,
        args=(Arg(("worktree_args",), nargs=argparse.REMAINDER, metavar="COMMAND ...",
                  help="an airflow-worktree command and its options"),),
    )]


if __name__ == "__main__":
    sys.exit(main())
