#!/usr/bin/env python3
"""smoke_run.py: the runbook's smoke test, made real (run it as ``./scripts/smoke_run.sh``).

Runs the example DAG parallel_maintenance_poc end to end on a throwaway clone of a repository (a generated
demo repository by default), with a parallel limit of 10, in an isolated AIRFLOW_HOME, against the
package's offline Messages API server (a test double; --real-api uses the real API), then verifies the
shard database, the branches and commits, the worktrees, the overlap of the shards in time and that the
repository you pointed at is untouched. Exit 0 only when every check passed; 2 for a bad option; 130/143
when interrupted (everything the run started is stopped first). See docs/runbook.md.

This file needs only the standard library: it runs Airflow as processes (``airflow db migrate``, ``api-server``,
``scheduler``, ``dag-processor``, ``dags trigger``...) with the interpreter that has Airflow (``--python``,
else this one, else the project's venv, created on first use), and reads the metadata database through small
scripts run by that interpreter. It lives in scripts/ because it needs a checkout: the demo repository
generator (scripts/demo_repo.py), the venv bootstrap (``pip install -e '.[test]'``) and the process helpers it
shares with scripts/distributed_run.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distributed_run import _alive, _signal_tree, descendants, free_port  # noqa: E402  (shared process helpers)

PROJECT = Path(__file__).resolve().parents[1]
DAG_ID = "parallel_maintenance_poc"
DAG_FILE = PROJECT / "airflow_provider_worktree" / "example_dags" / f"{DAG_ID}.py"
PROG = "smoke_run.sh"
TASKS = ("todo", "docstrings", "lint", "tests", "custom")
MODES = ("scheduler", "executor", "sequential")
METADATA_DBS = ("auto", "sqlite", "postgres")

USAGE = f"""Usage: ./scripts/smoke_run.sh [options]

Runs the example DAG {DAG_ID} on a clone of a repository and verifies the result.

Options:
  --repo PATH         repository to maintain (cloned with --no-local into the smoke home; your checkout,
                      its branches and status are verified unchanged). Default: a generated demo repository
  --modules N         modules in the generated demo repository (default 30, i.e. 15 shards of 2 files)
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

The run's Params (see the DAG's doc; each one is passed in the run's conf):
  --task NAME         todo (default), docstrings, lint, tests, custom
  --lint-command CMD  the lint task's linter, e.g. 'ruff check --output-format=concise'
  --verify-command C  run in each worktree after the edits, e.g. 'python -m pytest -q'
  --prompt TEXT       the custom task's instructions (extra instructions for the others)
  --include GLOB      only files matching GLOB (repeatable)
  --exclude GLOB      leave out files matching GLOB (repeatable)
  --max-files N       files per shard (default 2)
  --runner NAME       api (default) or claude_code
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


# ------------------------------------------------------------------------------------------------ options
def _positive_int(flag: str, value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", value or ""):
        raise UsageError(f"{flag} must be a positive integer, got '{value}'")
    return int(value)


def _seconds(flag: str, value: str) -> float:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value or ""):
        raise UsageError(f"{flag} must be a number of seconds, got '{value}'")
    return float(value)


@dataclass
class Options:
    repo: str = ""
    modules: int = 30
    home: Path = PROJECT / ".smoke"
    mode: str = "scheduler"
    parallel: int = 10
    metadata_db: str = "auto"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    keep_metadata_db: bool = False
    deferrable: bool = False
    batch: bool = False
    batch_delay: float = 5.0
    real_api: bool = False
    latency: float = 0.3
    max_shards: int = 20
    min_completed: float = 100.0
    timeout: int = 900
    keep_going: bool = False
    python: str = ""
    venv: str = ""
    conf_json: str = ""
    params: dict = field(default_factory=dict)  # Params given by their own flags

    def conf(self, repo: str) -> dict:
        """The run's conf: the smoke run's defaults, the Param flags, then --conf on top."""
        conf = {"repo": repo, "task": "todo", "max_files_per_shard": 2, "max_shards": self.max_shards,
                "parallel_limit": self.parallel, **self.params}
        if self.batch:
            conf.update(mode="batch", batch_poll_seconds=1)
        if self.conf_json:
            try:
                more = json.loads(self.conf_json)
            except ValueError as exc:
                raise UsageError(f"--conf is not valid JSON: {exc}") from None
            if not isinstance(more, dict):
                raise UsageError("--conf must be a JSON object, e.g. '{\"max_turns\": 10}'")
            conf.update(more)
        return conf


_PARAM_FLAGS = {"--task": "task", "--lint-command": "lint_command", "--verify-command": "verify_command",
                "--prompt": "prompt", "--runner": "runner", "--model": "model", "--isolation": "isolation"}


def parse_args(argv: list[str]) -> Options | None:
    """The options, or None for --help. Raises UsageError naming the bad option."""
    o = Options()
    args = list(argv)
    i = 0

    def value() -> str:
        nonlocal i
        if i + 1 >= len(args) or args[i + 1] == "":
            raise UsageError(f"{args[i]} needs a value (see --help)")
        i += 1
        return args[i]

    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            return None
        elif a == "--repo":
            o.repo = value()
        elif a == "--modules":
            o.modules = _positive_int(a, value())
        elif a == "--home":
            o.home = Path(value())
        elif a == "--mode":
            o.mode = value()
            if o.mode not in MODES:
                raise UsageError(f"--mode must be scheduler, executor or sequential, got '{o.mode}'")
        elif a == "--sequential":
            o.mode = "sequential"
        elif a == "--parallel":
            o.parallel = _positive_int(a, value())
        elif a == "--metadata-db":
            o.metadata_db = value()
            if o.metadata_db not in METADATA_DBS:
                raise UsageError(f"--metadata-db must be auto, sqlite or postgres, got '{o.metadata_db}'")
        elif a == "--pg-dsn":
            o.pg_dsn = value()
        elif a == "--keep-metadata-db":
            o.keep_metadata_db = True
        elif a == "--deferrable":
            o.deferrable = True
        elif a == "--batch":
            o.batch = True
        elif a == "--batch-delay":
            o.batch_delay = _seconds(a, value())
        elif a == "--real-api":
            o.real_api = True
        elif a == "--latency":
            o.latency = _seconds(a, value())
        elif a == "--max-shards":
            o.max_shards = _positive_int(a, value())
        elif a == "--min-completed":
            o.min_completed = _seconds(a, value())
            if o.min_completed > 100:
                raise UsageError(f"--min-completed is a percentage (0-100), got '{args[i]}'")
        elif a == "--timeout":
            o.timeout = _positive_int(a, value())
        elif a == "--keep-going":
            o.keep_going = True
        elif a == "--python":
            o.python = value()
        elif a == "--venv":
            o.venv = value()
        elif a == "--conf":
            o.conf_json = value()
        elif a in _PARAM_FLAGS:
            o.params[_PARAM_FLAGS[a]] = value()
        elif a in ("--include", "--exclude"):
            o.params.setdefault(a[2:], []).append(value())
        elif a == "--max-files":
            o.params["max_files_per_shard"] = _positive_int(a, value())
        elif a == "--max-cost-usd":
            o.params["max_cost_usd"] = _seconds(a, value())
        else:
            raise UsageError(f"unknown option {a} (see --help)")
        i += 1
    if o.params.get("task", "todo") not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got '{o.params['task']}'")
    if o.params.get("isolation", "auto") not in ("auto", "bwrap", "none"):
        raise UsageError(f"--isolation must be auto, bwrap or none, got '{o.params['isolation']}'")
    if o.params.get("runner", "api") not in ("api", "claude_code"):
        raise UsageError(f"--runner must be api or claude_code, got '{o.params['runner']}'")
    if o.params.get("task") == "lint" and "lint_command" not in o.params and "lint_command" not in o.conf_json:
        raise UsageError("--task lint needs --lint-command, e.g. --lint-command 'ruff check --output-format=concise'")
    if o.params.get("task") == "custom" and "prompt" not in o.params and "prompt" not in o.conf_json:
        raise UsageError("--task custom needs --prompt, e.g. --prompt 'Replace print calls with logging'")
    o.conf("")  # a bad --conf is a usage error before anything starts
    return o


# ------------------------------------------------------------------------------------------------ output
class Out:
    """Coloured [SUCCESS]/[INFO]/[WARNING]/[ERROR] lines, phases with their timings, the summary."""

    def __init__(self, color: bool) -> None:
        c = (lambda code: code) if color else (lambda code: "")
        self.green, self.blue, self.yellow = c("\033[0;32m"), c("\033[0;34m"), c("\033[1;33m")
        self.red, self.bold, self.off = c("\033[0;31m"), c("\033[1m"), c("\033[0m")
        self.failures = self.warnings = 0
        self.t_start = time.monotonic()
        self.phases: list[tuple[str, float, str]] = []
        self.phase_name = ""
        self.phase_start = 0.0
        self.phase_failures = 0

    def _line(self, color: str, tag: str, msg: str) -> None:
        print(f"{color}[{tag}]{self.off} {msg}", flush=True)

    def success(self, msg: str) -> None:
        self._line(self.green, "SUCCESS", msg)

    def info(self, msg: str) -> None:
        self._line(self.blue, "INFO", msg)

    def warning(self, msg: str) -> None:
        self.warnings += 1
        self._line(self.yellow, "WARNING", msg)

    def error(self, msg: str) -> None:
        self.failures += 1
        self._line(self.red, "ERROR", msg)

    def indent(self, text: str, limit: int | None = None) -> None:
        lines = text.rstrip("\n").splitlines()
        for line in lines[:limit] if limit else lines:
            print(f"    {line}", flush=True)

    def tail(self, path: Path, n: int = 25) -> None:
        if path.is_file():
            self.indent("\n".join(path.read_text(errors="replace").splitlines()[-n:]))

    def heading(self, title: str) -> None:
        print(f"\n{self.bold}==> {title}{self.off}", flush=True)

    def phase(self, name: str) -> None:
        self.phase_end()
        self.phase_name, self.phase_start, self.phase_failures = name, time.monotonic(), self.failures
        self.heading(name)

    def phase_failed(self) -> bool:
        return self.failures > self.phase_failures

    def phase_end(self) -> None:
        if not self.phase_name:
            return
        secs = time.monotonic() - self.phase_start
        self.phases.append((self.phase_name, secs, "FAILED" if self.phase_failed() else "ok"))
        self.info(f"{self.phase_name} took {secs:.1f}s")
        self.phase_name = ""

    def summary(self, rc: int, home: Path | None) -> int:
        total = time.monotonic() - self.t_start
        self.heading("Summary")
        for name, secs, state in self.phases:
            print(f"    {name:<42} {secs:7.1f}s  {state}")
        print(f"    {'total':<42} {total:7.1f}s")
        if home is not None and home.is_dir():
            self.info(f"smoke home kept for inspection: {home} (wiped by the next run)")
        if rc == 0 and self.failures == 0:
            print(f"{self.green}[SUCCESS]{self.off} smoke run passed in {total:.1f}s ({self.warnings} warning(s))")
            return 0
        print(f"{self.red}[ERROR]{self.off} smoke run FAILED ({self.failures} failed check(s), "
              f"{self.warnings} warning(s)) after {total:.1f}s")
        return rc or 1


# ------------------------------------------------------------------------------------------------ processes
class Background:
    """Long-lived processes, each in its own session: it and everything it forks share a process group that
    stop_all signals as a whole; descendants that made groups of their own are found by parentage."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, log: Path, argv: list[str], env: dict) -> subprocess.Popen:
        with open(log, "wb") as fh:
            popen = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.procs.append((name, popen))
        return popen

    def stop_all(self) -> list[str]:
        """TERM every started process group and its stray descendants at once, wait up to 20 s for them
        all (3 s once every started process has exited, for orphans such as LocalExecutor workers waiting
        on a queue), then KILL what is left and reap. Returns the names of the processes stopped."""
        leaders = [p for _, p in self.procs if p.poll() is None]
        pids = [pid for p in leaders for pid in (p.pid, *descendants(p.pid))]
        _signal_tree(pids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        leaders_gone = False
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            if not leaders_gone and all(p.poll() is not None for p in leaders):
                leaders_gone = True
                deadline = min(deadline, time.monotonic() + 3)
            time.sleep(0.3)
        left = [p for p in pids if _alive(p)]
        if left:
            _signal_tree(left, signal.SIGKILL)
        for _, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        names = [n for n, _ in self.procs]
        self.procs = []
        return names


# ------------------------------------------------------------------------------------------------ helpers
def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def git(*args: str, cwd: Path | str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})


def fingerprint(repo: str) -> str:
    """HEAD, status, every ref, worktrees and stashes of a local repository (read-only git calls)."""
    if not Path(repo).is_dir():
        return "remote\n"
    calls = (["rev-parse", "HEAD"], ["symbolic-ref", "-q", "HEAD"],
             ["status", "--porcelain=v1", "--untracked-files=all"],
             ["for-each-ref", "--format=%(refname) %(objectname)"], ["worktree", "list", "--porcelain"],
             ["stash", "list"])
    return "".join(git("-C", repo, *c).stdout for c in calls)


def shard_rows(db: Path, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of the shard database, opened read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def shard_counts(db: Path, run_id: str | None = None) -> str:
    if not db.is_file():
        return "no shards registered yet"
    try:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        rows = shard_rows(db, f"SELECT status, COUNT(*) FROM shard_status {where} GROUP BY status "
                              "ORDER BY status", args)
    except sqlite3.Error:
        return "shard database not readable yet"
    return " ".join(f"{s}={n}" for s, n in rows) or "no shards registered yet"


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals (start, end) open at one instant."""
    best = 0
    for start, _ in intervals:
        best = max(best, sum(1 for s, e in intervals if s <= start < e))
    return best


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime, timezone
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def last_error_of(log_dir: Path) -> tuple[str, Path | None]:
    """(the exception of a task's last attempt, that attempt's log) from Airflow's JSON task logs."""
    logs = sorted(log_dir.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
    if not logs:
        return "no log", None
    what = "no error in the log"
    for raw in logs[-1].read_text(errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        for d in (rec.get("error_detail") or []) if isinstance(rec, dict) else []:
            what = f"{d.get('exc_type')}: {d.get('exc_value')}"
    return what, logs[-1]


PROBE = """
import json, sys
found = {"python": "%d.%d.%d" % sys.version_info[:3], "airflow": None, "package": None}
try:
    import airflow, airflow_provider_worktree, anthropic
    found.update(airflow=airflow.__version__, package=airflow_provider_worktree.__version__)
except Exception:
    pass
print(json.dumps(found))
"""
# Scripts run by the interpreter that has Airflow (the metadata database through Airflow's own models).
RUN_WATCHER = """
import sys, time
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
while True:
    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        state = str(dr.state) if dr is not None else "missing"
    if state in ("success", "DagRunState.SUCCESS"):
        print("run state: success", flush=True); sys.exit(0)
    if state in ("failed", "DagRunState.FAILED"):
        print("run state: failed", flush=True); sys.exit(1)
    time.sleep(1)
"""
RUN_FACTS = """
import json, sys
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
with create_session() as session:
    if not run_id:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        run_id = dr.run_id if dr else ""
    tis = [[ti.task_id, ti.map_index, str(ti.state).split(".")[-1].lower(), ti.try_number]
           for ti in session.query(TI).filter(TI.dag_id == dag_id, TI.run_id == run_id)
           .order_by(TI.task_id, TI.map_index)]
print(json.dumps({"run_id": run_id, "tis": tis}))
"""
PG_ADMIN = """
import sys
import psycopg2
dsn, action, name = sys.argv[1:4]
con = psycopg2.connect(dsn, connect_timeout=3)
con.autocommit = True
with con.cursor() as cur:
    if action == "create":
        cur.execute(f'CREATE DATABASE "{name}"')
    elif action == "drop":
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
con.close()
"""


# ------------------------------------------------------------------------------------------------ the run
class SmokeRun:
    def __init__(self, opts: Options, out: Out) -> None:
        self.o, self.out = opts, out
        self.bg = Background()
        self.env = dict(os.environ)
        self.py = ""
        self.airflow: list[str] = []
        self.awt: list[str] = []
        self.home: Path | None = None
        self.slog = Path()
        self.shard_db = Path()
        self.pg_db_created = ""
        self.source = ""
        self.clone = Path()
        self.base_head = ""
        self.run_id = ""
        self.conf: dict = {}
        self.run_ok = False
        self.tis: list[list] = []

    # -- small tools ------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, **kw)

    def af(self, *args: str, log: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = self.run([*self.airflow, *args], timeout=timeout)
        if log is not None:
            log.write_text(proc.stdout + proc.stderr)
        return proc

    def pyrun(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([self.py, "-c", code, *args], timeout=timeout)

    def pg_admin(self, action: str, name: str = "") -> bool:
        return self.pyrun(PG_ADMIN, self.o.pg_dsn, action, name, timeout=30).returncode == 0

    def wait_http(self, url: str, secs: float, popen: subprocess.Popen) -> str:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                return "exited"
            try:
                urllib.request.urlopen(url, timeout=2)
                return "ok"
            except OSError:
                time.sleep(0.5)
        return "timeout"

    def wait_run(self, popen: subprocess.Popen, label: str) -> bool:
        """Wait for a background DAG run process, printing the shard counts every 10 s."""
        deadline = time.monotonic() + self.o.timeout
        last = 0.0
        while popen.poll() is None:
            if time.monotonic() >= deadline:
                self.out.error(f"{label} did not finish within {self.o.timeout}s (--timeout); shards: "
                               f"{shard_counts(self.shard_db)}")
                return False
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                self.out.info(f"{label}: {shard_counts(self.shard_db)}")
            time.sleep(1)
        return popen.returncode == 0

    # -- phases -----------------------------------------------------------------------------------------
    def preflight(self) -> None:
        out = self.out
        out.info(f"project: {PROJECT}")
        base = self.o.python or os.environ.get("PYTHON") or shutil.which("python3") or sys.executable
        probe = self._probe(base)
        if probe is None:
            raise Fatal(f"cannot run {base}: pass a working interpreter with --python")
        if version_tuple(probe["python"]) < (3, 11):
            raise Fatal(f"Python {probe['python']} at {base} is too old: this package needs Python >= 3.11")
        if probe["airflow"]:
            self.py = base
            out.info(f"using {base}: Airflow and airflow-provider-worktree are importable there")
        else:
            self.py = self._bootstrap_venv(base)
            probe = self._probe(self.py) or probe
        out.success(f"Python {probe['python']} ({self.py})")

        if shutil.which("git") is None:
            raise Fatal("git is not installed: install git >= 2.20 (worktree support)")
        git_ver = git("--version").stdout.split()[2]
        if version_tuple(git_ver) < (2, 20):
            raise Fatal(f"git {git_ver} is too old: worktrees need git >= 2.20")
        out.success(f"git {git_ver}")

        bindir = Path(self.py).parent
        self.airflow = [str(bindir / "airflow")] if (bindir / "airflow").is_file() else [self.py, "-m", "airflow"]
        self.awt = ([str(bindir / "airflow-worktree")] if (bindir / "airflow-worktree").is_file()
                    else [self.py, "-m", "airflow_provider_worktree.cli"])
        self.env["PATH"] = f"{bindir}{os.pathsep}{self.env.get('PATH', '')}"
        af_ver, pkg_ver = probe["airflow"] or "0", probe["package"] or "?"
        if version_tuple(af_ver) < (3, 0):
            raise Fatal(f"Airflow {af_ver} is installed but this provider needs Airflow 3: pip install -e '.[test]'")
        out.success(f"Apache Airflow {af_ver}, airflow-provider-worktree {pkg_ver}")
        if not DAG_FILE.is_file():
            raise Fatal(f"DAG file not found: {DAG_FILE} (run from a checkout of the project)")
        if shutil.which("sqlite3"):
            out.success(f"sqlite3 {self.run(['sqlite3', '--version']).stdout.split()[0]} for the shard database queries")
        else:
            out.warning("the sqlite3 CLI is not installed: verification uses Python's sqlite3 (apt-get install "
                        "sqlite3 for the runbook's queries)")
        if self.o.real_api:
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise Fatal("--real-api needs ANTHROPIC_API_KEY in the environment")
            out.warning("--real-api: the run calls the real Anthropic API with your key and is billed")

    @staticmethod
    def _probe(py: str) -> dict | None:
        """One call: the interpreter's version, and Airflow's and this package's when all three of Airflow,
        this package and the anthropic SDK import there (else None)."""
        try:
            proc = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, timeout=180)
            return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def _bootstrap_venv(self, base: str) -> str:
        venv = Path(self.o.venv or os.environ.get("VENV") or PROJECT / ".venv")
        self.out.info(f"Airflow or this package is not importable in {base}: using the venv {venv}")
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_WARN_SCRIPT_LOCATION": "1"}
        py = venv / "bin" / "python"
        if not py.is_file():
            self.out.info(f"creating venv {venv} (as scripts/test.sh does)")
            if subprocess.run([base, "-m", "venv", str(venv)], env=env).returncode != 0:
                raise Fatal(f"could not create the venv {venv} with {base} (on Debian/Ubuntu: apt-get install "
                            "python3-venv)")
            subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], env=env)
        if not (self._probe(str(py)) or {}).get("airflow"):
            self.out.info(f"installing airflow-provider-worktree[test] into {venv} (pip install -e '.[test]', "
                          "a few minutes the first time)")
            proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", ".[test]"], cwd=PROJECT, env=env,
                                  capture_output=True, text=True)
            self.out.indent(proc.stdout + proc.stderr, limit=40)
        if not (self._probe(str(py)) or {}).get("airflow"):
            raise Fatal(f"Airflow is not installed: pip install -e '.[test]' into {venv} failed (see the pip "
                        "output above)")
        return str(py)

    def isolated_home(self) -> None:
        out, o = self.out, self.o
        home = o.home.expanduser().absolute()
        marker = home / ".smoke-home"
        if home.exists():
            if marker.is_file():
                old_pg = home / ".smoke-pg-db"
                if old_pg.is_file() and old_pg.read_text().strip():  # kept by --keep-metadata-db
                    if self.pg_admin("drop", old_pg.read_text().strip()):
                        out.info(f"dropped the previous run's PostgreSQL database {old_pg.read_text().strip()}")
                try:
                    shutil.rmtree(home)
                except OSError as exc:
                    raise Fatal(f"cannot wipe the previous smoke home {home}: {exc}") from None
                out.info(f"wiped the previous smoke home {home}")
            elif not (home.is_dir() and not any(home.iterdir())):
                raise Fatal(f"{home} exists and was not made by smoke_run.sh: choose another --home (it is wiped "
                            "at the next run)")
        self.home = home
        self.slog = home / "logs" / "smoke"
        self.slog.mkdir(parents=True, exist_ok=True)
        (home / "dags").mkdir(exist_ok=True)
        marker.write_text(f"made by scripts/smoke_run.sh on {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
                          "wiped by the next run\n")

        # Nothing from the caller's Airflow environment may leak in (a production database, connections...).
        for var in list(self.env):
            if var.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) or var in (
                    "WORKTREE_REPO", "AIRFLOW_CONFIG", "WORKTREE_PARALLEL_LIMIT", "WORKTREE_MAX_PARALLEL"):
                del self.env[var]
        parallelism = o.parallel if o.mode == "executor" else o.parallel + 4
        self.env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("SMOKE_LOG_LEVEL", "INFO"),
            # executor mode: dags test --use-executor ignores the DAG's limits, parallelism is the only one
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            # The parallel_limit Param sets the limit at run time; the ceiling equals it here so the
            # guarantee also holds through max_active_tis_per_dagrun alone.
            "WORKTREE_MAX_PARALLEL": str(o.parallel),
            "WORKTREE_PARALLEL_LIMIT": str(o.parallel),
            "GIT_TERMINAL_PROMPT": "0",
        })
        if o.deferrable:
            self.env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = "True"
        self.shard_db = home / "shard_status.db"
        out.success(f"AIRFLOW_HOME={home}, DAGs from {DAG_FILE.parent}, LocalExecutor, parallelism {parallelism}")

        kind = "sqlite"
        if o.metadata_db == "postgres":
            why = self._pg_unusable()
            if why:
                raise Fatal(f"--metadata-db postgres: {why}")
            kind = "postgres"
        elif o.metadata_db == "auto" and o.mode != "sequential":
            why = self._pg_unusable()
            if why:
                out.info(f"metadata database: SQLite, because {why}")
            else:
                kind = "postgres"
        if kind == "postgres":
            name = f"wt_smoke_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
            if not self.pg_admin("create", name):
                raise Fatal(f"could not create the PostgreSQL database {name} at {o.pg_dsn}")
            self.pg_db_created = name
            if o.keep_metadata_db:
                (home / ".smoke-pg-db").write_text(name + "\n")
            base = o.pg_dsn.split("?")[0].rsplit("/", 1)[0]
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"{base.replace('postgresql:', 'postgresql+psycopg2:', 1)}/{name}"
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = f"{base.replace('postgresql:', 'postgresql+asyncpg:', 1)}/{name}"
            out.success(f"metadata database: PostgreSQL database {name} (fresh for this run)")
        else:
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
            out.success(f"metadata database: SQLite {home / 'airflow.db'}")

        lines = [f"# Source this file to inspect the smoke run: . {home}/env.sh"]
        for var in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER"):
            lines.append(f"export {var}={shlex.quote(self.env[var])}")
        lines.append("export AIRFLOW__CORE__LOAD_EXAMPLES=False")
        if kind == "sqlite" or o.keep_metadata_db:
            lines.append(f"export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={shlex.quote(self.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}")
        else:
            lines.append("# the PostgreSQL metadata database was dropped at exit (--keep-metadata-db keeps it)")
        lines.append(f'export PATH={shlex.quote(str(Path(self.py).parent))}:"$PATH"')
        (home / "env.sh").write_text("\n".join(lines) + "\n")

        t0 = time.monotonic()
        if self.af("db", "migrate", log=self.slog / "db_migrate.log").returncode == 0:
            out.success(f"airflow db migrate ({time.monotonic() - t0:.1f}s)")
        else:
            out.error(f"airflow db migrate failed: see {self.slog / 'db_migrate.log'}")
            out.tail(self.slog / "db_migrate.log")

    def _pg_unusable(self) -> str:
        if self.pyrun("import psycopg2, asyncpg").returncode != 0:
            return ("the drivers psycopg2 and asyncpg are not both installed (pip install "
                    "'apache-airflow[postgres]')")
        if not self.pg_admin("check"):
            return f"no PostgreSQL server answers at {self.o.pg_dsn.split('?')[0]}"
        return ""

    def registration(self) -> None:
        out = self.out
        if self.af("dags", "reserialize", log=self.slog / "dags_reserialize.log").returncode == 0:
            out.success("DAG files parsed into the metadata database (airflow dags reserialize)")
        else:
            out.error(f"airflow dags reserialize failed: see {self.slog / 'dags_reserialize.log'}")
            out.tail(self.slog / "dags_reserialize.log")
        proc = self.af("dags", "list-import-errors", "-o", "json")
        (self.slog / "import_errors.err").write_text(proc.stderr)
        # (the CLI prints log lines on stdout too: the JSON document is the last line that starts with '[')
        docs = [line for line in proc.stdout.splitlines() if line.startswith("[")]
        try:
            errors = json.loads(docs[-1]) if docs else []
        except ValueError:
            errors = [{"filepath": "?", "error": proc.stdout[-2000:]}]
        if not errors:
            out.success("no DAG import errors (airflow dags list-import-errors)")
        else:
            out.error("DAG import errors (airflow dags list-import-errors):")
            out.indent("\n".join(f"{e.get('filepath', '?')}\n{e.get('error', '')}" if isinstance(e, dict) else str(e)
                                 for e in errors), limit=40)
        listed = self.af("dags", "list", "-o", "plain").stdout
        if re.search(rf"^{DAG_ID}\s", listed, re.M):
            out.success(f"DAG {DAG_ID} is registered (airflow dags list)")
        else:
            out.error(f"DAG {DAG_ID} is not registered: check 'python {DAG_FILE.relative_to(PROJECT)}' for errors")
        pool = os.environ.get("WORKTREE_MODEL_POOL", "")
        if pool and pool != "default_pool":
            if self.af("pools", "set", pool, str(self.o.parallel), "Claude model calls (smoke run)",
                       log=self.slog / "pool.log").returncode == 0:
                out.success(f"pool {pool} with {self.o.parallel} slots")
            else:
                out.error(f"could not create pool {pool}: see {self.slog / 'pool.log'}")
            self.env["WORKTREE_MODEL_POOL"] = pool

    def repository(self) -> None:
        out, o = self.out, self.o
        assert self.home is not None
        if o.repo:
            if Path(o.repo).is_dir():
                top = git("-C", o.repo, "rev-parse", "--show-toplevel")
                if top.returncode != 0:
                    raise Fatal(f"--repo {o.repo} is not inside a git repository")
                self.source = top.stdout.strip()
                out.info(f"source repository: {self.source} (yours; it is cloned, not changed)")
                if git("-C", self.source, "status", "--porcelain").stdout.strip():
                    out.warning(f"{self.source} has uncommitted changes: the run works on its committed HEAD only")
            else:
                self.source = o.repo
                out.info(f"source repository: {self.source} (a URL; cloned)")
        else:
            t0 = time.monotonic()
            proc = self.run([self.py, str(PROJECT / "scripts" / "demo_repo.py"), "--dest",
                             str(self.home / "demo-source"), "--modules", str(o.modules)])
            if proc.returncode != 0:
                raise Fatal(f"scripts/demo_repo.py failed to generate the demo repository: {proc.stderr.strip()[-300:]}")
            self.source = proc.stdout.strip().splitlines()[-1]
            out.success(f"demo repository with {o.modules} modules generated at {self.source} "
                        f"({time.monotonic() - t0:.1f}s)")
        (self.slog / "source_before.txt").write_text(fingerprint(self.source))
        self.clone = self.home / "repo"
        proc = git("clone", "--no-local", "-q", "--", self.source, str(self.clone))
        (self.slog / "clone.log").write_text(proc.stderr)
        if proc.returncode == 0:
            out.success(f"cloned into {self.clone} (git clone --no-local: the run never touches the source)")
        else:
            out.error(f"git clone of {self.source} failed:")
            out.tail(self.slog / "clone.log")
        self.base_head = git("-C", str(self.clone), "rev-parse", "HEAD").stdout.strip()

    def model_api(self) -> None:
        out = self.out
        if self.o.real_api:
            self.env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"] = json.dumps(
                {"conn_type": "anthropic", "password": os.environ["ANTHROPIC_API_KEY"]})
            out.success("connection anthropic_default: the real Anthropic API (key from ANTHROPIC_API_KEY)")
            return
        port_file = self.slog / "offline_api.port"
        popen = self.bg.start("offline-api", self.slog / "offline_api.log",
                              [self.py, "-m", "airflow_provider_worktree.testing", "--port", "0", "--port-file",
                               str(port_file), "--latency", str(self.o.latency), "--batch-delay",
                               str(self.o.batch_delay)], self.env)
        for _ in range(100):
            if (port_file.is_file() and port_file.read_text().strip()) or popen.poll() is not None:
                break
            time.sleep(0.1)
        if port_file.is_file() and port_file.read_text().strip():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            self.env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"] = json.dumps(
                {"conn_type": "anthropic", "host": url, "password": "sk-offline-test-double-not-a-key"})
            out.success(f"offline Messages API test double at {url} (latency {self.o.latency:g}s, batches take "
                        f"{self.o.batch_delay:g}s; NOT Claude), connection anthropic_default points at it")
        else:
            out.error("the offline Messages API server did not start:")
            out.tail(self.slog / "offline_api.log")

    def _start_api_server(self) -> bool:
        port = free_port()
        self.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
        popen = self.bg.start("api-server", self.slog / "api_server.log",
                              [*self.airflow, "api-server", "--apps", "execution", "-H", "127.0.0.1", "-p",
                               str(port), "-w", "1"], self.env)
        state = self.wait_http(f"http://127.0.0.1:{port}/execution/health", 120, popen)
        if state == "ok":
            self.out.success(f"airflow api-server (execution API for the task SDK) on 127.0.0.1:{port}")
            return True
        self.out.error(f"airflow api-server did not become healthy ({state}): see {self.slog / 'api_server.log'}")
        self.out.tail(self.slog / "api_server.log")
        return False

    def dag_run(self) -> None:
        out, o = self.out, self.o
        self.conf = o.conf(str(self.clone))
        conf = json.dumps(self.conf)
        out.info(f"conf: {conf}")
        isolation = self.conf.get("isolation", "auto")
        out.info(f"isolation configured: {isolation} (the run's records say which one was in force; see below)")
        ok = False
        t0 = time.monotonic()
        run_log = self.slog / "dag_run.log"
        if o.mode == "sequential":
            out.warning("sequential mode: airflow dags test runs the mapped shards one at a time, so they will not "
                        "overlap")
            popen = self.bg.start("dags-test", run_log, [*self.airflow, "dags", "test", DAG_ID, "-c", conf], self.env)
            ok = self.wait_run(popen, "airflow dags test")
        elif o.mode == "executor":
            if self._start_api_server():
                if o.deferrable or o.batch:
                    self.bg.start("triggerer", self.slog / "triggerer.log", [*self.airflow, "triggerer"], self.env)
                    out.success("airflow triggerer started (deferred tasks)")
                out.info(f"airflow dags test --use-executor: LocalExecutor with {o.parallel} slots (dags test "
                         "ignores the DAG's own limits)")
                popen = self.bg.start("dags-test", run_log,
                                      [*self.airflow, "dags", "test", DAG_ID, "-c", conf, "--use-executor"], self.env)
                ok = self.wait_run(popen, "airflow dags test --use-executor")
        elif self._start_api_server():
            self.bg.start("scheduler", self.slog / "scheduler.log", [*self.airflow, "scheduler"], self.env)
            self.bg.start("dag-processor", self.slog / "dag_processor.log", [*self.airflow, "dag-processor"], self.env)
            triggerer = o.deferrable or o.batch
            if triggerer:
                self.bg.start("triggerer", self.slog / "triggerer.log", [*self.airflow, "triggerer"], self.env)
            out.success(f"airflow scheduler{', triggerer' if triggerer else ''} and dag-processor started")
            if self.af("dags", "unpause", DAG_ID, log=self.slog / "unpause.log").returncode != 0:
                out.error(f"airflow dags unpause {DAG_ID} failed: see {self.slog / 'unpause.log'}")
            trig = self.af("dags", "trigger", DAG_ID, "-c", conf, "-o", "json")
            (self.slog / "trigger.err").write_text(trig.stderr)
            try:
                self.run_id = json.loads(trig.stdout.strip().splitlines()[-1])[0]["dag_run_id"]
            except (ValueError, IndexError, KeyError, TypeError):
                self.run_id = ""
            if not self.run_id:
                out.error(f"airflow dags trigger {DAG_ID} failed:")
                out.indent((trig.stderr or trig.stdout)[-3000:], limit=25)
            else:
                out.success(f"triggered run {self.run_id}")
                # Poll the metadata database with one long-lived Python (an airflow CLI call costs seconds).
                watcher = self.slog / "run_watcher.py"
                watcher.write_text(RUN_WATCHER)
                popen = self.bg.start("run-watcher", self.slog / "run_watcher.log",
                                      [self.py, str(watcher), DAG_ID, self.run_id], self.env)
                ok = self.wait_run(popen, "scheduler run")
        secs = time.monotonic() - t0
        facts = self.pyrun(RUN_FACTS, DAG_ID, self.run_id)
        try:
            data = json.loads(facts.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            data = {"run_id": self.run_id, "tis": []}
        self.run_id = self.run_id or data["run_id"]
        tis = data["tis"]
        (self.slog / "task_instances.txt").write_text("".join(f"{t}|{m}|{s}|{n}\n" for t, m, s, n in tis))
        self.run_ok = ok
        self.tis = tis
        if ok:
            out.success(f"DAG run {self.run_id} succeeded in {secs:.1f}s")
        elif self._tolerated_failure():
            done, total = self._completion()
            out.warning(f"DAG run {self.run_id} failed ({secs:.1f}s) because {total - done} of {total} shard(s) "
                        f"failed; {done} completed, within --min-completed {o.min_completed:g}%")
        else:
            out.error(f"DAG run {self.run_id or '?'} did not succeed ({secs:.1f}s); the run's log: {run_log}")
            if run_log.is_file():
                hits = [line for line in run_log.read_text(errors="replace").splitlines()
                        if re.search(r"Traceback|Error|error", line)]
                out.indent("\n".join(h[:300] for h in hits[-3:]))
        if tis:
            counts: dict[str, int] = {}
            for _, _, state, _ in tis:
                counts[state] = counts.get(state, 0) + 1
            out.info("task instances: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            bad = [t for t in tis if t[2] not in ("success", "skipped")]
            if bad:
                report = self._report_failed_tasks if self._tolerated_failure() else out.error
                report("task instances not successful; the error of each one's last attempt:")
                root = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={self.run_id}"
                for task, idx, state, tries in bad:
                    sub = root / f"task_id={task}" / (f"map_index={idx}" if idx != -1 else "")
                    what, log = last_error_of(sub)
                    label = task if idx == -1 else f"{task}[{idx}]"
                    out.indent(f"{label} {state} after {tries} tr{'y' if tries == 1 else 'ies'}: {what[:300]}")
                    if log:
                        out.indent(f"    {log}")
            retried = [f"{t}[{m}] try {n}" for t, m, s, n in tis if n > 1]
            if retried:
                out.warning("task instances that needed a retry: " + " ".join(retried))

    def _report_failed_tasks(self, msg: str) -> None:
        self.out.warning(msg.replace("not successful", "failed (tolerated by --min-completed)"))

    def _completion(self) -> tuple[int, int]:
        if not self.shard_db.is_file():
            return 0, 0
        rows = shard_rows(self.shard_db, "SELECT status FROM shard_status WHERE run_id = ?", (self.run_id,))
        return sum(1 for (s,) in rows if s == "completed"), len(rows)

    def _tolerated_failure(self) -> bool:
        """The run failed only because some shards failed, and enough completed for --min-completed."""
        if self.run_ok or self.o.min_completed >= 100:
            return False
        done, total = self._completion()
        if total == 0 or 100.0 * done / total < self.o.min_completed:
            return False
        bad = {t for t, _, s, _ in self.tis if s not in ("success", "skipped")}
        return bad <= {"maintain", "watch_shards", "report"} and "plan" not in bad

    def verification(self) -> None:
        out = self.out
        assert self.home is not None
        nothing_to_do = None
        report = self._dag_report()
        if report is not None:
            nothing_to_do = report.get("nothing_to_do")
        if not self.shard_db.is_file() and not nothing_to_do:
            out.error(f"no shard database at {self.shard_db}: the plan task never registered shards")
        elif nothing_to_do is not None or self._completion()[1] == 0:
            if nothing_to_do and self.run_ok:
                out.success(f"nothing to do: {nothing_to_do}")
            else:
                out.error("the run registered no shard and its report does not say why")
        else:
            self._check_shards()
        after = fingerprint(self.source)
        (self.slog / "source_after.txt").write_text(after)
        before = (self.slog / "source_before.txt").read_text()
        if after == before:
            out.success(f"the source repository is untouched (HEAD, status, branches, worktrees, stashes): {self.source}")
        else:
            out.error("the source repository changed during the run:")
            import difflib
            out.indent("\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")), limit=20)

        # No worktree left: git knows only the main one and the worktree root holds nothing.
        wt_list = git("-C", str(self.clone), "worktree", "list", "--porcelain").stdout
        count = sum(1 for line in wt_list.splitlines() if line.startswith("worktree "))
        root = self.home / "worktrees"
        left = sorted(str(p) for pattern in ("*", "*/*") for p in root.glob(pattern) if not p.name.startswith("."))
        if count == 1 and not left:
            out.success(f"no worktree left: git worktree list shows only the clone, {root} is empty")
        else:
            out.error(f"worktrees left behind (git worktree list: {count} entries):")
            out.indent(git("-C", str(self.clone), "worktree", "list").stdout + "\n".join(left[:10]))

        self._isolation_in_force(report)
        if self.o.batch:
            self._check_batch(report)
        if self.shard_db.is_file():
            status = self.run([*self.awt, "status", "--db", str(self.shard_db), "--run-id", self.run_id])
            (self.slog / "awt_status.txt").write_text(status.stdout + status.stderr)
            if status.returncode == 0:
                out.success(f"airflow-worktree status --db {self.shard_db}: no threshold crossed")
            elif status.returncode == 1:
                out.warning("airflow-worktree status: a warning threshold is crossed")
            else:
                out.error(f"airflow-worktree status exited {status.returncode}")
            out.indent(status.stdout + status.stderr)
            rep = self.run([*self.awt, "report", "--db", str(self.shard_db), "--run-id", self.run_id])
            (self.slog / "awt_report.txt").write_text(rep.stdout + rep.stderr)
            if rep.returncode == 0:
                out.success(f"airflow-worktree report --db {self.shard_db} --run-id '{self.run_id}':")
                out.indent(rep.stdout, limit=40)
            else:
                out.error("airflow-worktree report failed:")
                out.tail(self.slog / "awt_report.txt")
        reports = sorted((self.home / "reports").glob("*.md"), key=lambda p: p.stat().st_mtime)
        if reports:
            out.success(f"the DAG's report: {reports[-1]}")
            out.indent(reports[-1].read_text(), limit=12)
        else:
            out.error(f"the DAG's report task wrote no Markdown report under {self.home / 'reports'}")

    def _dag_report(self) -> dict | None:
        assert self.home is not None
        reports = sorted((self.home / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in reversed(reports):
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            if data.get("run_id") == self.run_id:
                return data
        return None

    def _check_shards(self) -> None:
        out, o = self.out, self.o
        run = self.run_id
        done, total = self._completion()
        out.info(f"shard database {self.shard_db}: {shard_counts(self.shard_db)}")
        if done == total:
            out.success(f"all {total} shards completed")
        else:
            pct = 100.0 * done / total
            others = shard_rows(self.shard_db, "SELECT shard_id, status, error_message FROM shard_status "
                                               "WHERE run_id = ? AND status != 'completed'", (run,))
            text = "\n".join(f"{s}|{st}|{(e or '')[:280]}" for s, st, e in others)
            if pct >= o.min_completed:
                out.success(f"{done} of {total} shards completed ({pct:.0f}% >= --min-completed "
                            f"{o.min_completed:g}%)")
                out.warning(f"{total - done} shard(s) did not complete:")
            else:
                out.error(f"{done} of {total} shards completed ({pct:.0f}%); the others:")
            out.indent(text)
        if total < o.parallel:
            out.warning(f"only {total} shards for a parallel limit of {o.parallel}: not enough to fill every slot")

        # Branches and commits recorded for each completed shard exist in the clone, and the branch is there.
        bad = no_commit = checked = 0
        clone = str(self.clone)
        for shard, branch, commit in shard_rows(
                self.shard_db, "SELECT shard_id, COALESCE(branch, ''), COALESCE(commit_sha, '') FROM shard_status "
                               "WHERE run_id = ? AND status = 'completed' ORDER BY shard_id", (run,)):
            if not commit:
                no_commit += 1
                continue
            checked += 1
            tip = git("-C", clone, "rev-parse", "--verify", "-q", f"refs/heads/{branch}").stdout.strip()
            problem = ""
            if git("-C", clone, "rev-parse", "--verify", "-q", f"{commit}^{{commit}}").returncode != 0:
                problem = f"commit {commit} is not in the clone"
            elif not tip:
                problem = f"branch {branch} is not in the clone"
            elif tip != commit and git("-C", clone, "merge-base", "--is-ancestor", commit, tip).returncode != 0:
                problem = f"commit {commit} is not on branch {branch} ({tip})"
            elif self.base_head and git("-C", clone, "merge-base", "--is-ancestor", self.base_head,
                                        commit).returncode != 0:
                problem = f"commit {commit} does not descend from the base {self.base_head}"
            if problem:
                bad += 1
                out.error(f"shard {shard}: {problem}")
        if checked and not bad:
            out.success(f"every recorded branch and commit exists in the clone ({checked} checked with git "
                        "rev-parse --verify)")
        elif not checked and not bad and done:
            out.error("no completed shard recorded a commit")
        if no_commit:
            out.warning(f"{no_commit} completed shard(s) changed nothing and recorded no commit")
        branches = git("-C", clone, "for-each-ref", "--format=%(refname:short)", "refs/heads/worktree/").stdout
        out.info(f"the clone has {len(branches.split())} shard branch(es) under refs/heads/worktree/")

        # Overlap: the largest number of shards running at the same instant (from started_at/completed_at).
        spans = [(_epoch(a), _epoch(b)) for a, b in shard_rows(
            self.shard_db, "SELECT started_at, completed_at FROM shard_status WHERE run_id = ? "
                           "AND started_at IS NOT NULL", (run,))]
        spans = [(a, b) for a, b in spans if a is not None and b is not None]
        overlap = max_overlap(spans)
        wall = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else 0.0
        busy = sum(b - a for a, b in spans)
        expect = min(total, o.parallel)
        if o.mode == "sequential":
            if overlap >= 2:
                out.success(f"shards overlapped: up to {overlap} at once")
            else:
                out.warning(f"shards did not overlap (max {overlap} at once): sequential mode runs one task at a time")
        elif total < 2:
            out.info(f"{total} shard: nothing to overlap")
        elif overlap >= 2:
            out.success(f"shards ran in parallel: up to {overlap} at once (limit {o.parallel}); {busy:.1f}s of shard "
                        f"work in {wall:.1f}s")
            if overlap > o.parallel:
                out.error(f"more shards ran at once ({overlap}) than the parallel limit {o.parallel}")
            if overlap < (expect + 1) // 2:
                out.warning(f"less overlap than expected (up to {overlap} of {expect}): the machine may be short of CPU")
        else:
            out.error(f"shards did not overlap in time (max {overlap} at once): parallel execution is not working")

    def _check_batch(self, report: dict | None) -> None:
        """Batch mode: one batch for the run, its id recorded; every entry collected and billed once (attempt 0);
        the submit task deferred while the batch ran; the report shows batch and interactive cost apart."""
        out, run = self.out, self.run_id
        if not self.shard_db.is_file():
            return
        parts = shard_rows(self.shard_db, "SELECT part, batch_id, status, requests FROM shard_batches WHERE run_id = ?",
                           (run,))
        entries = dict(shard_rows(self.shard_db, "SELECT status, COUNT(*) FROM batch_entries WHERE run_id = ? "
                                                 "GROUP BY status", (run,)))
        billed = shard_rows(self.shard_db, "SELECT shard_id, COUNT(*) FROM shard_attempts WHERE run_id = ? AND "
                                           "status = 'batch' GROUP BY shard_id", (run,))
        ids = [p[1] for p in parts if p[1]]
        if len(ids) == len(parts) == 1 and parts[0][2] == "collected":
            out.success(f"one Message Batch for the run, {ids[0]}: {parts[0][3]} request(s), collected; entries: "
                        + ", ".join(f"{n} {s}" for s, n in sorted(entries.items())))
        else:
            out.error(f"expected one collected batch for the run, found: {parts}")
        if billed and all(n == 1 for _, n in billed) and len(billed) == entries.get("succeeded", 0):
            out.success(f"each of the {len(billed)} succeeded entries is billed once (attempt 0, batch prices)")
        else:
            out.error(f"batch spend rows do not match the succeeded entries: {billed} vs {entries}")
        logs = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run}" / "task_id=submit_batch"
        text = "\n".join(p.read_text(errors="replace") for p in logs.rglob("*.log")) if logs.is_dir() else ""
        if "deferring while batch(es)" in text and "batch mode of run" in text:
            out.success("the submit task deferred while the batch ran, and resumed to collect it")
        else:
            out.error(f"no deferral of the submit task found in its log under {logs}")
        t = (report or {}).get("totals") or {}
        if t.get("batch_shards"):
            out.success(f"report: batch ${t['batch_cost_usd']:.4f} ({t['batch_shards']} shard(s)), interactive "
                        f"${t['interactive_cost_usd']:.4f} (list prices; offline, nothing billed)")
        else:
            out.error("the report shows no batch shard")

    def _isolation_in_force(self, report: dict | None) -> None:
        """Which isolation the shards ran with, from the run's records; else the configured value."""
        seen: set[str] = set()
        for s in (report or {}).get("shards", []):
            if s.get("isolation"):
                seen.add(str(s["isolation"]))
        if not seen and self.shard_db.is_file():
            cols = {r[1] for r in shard_rows(self.shard_db, "PRAGMA table_info(shard_status)")}
            if "isolation" in cols:
                seen = {r[0] for r in shard_rows(self.shard_db, "SELECT DISTINCT isolation FROM shard_status "
                                                                "WHERE run_id = ? AND isolation IS NOT NULL",
                                                 (self.run_id,))}
        configured = self.conf.get("isolation", "auto")
        if seen:
            self.out.info(f"isolation in force: {', '.join(sorted(seen))} (recorded by the shards; configured: "
                          f"{configured})")
        else:
            self.out.info(f"isolation configured: {configured} (the run's records do not say which was in force)")

    def inspect_hint(self) -> None:
        assert self.home is not None
        self.out.heading("Inspect this run")
        self.out.indent(f"""\
. {self.home}/env.sh    # AIRFLOW_HOME, DAGs folder, metadata database, PATH of this run
airflow-worktree status --db $AIRFLOW_HOME/shard_status.db
airflow-worktree report --db $AIRFLOW_HOME/shard_status.db --run-id '{self.run_id}'
sqlite3 $AIRFLOW_HOME/shard_status.db "SELECT shard_id, status, started_at, completed_at, branch FROM shard_status ORDER BY started_at;"
sqlite3 $AIRFLOW_HOME/shard_status.db "SELECT status, COUNT(*) FROM shard_status GROUP BY status;"
git -C {self.clone} branch --list 'worktree/*'
less {self.slog}/dag_run.log {self.slog}/scheduler.log   # whichever exists; task logs: $AIRFLOW_HOME/logs/dag_id={DAG_ID}/""")

    # -- driver -----------------------------------------------------------------------------------------
    def phases(self) -> list[tuple[str, object]]:
        return [
            ("Pre-flight checks", self.preflight),
            ("Isolated AIRFLOW_HOME", self.isolated_home),
            ("DAG registration", self.registration),
            ("Repository clone", self.repository),
            ("Model API", self.model_api),
            (f"DAG run ({self.o.mode}, parallel limit {self.o.parallel})", self.dag_run),
            ("Post-run verification", self.verification),
        ]

    def main(self) -> int:
        out, rc = self.out, 0
        try:
            for name, fn in self.phases():
                out.phase(name)
                try:
                    fn()  # type: ignore[operator]
                except Fatal as exc:
                    out.error(str(exc))
                    rc = 1
                    break
                if out.phase_failed() and not self.o.keep_going:
                    out.info(f"stopping after the failed phase '{name}' (--keep-going runs the remaining phases)")
                    rc = 1
                    break
            else:
                out.phase_end()
                self.inspect_hint()
        except Interrupted as exc:
            print(f"\n{out.yellow}[WARNING]{out.off} interrupted by {exc.name} during "
                  f"\"{out.phase_name or 'start-up'}\": stopping everything this run started", flush=True)
            out.failures += 1
            rc = exc.code
        except Exception as exc:  # a bug here must still stop the services
            out.error(f"smoke_run.py failed: {type(exc).__name__}: {exc}")
            rc = 1
        finally:
            rc = self.cleanup(rc)
        return rc

    def cleanup(self, rc: int) -> int:
        out = self.out
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if out.phase_name:
            if rc and not out.phase_failed():
                out.failures += 1
            out.phase_end()
        if self.bg.procs:
            names = self.bg.stop_all()
            out.info(f"stopped the processes this run started: {', '.join(names)}")
        if self.pg_db_created and not self.o.keep_metadata_db:
            if self.pg_admin("drop", self.pg_db_created):
                out.info(f"dropped the PostgreSQL metadata database {self.pg_db_created}")
            else:
                print(f"{out.yellow}[WARNING]{out.off} could not drop PostgreSQL database {self.pg_db_created}")
        return out.summary(rc, self.home)


def _on_signal(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    raise Interrupted(name, 128 + signum)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if opts is None:
        print(USAGE, end="")
        return 0
    out = Out(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return SmokeRun(opts, out).main()


if __name__ == "__main__":
    sys.exit(main())
