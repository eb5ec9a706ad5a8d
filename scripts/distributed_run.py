#!/usr/bin/env python3
"""distributed_run.py: the example DAG on a real CeleryExecutor deployment, on this machine, then checks.

Starts, in a fresh AIRFLOW_HOME (a temp dir, or --home):

* the Airflow metadata database: a fresh PostgreSQL database ``wt_dist_<random>`` (dropped at the end unless
  --keep), also the Celery result backend (``db+postgresql://``);
* the shard status database: a second fresh PostgreSQL database (connection ``shard_status_default``,
  conn_type postgres);
* the broker: an empty Redis database number (claimed with a marker key, flushed at the end), or RabbitMQ
  with --broker rabbitmq; either way a queue of its own (``wt_dist_<random>``);
* ``airflow api-server`` (the execution API the Celery workers' tasks talk to), ``scheduler``,
  ``dag-processor`` (DAGs folder = the package's example_dags/), and TWO ``airflow celery worker`` processes
  with distinct ``--celery-hostname``, each with its own ``[worktree] worktree_root`` / ``cache_dir``
  (AIRFLOW__WORKTREE__*), log file and log-server port;
* the offline Messages API server (a test double, not Claude) with a small latency so shards overlap;
* a bare git repository as the shared remote (``file://``), seeded with the demo repository.

Then, per scenario, it triggers ``parallel_maintenance_poc`` with ``push: true`` and an integration branch,
waits for the run and checks: the run succeeded; both workers processed shards (the worktree path each shard
recorded lies under one worker's root); every shard completed exactly once in the PostgreSQL shard database;
every shard branch is on the remote at the recorded commit; the integration branch is on the remote and
contains every shard commit; no worktree is left in either worker's root.

Scenario ``kill-worker``: once shards are running on worker 2, SIGKILL worker 2's process group and every
process it started (as if its host died). Airflow notices the missing task heartbeats, fails those tries and
retries them on worker 1; the retry reclaims the dead holder's shard lease (same host, dead pid). Worker 2's
abandoned worktrees are then pruned the way its janitor would after a restart (dead owner: salvaged, removed).

    .venv/bin/python scripts/distributed_run.py                      # both scenarios, Redis broker
    .venv/bin/python scripts/distributed_run.py --scenario normal
    .venv/bin/python scripts/distributed_run.py --kill-worker        # only the kill scenario
    .venv/bin/python scripts/distributed_run.py --broker rabbitmq --keep

Everything it started is stopped at the end (also on Ctrl-C or an error) and its databases dropped.
Exit status: 0 when every check passed, 1 when a check failed, 2 when it cannot run here (missing service or
package; the message names the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DAG_ID = "parallel_maintenance_poc"
MARKER_KEY = "airflow-provider-worktree:distributed_run"
POOL = "claude_model_calls"


class CannotRun(Exception):
    """A prerequisite is missing (exit 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- processes
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (by parent pid), whatever process group it moved to."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_tree(pids: list[int], sig: int) -> None:
    groups = set()
    for p in pids:
        try:
            groups.add(os.getpgid(p))
        except OSError:
            pass
    for g in groups:
        if g > 1 and g != os.getpgrp():
            try:
                os.killpg(g, sig)
            except OSError:
                pass
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    stopped: bool = False


class Processes:
    """Long-lived processes, each in its own session (so it and what it forks share a process group)."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> Proc:
        fh = open(log_path, "ab")
        popen = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, start_new_session=True)
        fh.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        log(f"started {name} (pid {popen.pid}), log {log_path}")
        return proc

    def kill_tree(self, proc: Proc, group_only: bool = False) -> list[int]:
        """SIGKILL the process, its group and every descendant (in whatever group), like a host dying.

        ``group_only``: only the process's own group; Airflow's task processes, which move to groups of
        their own, survive as orphans (a worker crash that is not a host crash)."""
        pids = [proc.popen.pid] + descendants(proc.popen.pid)
        if group_only:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            pids = [p for p in pids if _pgid(p) == proc.popen.pid]
        else:
            _signal_tree(pids, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        proc.stopped = True
        return pids

    def stop(self, proc: Proc, timeout: float = 25.0) -> None:
        if proc.stopped:
            return
        pids = [proc.popen.pid] + descendants(proc.popen.pid)
        _signal_tree(pids, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            try:
                proc.popen.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in pids if _alive(p)]
        if left:
            log(f"{proc.name}: {len(left)} process(es) ignored SIGTERM for {timeout:.0f}s; SIGKILL")
            _signal_tree(left, signal.SIGKILL)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        proc.stopped = True

    def stop_all(self) -> None:
        live = [p for p in reversed(self.procs) if not p.stopped]
        # workers first (warm shutdown), then the rest; each one's whole tree
        for proc in sorted(live, key=lambda p: 0 if p.name.startswith("worker") else 1):
            self.stop(proc)
        if live:
            log("stopped: " + ", ".join(p.name for p in live))

    def check_alive(self, names: list[str] | None = None) -> None:
        for p in self.procs:
            if not p.stopped and (names is None or p.name in names) and p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with status {p.popen.returncode}; see {p.log_path}:\n"
                                   + tail(p.log_path))


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


# ------------------------------------------------------------------------------------------- services
class Postgres:
    def __init__(self, host: str, port: int, user: str) -> None:
        self.host, self.port, self.user = host, port, user
        self.created: list[str] = []

    def connect(self, db: str = "postgres"):
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db, connect_timeout=5)
        con.autocommit = True
        return con

    def url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{db}"

    def create(self, db: str) -> None:
        con = self.connect()
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db}"')
        con.close()
        self.created.append(db)

    def drop_all(self) -> None:
        con = self.connect()
        with con.cursor() as cur:
            for db in self.created:
                cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                log(f"dropped PostgreSQL database {db}")
        con.close()
        self.created = []

    def query(self, db: str, sql: str, params: tuple = ()) -> list[tuple]:
        con = self.connect(db)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()


class RedisBroker:
    """An empty Redis database number, claimed with a marker key, flushed at the end."""

    def __init__(self, host: str, port: int, db: int | None) -> None:
        import redis

        self.host, self.port = host, port
        self.db = None
        candidates = [db] if db is not None else list(range(15, 0, -1))
        for n in candidates:
            r = redis.Redis(host=host, port=port, db=n, socket_timeout=5)
            if r.dbsize() == 0 and r.set(MARKER_KEY, str(os.getpid()), nx=True):
                self.db, self.client = n, r
                break
        if self.db is None:
            raise CannotRun(f"no empty Redis database number on {host}:{port} ({candidates}); pass --redis-db N "
                            "with an empty one")
        self.url = f"redis://{host}:{port}/{self.db}"

    def cleanup(self, queue: str) -> None:
        if self.client.get(MARKER_KEY) is not None:
            self.client.flushdb()
            log(f"flushed Redis database {self.db}")


class RabbitBroker:
    def __init__(self, url: str) -> None:
        self.url = url

    def cleanup(self, queue: str) -> None:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=5) as conn:
                conn.default_channel.queue_delete(queue)
            log(f"deleted RabbitMQ queue {queue}")
        except Exception as exc:  # noqa: BLE001
            log(f"could not delete RabbitMQ queue {queue}: {exc}")


# ------------------------------------------------------------------------------------------- git
def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def make_demo(dest: Path, modules: int) -> Path:
    """The demo repository: scripts/demo_repo.py when present, else a minimal generator of our own."""
    script = PROJECT / "scripts" / "demo_repo.py"
    if script.exists():
        out = run([sys.executable, str(script), "--dest", str(dest), "--modules", str(modules)]).stdout
        return Path(out.strip().splitlines()[-1])
    dest.mkdir(parents=True)
    for i in range(modules):
        f = dest / "demo" / f"mod_{i:02d}.py"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"def f_{i}(x):\n    # TODO: reject negative x\n    return x + {i}\n")
    (dest / "README.md").write_text("# demo\n")
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "-q", "-m", "demo", cwd=dest)
    return dest


def ls_remote(remote: Path) -> dict[str, str]:
    refs = {}
    for line in git("ls-remote", str(remote)).splitlines():
        sha, ref = line.split("\t", 1)
        refs[ref] = sha
    return refs


# ------------------------------------------------------------------------------------------- checks
@dataclass
class Scenario:
    name: str
    kill_worker: bool
    run_id: str = ""
    remote: Path | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        log(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
        return bool(ok)

    def warn(self, name: str, ok: bool, detail: str = "") -> None:
        """A check that is reported but does not fail the run (a known issue outside this script)."""
        if ok:
            self.check(name, True, detail)
        else:
            self.warnings.append(f"{name}: {detail}")
            log(f"  [WARN] {name}: {detail}")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


class Deployment:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Processes()
        self.tag = "wt_dist_" + secrets.token_hex(4)
        self.pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
        self.broker = None
        self.queue = self.tag
        self.home_is_temp = args.home is None
        self.home = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="wt-dist-"))
        self.bin = Path(sys.executable).parent
        self.airflow = str(self.bin / "airflow") if (self.bin / "airflow").exists() else None
        self.meta_db = self.tag
        self.shard_db = self.tag + "_shards"
        self.workers: dict[str, Proc] = {}
        self.roots: dict[str, Path] = {}
        self.caches: dict[str, Path] = {}
        self.timings: dict[str, float] = {}

    # -------------------------------------------------------------------------------- set-up
    def preflight(self) -> None:
        missing = []
        for mod, why in (("psycopg2", "PostgreSQL metadata and shard database (pip install psycopg2-binary)"),
                         ("asyncpg", "Airflow's async engine for a PostgreSQL metadata database (pip install "
                                     "asyncpg)"),
                         ("airflow.providers.celery", "CeleryExecutor (pip install -e '.[celery]')"),
                         ("redis" if self.args.broker == "redis" else "amqp", "the Celery broker client")):
            try:
                __import__(mod)
            except ImportError:
                missing.append(f"{mod}: {why}")
        if missing:
            raise CannotRun("missing Python packages in " + sys.executable + ":\n  " + "\n  ".join(missing))
        if not self.airflow:
            raise CannotRun(f"no airflow command beside {sys.executable}: run this script with the venv's python")
        try:
            self.pg.connect().close()
        except Exception as exc:  # noqa: BLE001
            raise CannotRun(f"PostgreSQL at {self.args.pg_host}:{self.args.pg_port} is not reachable as "
                            f"{self.args.pg_user}: {exc}".strip()) from None
        if self.args.broker == "redis":
            try:
                self.broker = RedisBroker(self.args.redis_host, self.args.redis_port, self.args.redis_db)
            except CannotRun:
                raise
            except Exception as exc:  # noqa: BLE001
                raise CannotRun(f"Redis at {self.args.redis_host}:{self.args.redis_port} is not reachable: {exc}"
                                ) from None
        else:
            from kombu import Connection

            try:
                with Connection(self.args.rabbitmq_url, connect_timeout=5) as conn:
                    conn.connect()
            except Exception as exc:  # noqa: BLE001
                raise CannotRun(f"RabbitMQ at {self.args.rabbitmq_url} is not reachable: {exc}") from None
            self.broker = RabbitBroker(self.args.rabbitmq_url)
        if shutil.which("git") is None:
            raise CannotRun("git is not installed")

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k not in (
                   "AIRFLOW_CONFIG", "WORKTREE_REPO")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"  # service logs written as they happen (a SIGKILL loses nothing)
        env.update(self.airflow_env)
        return env

    def setup(self) -> None:
        a = self.args
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        if any(self.home.iterdir()) and not self.home_is_temp:
            raise CannotRun(f"--home {self.home} is not empty: give an empty or new directory")
        self.logs = self.home / "distributed"
        self.logs.mkdir()
        self.pg.create(self.meta_db)
        self.pg.create(self.shard_db)
        log(f"PostgreSQL databases {self.meta_db} (metadata, Celery results) and {self.shard_db} (shards)")
        self.api_port = free_port()
        from cryptography.fernet import Fernet

        shard_conn = {"conn_type": "postgres", "host": a.pg_host, "port": a.pg_port, "login": a.pg_user,
                      "schema": self.shard_db}
        self.airflow_env = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "airflow_provider_worktree" / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg.url(self.meta_db, "postgresql+psycopg2"),
            "AIRFLOW__CELERY__BROKER_URL": self.broker.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": self.pg.url(self.meta_db, "db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(a.concurrency),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            # a dead worker's tasks: noticed after 20 s without a task heartbeat, checked every 3 s
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(a.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # a message a dead worker had taken but not started (Redis keeps it unacked until the visibility
            # timeout): the task instance stays queued, and is requeued after 45 s
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(a.queued_timeout),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
            # task slots freed ~1.2 s after the task ends instead of ~3 s
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "WORKTREE_PARALLEL_LIMIT": str(a.parallel),
            "WORKTREE_MAX_PARALLEL": str(a.parallel),
            "WORKTREE_MODEL_POOL": POOL,
            "AIRFLOW_CONN_SHARD_STATUS_DEFAULT": json.dumps(shard_conn),
        }
        env = self.base_env()

        # offline Messages API server (test double)
        port_file = self.logs / "offline_api.port"
        self.procs.start("offline-api", [sys.executable, "-m", "airflow_provider_worktree.testing", "--port", "0",
                                         "--port-file", str(port_file), "--latency", str(a.latency)],
                         env, self.logs / "offline_api.log")
        deadline = time.monotonic() + 30
        while not port_file.exists():
            self.procs.check_alive(["offline-api"])
            if time.monotonic() > deadline:
                raise RuntimeError("offline Messages API server did not start")
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        self.airflow_env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"] = json.dumps(
            {"conn_type": "anthropic", "host": base, "password": "sk-ant-offline-dummy"})
        env = self.base_env()

        t = time.monotonic()
        run([self.airflow, "db", "migrate"], env=env, timeout=600)
        run([self.airflow, "pools", "set", POOL, str(a.parallel), "Claude model calls (size to the rate limit)"],
            env=env)
        self.timings["db_migrate_s"] = round(time.monotonic() - t, 1)
        log(f"metadata database migrated in {self.timings['db_migrate_s']}s; pool {POOL} = {a.parallel} slots")

        self.api = self.procs.start("api-server", [self.airflow, "api-server", "--host", "127.0.0.1", "--port",
                                                   str(self.api_port), "--workers", "1"],
                                    env, self.logs / "api_server.log")
        self.procs.start("scheduler", [self.airflow, "scheduler"], env, self.logs / "scheduler.log")
        self.procs.start("dag-processor", [self.airflow, "dag-processor"], env, self.logs / "dag_processor.log")
        if a.triggerer:
            self.procs.start("triggerer", [self.airflow, "triggerer"], env, self.logs / "triggerer.log")
        for n in (1, 2):
            name = f"worker{n}"
            root, cache = self.home / name / "worktrees", self.home / name / "cache"
            root.mkdir(parents=True)
            cache.mkdir(parents=True)
            self.roots[name], self.caches[name] = root, cache
            wenv = dict(env, AIRFLOW__WORKTREE__WORKTREE_ROOT=str(root), AIRFLOW__WORKTREE__CACHE_DIR=str(cache),
                        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
            self.workers[name] = self.procs.start(
                name, [self.airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                       str(a.concurrency), "--queues", self.queue, "--pid", str(self.logs / f"{name}.pid"),
                       "--without-mingle", "--without-gossip"],
                wenv, self.logs / f"{name}.log")
        self._wait_ready()
        self.timings["startup_s"] = round(time.monotonic() - t0, 1)
        log(f"deployment ready in {self.timings['startup_s']}s")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 240
        ready: set[str] = set()
        while True:
            self.procs.check_alive()
            if "api" not in ready:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=2)
                    ready.add("api")
                except Exception:  # noqa: BLE001
                    pass
            for name, proc in self.workers.items():
                if name not in ready and " ready." in proc.log_path.read_text(errors="replace"):
                    ready.add(name)
            if "dag" not in ready:
                rows = self.pg.query(self.meta_db, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", (DAG_ID,)) \
                    if self._table_exists("serialized_dag") else []
                if rows:
                    ready.add("dag")
            if {"api", "dag", "worker1", "worker2"} <= ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"services not ready after 240 s (ready: {sorted(ready)})")
            time.sleep(0.5)

    def _table_exists(self, table: str) -> bool:
        return bool(self.pg.query(self.meta_db, "SELECT to_regclass(%s)", (table,))[0][0])

    # -------------------------------------------------------------------------------- one scenario
    def run_scenario(self, sc: Scenario) -> None:
        a = self.args
        work = self.home / sc.name
        work.mkdir()
        demo = make_demo(work / "demo", a.modules)
        sc.remote = work / "remote.git"
        git("clone", "--bare", "-q", str(demo), str(sc.remote))
        remote_url = sc.remote.as_uri()
        from airflow_provider_worktree.core.planning import plan_shards

        expected = {s["shard_id"] for s in plan_shards(str(demo), "todo", max_files=a.max_files_per_shard)}
        sc.facts["shards_planned"] = len(expected)
        log(f"[{sc.name}] remote {remote_url}: {a.modules} modules, {len(expected)} shards expected")

        sc.run_id = f"dist_{sc.name.replace('-', '_')}_{int(time.time())}"
        conf = {"repo": remote_url, "push": True, "max_files_per_shard": a.max_files_per_shard,
                "model": "claude-sonnet-4-6", "integration_branch": a.integration_branch}
        env = self.base_env()
        t0 = time.monotonic()
        run([self.airflow, "dags", "unpause", DAG_ID], env=env)
        run([self.airflow, "dags", "trigger", DAG_ID, "--run-id", sc.run_id, "-c", json.dumps(conf)], env=env)
        sc.timings["trigger_s"] = round(time.monotonic() - t0, 1)
        log(f"[{sc.name}] triggered {sc.run_id}")

        sc.facts["_log_offsets"] = {n: w.log_path.stat().st_size for n, w in self.workers.items()}
        killed_shards: set[str] = set()
        killed_at = None
        deadline = time.monotonic() + a.timeout
        last_progress = 0.0
        state = None
        while True:
            self.procs.check_alive(["api-server", "scheduler", "dag-processor", "worker1"]
                                   + ([] if self.workers["worker2"].stopped else ["worker2"]))
            state = self._run_state(sc.run_id)
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {sc.run_id} not finished after {a.timeout}s (--timeout); "
                                   f"{self._progress(sc.run_id)}")
            if sc.kill_worker and killed_at is None:
                on_w2 = self._running_on("worker2", sc.run_id)
                done = self._shard_counts(sc.run_id).get("completed", 0)
                if len(on_w2) >= a.kill_after_running and done >= 1:
                    pids = self.procs.kill_tree(self.workers["worker2"], group_only=a.kill_mode == "group")
                    killed_at = time.monotonic()
                    # A shard may have finished between the look and the kill: it was not killed.
                    finished = {sid for sid, in self.pg.query(
                        self.shard_db, "SELECT shard_id FROM shard_status WHERE run_id = %s AND status = "
                                       "'completed' AND attempt = 1", (sc.run_id,)) if sid in on_w2}
                    killed_shards = set(on_w2) - finished
                    if finished:
                        sc.facts["completed_before_kill"] = sorted(finished)
                    sc.facts["killed_pids"] = len(pids)
                    sc.facts["killed_shards"] = sorted(killed_shards)
                    sc.timings["kill_at_s"] = round(killed_at - t0, 1)
                    log(f"[{sc.name}] SIGKILLed worker2 ({a.kill_mode}: {len(pids)} processes) while it ran shards "
                        f"{sorted(killed_shards)}; {done} shards completed so far")
            if time.monotonic() - last_progress > 10:
                last_progress = time.monotonic()
                log(f"[{sc.name}] {self._progress(sc.run_id)}")
            time.sleep(0.5)
        sc.timings["run_s"] = round(time.monotonic() - t0, 1)
        if killed_at is not None:
            sc.timings["recovery_after_kill_s"] = round(time.monotonic() - killed_at, 1)
        log(f"[{sc.name}] run {sc.run_id} ended: {state} in {sc.timings['run_s']}s")
        self._verify(sc, state, expected, killed_shards)

    def _run_state(self, run_id: str) -> str | None:
        rows = self.pg.query(self.meta_db, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                             (DAG_ID, run_id))
        return rows[0][0] if rows else None

    def _shard_counts(self, run_id: str) -> dict[str, int]:
        if not self.pg.query(self.shard_db, "SELECT to_regclass('shard_status')")[0][0]:
            return {}
        return dict(self.pg.query(self.shard_db, "SELECT status, count(*) FROM shard_status WHERE run_id = %s "
                                                 "GROUP BY status", (run_id,)))

    def _progress(self, run_id: str) -> str:
        tis = self.pg.query(self.meta_db, "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE "
                                          "dag_id = %s AND run_id = %s GROUP BY 1 ORDER BY 1", (DAG_ID, run_id))
        shards = self._shard_counts(run_id)
        return ("task instances " + (" ".join(f"{s}={n}" for s, n in tis) or "-") + "; shards "
                + (" ".join(f"{s}={n}" for s, n in sorted(shards.items())) or "-"))

    def _running_on(self, worker: str, run_id: str) -> list[str]:
        """Shards running now in a process of ``worker`` (the lease's worker_id is host:pid)."""
        if not self._shard_counts(run_id).get("running"):
            return []
        pids = set(descendants(self.workers[worker].popen.pid))
        out = []
        for shard_id, worker_id in self.pg.query(self.shard_db, "SELECT shard_id, worker_id FROM shard_status "
                                                                "WHERE run_id = %s AND status = 'running'", (run_id,)):
            pid = (worker_id or "").rpartition(":")[2]
            if pid.isdigit() and int(pid) in pids:
                out.append(shard_id)
        return out

    # -------------------------------------------------------------------------------- checks
    def _worker_of(self, path: str | None) -> str | None:
        for name, root in self.roots.items():
            if path and (path == str(root) or path.startswith(str(root) + os.sep)):
                return name
        return None

    def _verify(self, sc: Scenario, state: str | None, expected: set[str], killed: set[str]) -> None:
        from airflow_provider_worktree.core.store import ShardStore
        from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

        log(f"[{sc.name}] checks")
        sc.check("DAG run succeeded", state == "success", f"state={state}")
        if state != "success":
            for name in ("scheduler", "worker1", "worker2"):
                log(f"{name} log tail:\n" + tail(self.logs / f"{name}.log", 15))

        store = ShardStore.open(self.pg.url(self.shard_db))
        rows = store.list_shards(run_id=sc.run_id)
        ids = [r["shard_id"] for r in rows]
        sc.facts["shards"] = len(rows)
        sc.check(">= 20 shards", len(rows) >= 20, f"{len(rows)} shards")
        sc.check("shard rows = planned shards, one row each", set(ids) == expected and len(ids) == len(set(ids)),
                 f"{len(ids)} rows, {len(set(ids))} distinct, {len(expected)} planned")
        not_done = [(r["shard_id"], r["status"], r["error_message"]) for r in rows if r["status"] != "completed"]
        sc.check("every shard completed", not not_done, f"not completed: {not_done[:5]}" if not_done else
                 f"{len(rows)} completed")
        no_commit = [r["shard_id"] for r in rows if not r["commit_sha"] or not r["branch"]]
        sc.check("every shard recorded a branch and a commit", not no_commit, ", ".join(no_commit[:5]))
        attempts: dict[int, int] = {}
        for r in rows:
            attempts[int(r["attempt"] or 0)] = attempts.get(int(r["attempt"] or 0), 0) + 1
        sc.facts["attempts"] = {f"attempt {k}": v for k, v in sorted(attempts.items())}

        by_worker: dict[str, int] = {}
        where: dict[str, str | None] = {}
        for r in rows:
            w = self._worker_of((r.get("result_summary") or {}).get("worktree_path"))
            where[r["shard_id"]] = w
            by_worker[w or "unknown"] = by_worker.get(w or "unknown", 0) + 1
        sc.facts["completed_by_worker"] = by_worker
        sc.check("every completed shard's worktree lay under a worker's root", "unknown" not in by_worker,
                 json.dumps(by_worker))

        # task instances of maintain: tries, hostnames (both workers share this host's name here)
        tis = self.pg.query(self.meta_db, "SELECT map_index, try_number, state, hostname FROM task_instance "
                                          "WHERE dag_id = %s AND run_id = %s AND task_id = 'maintain'",
                            (DAG_ID, sc.run_id))
        sc.facts["maintain_tis"] = len(tis)
        sc.facts["maintain_retried"] = sum(1 for t in tis if (t[1] or 0) > 1)
        sc.check("one maintain task instance per shard, all success",
                 len(tis) == len(rows) and all(t[2] == "success" for t in tis),
                 f"{len(tis)} TIs, states {sorted({t[2] for t in tis})}")
        received = {}
        for name, offset in sc.facts.pop("_log_offsets", {}).items():
            with open(self.logs / f"{name}.log", "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
            received[name] = sum(1 for line in text.splitlines() if "execute_workload[" in line and "received" in line)
        sc.facts["celery_tasks_received"] = received

        if not sc.kill_worker:
            sc.check("both workers completed shards", by_worker.get("worker1", 0) > 0 and by_worker.get(
                "worker2", 0) > 0, json.dumps(by_worker))
            sc.check("no shard needed a retry", set(attempts) == {1}, json.dumps(sc.facts["attempts"]))
        else:
            sc.check("worker2 was killed while running shards", bool(killed),
                     f"killed while running {sorted(killed)}")
            row = {r["shard_id"]: r for r in rows}
            sc.facts["killed_shards_completed_by"] = {s: f"{where.get(s)} (attempt {row[s]['attempt']})"
                                                      for s in sorted(killed)}
            if self.args.kill_mode == "tree":
                bad = [s for s in killed if where.get(s) != "worker1"]
                sc.check("every shard killed on worker2 completed on worker1", killed and not bad,
                         f"not on worker1: {bad}" if bad else f"{len(killed)} shards")
                low = [s for s in killed if int(row[s]["attempt"] or 0) < 2]
                sc.check("the killed shards were re-claimed (attempt >= 2 in the shard database)",
                         killed and not low, json.dumps(sc.facts["attempts"]))
            # group mode: the orphaned task processes may finish their shards themselves (the retry then
            # finds them completed and skips); "every shard completed exactly once" above is what counts
            sc.check("Airflow retried the killed task instances (try_number >= 2)",
                     sc.facts["maintain_retried"] >= len(killed), f"{sc.facts['maintain_retried']} TIs retried")
            sched = (self.logs / "scheduler.log").read_text(errors="replace")
            sc.facts["scheduler_heartbeat_timeout_lines"] = sum(
                1 for line in sched.splitlines() if "heartbeat" in line.lower() and "timed out" in line.lower()
                or "Detected" in line and "heartbeat" in line.lower())

        refs = ls_remote(sc.remote)
        missing = [r["branch"] for r in rows if refs.get(f"refs/heads/{r['branch']}") != r["commit_sha"]]
        sc.check("every shard branch is on the remote at the recorded commit", rows and not missing,
                 f"missing or different: {missing[:5]}" if missing else f"{len(rows)} branches")
        integ = refs.get(f"refs/heads/{self.args.integration_branch}")
        sc.check("integration branch is on the remote", bool(integ), f"{self.args.integration_branch} @ "
                 f"{(integ or '')[:12]}")
        if integ:
            not_merged = [r["shard_id"] for r in rows if r["commit_sha"] and subprocess.run(
                ["git", "merge-base", "--is-ancestor", r["commit_sha"], integ], cwd=sc.remote,
                capture_output=True).returncode != 0]
            sc.check("integration branch contains every shard commit", not not_merged, ", ".join(not_merged[:5]))

        remote_url = sc.remote.as_uri()
        for name in ("worker1", "worker2"):
            leftover = self._leftovers(name, remote_url)
            if name == "worker2" and sc.kill_worker and leftover:
                # the host died mid-shard: its janitor (worktree_health DAG / airflow-worktree prune) cleans up
                mgr = WorktreeManager(remote_url, worktree_root=str(self.roots[name]),
                                      cache_dir=str(self.caches[name]))
                report = mgr.prune()
                sc.facts["worker2_pruned_after_restart"] = len(report.actions)
                sc.check("worker2's abandoned worktrees are those of shards killed there",
                         {Path(p).name.rsplit("-a", 1)[0] for p in leftover} <= killed,
                         f"{len(leftover)} left: {[Path(p).name for p in leftover]}")
                leftover = self._leftovers(name, remote_url)
                # not a failure of the run: a git process SIGKILLed mid-command can leave an index.lock in a
                # worktree, and prune then cannot save that worktree's work (reported as a known issue)
                sc.warn("worker2's janitor prune (dead owner) removes them", not leftover,
                        f"{len(report.actions)} actions" if not leftover else
                        f"still there: {[Path(p).name for p in leftover]}; prune errors: "
                        f"{[e['error'][:300] for e in report.errors]}")
            else:
                sc.check(f"nothing left in {name}'s worktree root", not leftover,
                         f"left: {leftover[:5]}" if leftover else str(self.roots[name]))

    def _leftovers(self, name: str, remote_url: str) -> list[str]:
        """Worktrees (registered or not) under the worker's root for this scenario's repository."""
        left = []
        root = self.roots[name]
        for dirpath, dirnames, filenames in os.walk(root):
            if ".git" in filenames or ".git" in dirnames:
                left.append(dirpath)
                dirnames[:] = []
            elif filenames:
                left.extend(os.path.join(dirpath, f) for f in filenames)
        for clone in self.caches[name].glob("*.git"):
            out = git("worktree", "list", "--porcelain", cwd=clone, check=False)
            for line in out.splitlines():
                if line.startswith("worktree ") and line[9:] != str(clone) and line[9:] not in left:
                    if line[9:].startswith(str(root)):
                        left.append(line[9:])
        return sorted(set(left))

    # -------------------------------------------------------------------------------- teardown
    def teardown(self) -> None:
        try:
            self.procs.stop_all()
        except Exception as exc:  # noqa: BLE001
            log(f"error while stopping processes: {exc}")
        if self.broker is not None:
            try:
                self.broker.cleanup(self.queue)
            except Exception as exc:  # noqa: BLE001
                log(f"broker cleanup failed: {exc}")
        if not self.args.keep:
            try:
                self.pg.drop_all()
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop databases {self.pg.created}: {exc}")
            if self.home_is_temp:
                shutil.rmtree(self.home, ignore_errors=True)
        else:
            log(f"kept: AIRFLOW_HOME {self.home}, databases {self.pg.created} (--keep)")


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=("normal", "kill-worker", "both"), default="both",
                   help="normal: two workers share the run; kill-worker: SIGKILL worker 2 mid-run; both "
                        "(default): one deployment, the two scenarios one after the other")
    p.add_argument("--kill-worker", action="store_true", help="same as --scenario kill-worker")
    p.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, help="Redis database number (must be empty; default: the highest empty "
                                                "one of 15..1)")
    p.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672//")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--home", help="AIRFLOW_HOME to use (empty or new; default: a temp dir, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the home for inspection")
    p.add_argument("--modules", type=int, default=24, help="demo repository modules (default 24)")
    p.add_argument("--max-files-per-shard", type=int, default=1, help="DAG param (default 1: one shard a module)")
    p.add_argument("--concurrency", type=int, default=4, help="Celery worker concurrency (default 4 each)")
    p.add_argument("--parallel", type=int, default=8,
                   help="WORKTREE_PARALLEL_LIMIT and the model pool's size (default 8)")
    p.add_argument("--latency", type=float, default=0.3, help="offline API latency per reply (default 0.3 s)")
    p.add_argument("--heartbeat-timeout", type=int, default=20,
                   help="[scheduler] task_instance_heartbeat_timeout in seconds (default 20)")
    p.add_argument("--queued-timeout", type=int, default=45,
                   help="[scheduler] task_queued_timeout in seconds (default 45)")
    p.add_argument("--kill-after-running", type=int, default=2,
                   help="kill worker 2 once this many shards run on it (default 2)")
    p.add_argument("--kill-mode", choices=("tree", "group"), default="tree",
                   help="tree (default): worker 2's process group and every process it started, in any group "
                        "(its host died); group: only worker 2's own process group, so Airflow's task processes "
                        "(own groups) live on as orphans")
    p.add_argument("--integration-branch", default="maintenance/integration")
    p.add_argument("--triggerer", action="store_true", help="also start a triggerer (deferrable sensors)")
    p.add_argument("--timeout", type=float, default=420, help="seconds a DAG run may take (default 420)")
    a = p.parse_args(argv)
    if a.kill_worker:
        a.scenario = "kill-worker"
    if a.modules < 20 * a.max_files_per_shard:
        p.error(f"--modules {a.modules} with --max-files-per-shard {a.max_files_per_shard} gives fewer than 20 "
                "shards")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ["normal", "kill-worker"] if args.scenario == "both" else [args.scenario]
    scenarios = [Scenario(n, kill_worker=(n == "kill-worker")) for n in names]
    dep = Deployment(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    error = None
    rc = 1
    try:
        dep.preflight()
        log(f"CeleryExecutor deployment {dep.tag}: broker {args.broker} ({dep.broker.url.split('@')[-1]}), "
            f"queue {dep.queue}, home {dep.home}")
        dep.setup()
        for sc in scenarios:
            t = time.monotonic()
            try:
                dep.run_scenario(sc)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - record, keep going with the summary
                sc.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
            sc.timings["scenario_s"] = round(time.monotonic() - t, 1)
    except CannotRun as exc:
        print(f"distributed_run: cannot run here: {exc}", file=sys.stderr)
        rc = 2
        error = str(exc)
    except KeyboardInterrupt as exc:
        error = f"interrupted ({exc or 'Ctrl-C'})"
        log(error + ": stopping everything this run started")
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        dep.teardown()

    total = round(time.monotonic() - t0, 1)
    print("\n==> Summary (CeleryExecutor, 2 workers, broker %s)" % args.broker)
    print(f"    startup {dep.timings.get('startup_s', '-')}s (db migrate {dep.timings.get('db_migrate_s', '-')}s)")
    for sc in scenarios:
        n_ok = sum(ok for _, ok, _ in sc.checks)
        print(f"    scenario {sc.name}: {'PASSED' if sc.passed else 'FAILED'} ({n_ok}/{len(sc.checks)} checks), "
              f"run {sc.timings.get('run_s', '-')}s, scenario {sc.timings.get('scenario_s', '-')}s")
        for key in ("shards", "completed_by_worker", "attempts", "maintain_retried", "celery_tasks_received",
                    "killed_shards", "killed_shards_completed_by", "worker2_pruned_after_restart"):
            if key in sc.facts:
                print(f"      {key}: {json.dumps(sc.facts[key])}")
        for key in ("kill_at_s", "recovery_after_kill_s"):
            if key in sc.timings:
                print(f"      {key}: {sc.timings[key]}")
        for name, ok, detail in sc.checks:
            if not ok:
                print(f"      FAILED: {name}: {detail}")
        for warning in sc.warnings:
            print(f"      WARNING: {warning}")
    print(f"    total {total}s")
    if rc == 2:
        print("RESULT: SKIPPED (cannot run here)")
        return 2
    if error is None and all(sc.passed for sc in scenarios):
        print("RESULT: PASSED")
        return 0
    print("RESULT: FAILED" + (f" ({error})" if error else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
