"""What the smoke run runs: the project, the DAG, the accepted values, the usage text, its exceptions."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
DAG_ID = "parallel_maintenance_poc"
DAG_FILE = PROJECT / "airflow_provider_worktree" / "example_dags" / f"{DAG_ID}.py"
CAMPAIGN_DAG_ID = "campaign_maintenance"  # --repos N: one campaign over N demo repositories
PROG = "smoke_run.sh"
TASKS = ("todo", "docstrings", "lint", "tests", "custom")
MODES = ("scheduler", "executor", "sequential")
METADATA_DBS = ("auto", "sqlite", "postgres")
PUBLISH = ("github", "gitlab", "none")

USAGE = f"""Usage: ./scripts/smoke_run.sh [options]

Runs the example DAG {DAG_ID} on a clone of a repository and verifies the result; with --repos N, the
example DAG {CAMPAIGN_DAG_ID}: one campaign over N generated demo repositories.

Options:
  --repo PATH         repository to maintain (cloned with --no-local into the smoke home; your checkout,
                      its branches and status are verified unchanged). Default: a generated demo repository
  --modules N         modules in the generated demo repository (default 30, i.e. 15 shards of 2 files; with
                      --repos: default 8 in the first repository and 2 more in each next one)
  --repos N           N > 1: a campaign. Generates N demo repositories (demo-1 .. demo-N, same generator,
                      different sizes), creates them on the offline forge, runs ONE campaign over their clone
                      URLs with the DAG {CAMPAIGN_DAG_ID}, and checks: the run succeeded; one changeset per
                      repository with a pull request on head campaign/smoke-<task>; each body holds only its own
                      repository's shards and no secret; every outcome is pr-opened (airflow-worktree campaign
                      show). Then it runs the same conf again: every outcome is pr-updated and the forge's
                      request log shows N pull requests created in all. Prints the pull requests and the
                      campaign summary (HOME/reports/campaign-<name>-<run>.md). Publishes on the offline GitHub
                      unless --publish gitlab; not with --repo, --publish none, --batch, --min-completed,
                      --max-shards or the Params the campaign DAG does not have (--include, --exclude,
                      --lint-command, --verify-command, --runner, --model, --isolation, --max-cost-usd).
                      --repos 1 is the one-repository run, as without --repos (--repo is refused with it too)
  --home DIR          AIRFLOW_HOME of the run (default: {PROJECT}/.smoke). Wiped at the start of the next
                      run (only if it is empty or was made by this script), kept afterwards for inspection
  --mode MODE         how the DAG runs:
                        scheduler  airflow scheduler + dag-processor + api-server (execution API) with the
                                   LocalExecutor; the DAG's limits (parallel_limit, pool) apply (default)
                        executor   airflow dags test --use-executor + api-server: LocalExecutor, the limit
                                   is the executor's parallelism (dags test ignores the DAG's limits)
                        sequential plain airflow dags test: one task at a time, shards do not overlap
  --sequential        same as --mode sequential
  --parallel N        parallel limit (default 10): the parallel_limit Param and the executor's slots
  --metadata-db KIND  Airflow metadata database: auto (default), sqlite, postgres. auto uses a fresh
                      PostgreSQL database on 127.0.0.1:5432 when the server and the drivers (psycopg2,
                      asyncpg) are there, else SQLite in the smoke home (Airflow 3 runs the LocalExecutor
                      on SQLite)
  --pg-dsn DSN        PostgreSQL server for --metadata-db (default postgresql://postgres@127.0.0.1:5432/postgres)
  --keep-metadata-db  do not drop the PostgreSQL metadata database on exit
  --deferrable        run deferrable operators deferred (default_deferrable=True; starts a triggerer)
  --batch             batch mode: every shard in one Message Batch (the mode Param), applied per shard; the
                      submit task defers while the batch runs (starts a triggerer)
  --batch-delay S     seconds the offline server takes to process a batch (default 5), so the submit task defers
  --real-api          use the real Anthropic API (needs ANTHROPIC_API_KEY; costs money) instead of the
                      offline test double
  --latency S         seconds the offline server waits before each reply (default 0.3), so shards overlap
  --max-shards N      at most N shards (default 20)
  --min-completed PCT the run passes when at least PCT% of its shards completed (default 100); failed
                      shards below that are warnings, not errors (the DAG run itself then fails, as it should)
  --timeout S         seconds the DAG run may take (default 900)
  --keep-going        run every phase and check even after a failure (default: stop at the first failed phase)
  --publish FORGE     github or gitlab: publish the run as a draft pull request on the offline forge (a test
                      double on loopback, git over HTTP), check it (one per repository, the report in its body,
                      no secret), then run again and check the same pull request was updated. Without the
                      flag the run publishes a draft to the offline GitHub once; none publishes nothing.
                      With --repos N: the forge of the campaign (it always runs twice)
                      The forge's requests: HOME/forge-requests.jsonl

The run's Params (see the DAG's doc; each one is passed in the run's conf):
  --task NAME         todo (default), docstrings, lint, tests, custom
  --lint-command CMD  the lint task's linter, e.g. 'ruff check --output-format=concise'
  --verify-command C  run in each worktree after the edits, e.g. 'python -m pytest -q'
  --prompt TEXT       the custom task's instructions (extra instructions for the others)
  --include GLOB      only files matching GLOB (repeatable)
  --exclude GLOB      leave out files matching GLOB (repeatable)
  --max-files N       files per shard (default 2)
  --runner NAME       api (default) or claude_code (the Claude Code CLI: `claude` on PATH, e.g. after
                      `npm install -g @anthropic-ai/claude-code`; it talks to the offline server too)
  --model ID          Claude model id (default: the connection's)
  --isolation MODE    auto (default), bwrap or none: how code from the model or the repository runs
  --max-cost-usd X    per-shard dollar cap
  --conf JSON         more DAG params merged into the run's conf, e.g. '{{"max_turns": 10}}'

  --python PY         Python with Airflow and this package (default: python3 if it has them, else the venv)
  --venv DIR          venv to create or reuse when Python lacks Airflow (default: {PROJECT}/.venv, like
                      scripts/test.sh)
  -h, --help          this help

Environment: NO_COLOR disables colour (so does output that is not a terminal); WORKTREE_MODEL_POOL names
a pool for the model calls (created with the parallel limit as its size).
"""



class UsageError(Exception):
    """A bad command-line option (exit 2)."""


class Fatal(Exception):
    """A failed check after which nothing else can run (exit 1, even with --keep-going)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: stop everything, exit 130 or 143."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name)
        self.name, self.code = name, code
