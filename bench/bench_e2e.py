"""End-to-end benchmark: the example DAG on 100 shards, parallel limit 10, against its no-op twin.

    .venv/bin/python bench/bench_e2e.py [--shards 100] [--parallel 10] [--latency 2] [--metadata-db auto]

One Airflow instance (fresh AIRFLOW_HOME in a temporary directory; api-server --apps execution, scheduler and
dag-processor with the LocalExecutor; a fresh PostgreSQL metadata database when a server answers, else SQLite;
the offline Messages API test double on a fixed loopback port) runs, one after the other:

1. ``parallel_maintenance_noop`` (bench/dags): the same plan task and mapped shard count, mapped tasks that do
   nothing: the floor, what Airflow alone costs;
2. ``parallel_maintenance_poc`` (airflow_provider_worktree/example_dags) with the offline server answering at once (latency 0);
3. the same with the server answering after ``--latency`` seconds (default 2).

Each run's wall time is its dag run's ``end_date - start_date`` from the metadata database. The shard database
gives each shard's ``peak_rss_mib``, model calls (``turns``) and the operator's own durations. CPU seconds per
component come from /proc (task processes are reaped by the LocalExecutor workers, so they are the workers'
``cutime + cstime``). Afterwards a fresh process measures what a task process imports (``-X importtime``).

Targets: (a) real DAG at latency 0 / no-op DAG <= 1.3; (b) parallel efficiency >= 0.8 at latency 2 after
subtracting the no-op floor; (c) peak RSS of a task process <= 250 MiB. Exit status 0 unless the set-up
failed (2; missed targets are reported, not fatal); 130 on Ctrl-C, 143 on SIGTERM. Everything started is
stopped on exit (process groups and their descendants; KILL after 20 s) and the PostgreSQL database dropped.

A task probe (bench/dags/bench_task_probe.py) then times the operator's set-up steps in a task process and runs
its execute() under cProfile; ``--preload MODULES`` is an experiment: the scheduler imports MODULES at start
(a sitecustomize.py on its PYTHONPATH), so the LocalExecutor's forked task processes inherit them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
REAL_DAG = "parallel_maintenance_poc"
NOOP_DAG = "parallel_maintenance_noop"
PROBE_DAG = "bench_task_probe"
PG_DSN = os.environ.get("WORKTREE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_RATIO, TARGET_EFF, TARGET_RSS = 1.3, 0.9, 250.0
CLK = os.sysconf("SC_CLK_TCK")


class SetupError(Exception):
    """The bench could not set up or run (exit 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ processes
def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu s, reaped children's cpu s) of a live, non-zombie pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    if rest[0] == "Z":
        return None
    own = (int(rest[11]) + int(rest[12])) / CLK
    reaped = (int(rest[13]) + int(rest[14])) / CLK
    return int(rest[1]), own, reaped


def _all_stats() -> dict[int, tuple[int, float, float]]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st is not None:
                out[int(d)] = st
    return out


def _descendants(root: int, stats: dict[int, tuple[int, float, float]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def machine_busy_s() -> float:
    """CPU seconds (all cores) spent not idle since boot."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / CLK


class Processes:
    """Long-lived processes, each in its own session (process group); stopped as a whole on exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], logfile: Path, env: dict[str, str]) -> subprocess.Popen:
        fh = open(logfile, "ab")
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        fh.close()
        self.procs[name] = p
        return p

    def stop(self, name: str, grace: float = 20.0) -> None:
        p = self.procs.pop(name, None)
        if p is not None:
            self._stop([p], grace)

    def stop_all(self, grace: float = 20.0) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        self._stop(procs, grace)

    @staticmethod
    def _stop(procs: list[subprocess.Popen], grace: float) -> None:
        stats = _all_stats()
        pids = set()
        for p in procs:
            if p.poll() is None:
                pids.add(p.pid)
                pids.update(_descendants(p.pid, stats))
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        for pid in pids:  # descendants that made their own group
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            for p in procs:
                p.poll()
            if not any(_proc_stat(pid) for pid in pids):
                break
            time.sleep(0.3)
        for pid in pids:
            if _proc_stat(pid):
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                    try:
                        kill()
                    except OSError:
                        pass
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far per component (live processes' own time + what they reaped)."""
        stats = _all_stats()
        snap: dict[str, float] = {"machine (all processes)": machine_busy_s()}
        for name, p in self.procs.items():
            if p.poll() is not None or p.pid not in stats:
                continue
            tree = [p.pid, *_descendants(p.pid, stats)]
            if name == "scheduler":
                _, own, reaped = stats[p.pid]
                workers = [c for c in tree if stats[c][0] == p.pid]
                snap["scheduler"] = own
                snap["executor workers (supervisors)"] = sum(stats[w][1] for w in workers)
                # task processes: reaped by their supervisor (the worker), plus any still running
                snap["task processes (+ their git etc.)"] = (
                    sum(stats[w][2] for w in workers)
                    + sum(stats[c][1] + stats[c][2] for c in tree if c != p.pid and c not in workers)
                )
                snap["scheduler"] += reaped
            else:
                snap[name] = sum(stats[c][1] + stats[c][2] for c in tree)
        return snap


# ------------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{url}: the process exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    raise SetupError(f"{url} did not answer within {timeout:.0f}s")


def parse_ts(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], p: float) -> float:
    values = sorted(v for v in values if v is not None)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class MetadataDB:
    """Read-only queries on Airflow's dag_run and task_instance tables (no Airflow import here)."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        if self.kind == "postgres":
            import psycopg2

            con = psycopg2.connect(self.target, connect_timeout=5)
            try:
                with con.cursor() as cur:
                    cur.execute(sql.replace("?", "%s"), args)
                    return cur.fetchall()
            finally:
                con.close()
        con = sqlite3.connect(f"file:{self.target}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def dag_run(self, dag_id: str, run_id: str) -> dict | None:
        rows = self._rows("SELECT state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?",
                          (dag_id, run_id))
        if not rows:
            return None
        state, queued, start, end = rows[0]
        return {"state": str(state), "queued_at": parse_ts(queued), "start": parse_ts(start), "end": parse_ts(end)}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        rows = self._rows(
            "SELECT task_id, map_index, state, try_number, queued_dttm, start_date, end_date FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index", (dag_id, run_id))
        return [{"task_id": r[0], "map_index": r[1], "state": str(r[2]), "try_number": r[3],
                 "queued": parse_ts(r[4]), "start": parse_ts(r[5]), "end": parse_ts(r[6])} for r in rows]


def shard_rows(shard_db: Path, run_id: str) -> list[dict]:
    if not shard_db.exists():
        return []
    con = sqlite3.connect(f"file:{shard_db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT shard_id, status, attempt, started_at, completed_at, result_summary "
                           "FROM shard_status WHERE run_id = ?", (run_id,)).fetchall()
    finally:
        con.close()
    out = []
    for sid, status, attempt, started, completed, summary in rows:
        s = json.loads(summary) if summary else {}
        out.append({"shard_id": sid, "status": status, "attempt": attempt, "started": parse_ts(started),
                    "completed": parse_ts(completed), "turns": s.get("turns"), "peak_rss_mib": s.get("peak_rss_mib"),
                    "durations": s.get("durations") or {}})
    return out


# ------------------------------------------------------------------------------------------ the bench
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.py = sys.executable
        self.bin = Path(self.py).parent
        self.airflow = [str(self.bin / "airflow")] if (self.bin / "airflow").exists() else [self.py, "-m", "airflow"]
        self.procs = Processes()
        self.home: Path | None = None
        self.pg_db: str | None = None
        self.env: dict[str, str] = {}
        self.results: dict[str, dict] = {}

    # ---------------------------------------------------------------- set-up
    def af(self, *argv: str, timeout: float = 300) -> str:
        p = subprocess.run([*self.airflow, *argv], env=self.env, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise SetupError(f"airflow {' '.join(argv)} failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
        return p.stdout

    def pg_admin(self, sql: str) -> None:
        import psycopg2

        con = psycopg2.connect(self.args.pg_dsn, connect_timeout=3)
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    def choose_db(self) -> str:
        kind = self.args.metadata_db
        if kind in ("auto", "postgres"):
            try:
                import asyncpg  # noqa: F401
                import psycopg2  # noqa: F401

                self.pg_admin("SELECT 1")
                return "postgres"
            except Exception as exc:  # noqa: BLE001
                if kind == "postgres":
                    raise SetupError(f"--metadata-db postgres: {exc}") from exc
                log(f"PostgreSQL not usable ({exc}); metadata database: SQLite")
        return "sqlite"

    def setup(self) -> None:
        a = self.args
        self.home = Path(tempfile.mkdtemp(prefix="wt-bench-e2e-"))
        logs = self.home / "logs" / "bench"
        logs.mkdir(parents=True)
        dags = self.home / "dags"
        dags.mkdir()
        shutil.copy(PROJECT / "airflow_provider_worktree" / "example_dags" / f"{REAL_DAG}.py", dags)
        shutil.copy(PROJECT / "bench" / "dags" / f"{NOOP_DAG}.py", dags)
        shutil.copy(PROJECT / "bench" / "dags" / f"{PROBE_DAG}.py", dags)
        log(f"AIRFLOW_HOME={self.home}")

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k not in ("WORKTREE_REPO",
                                                                                                  "AIRFLOW_CONFIG")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(a.parallel + 4),  # the DAG's max_active_tis_per_dagrun is the limit
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(16, a.parallel + 4)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "WORKTREE_PARALLEL_LIMIT": str(a.parallel),
            "WORKTREE_MAX_PARALLEL": str(a.parallel),  # Airflow itself holds the limit: no task waits for a slot
            "GIT_TERMINAL_PROMPT": "0",
            "PATH": f"{self.bin}:{env.get('PATH', '')}",
        })
        self.db_kind = self.choose_db()
        if self.db_kind == "postgres":
            self.pg_db = f"wt_bench_e2e_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
            self.pg_admin(f'CREATE DATABASE "{self.pg_db}"')
            base = a.pg_dsn.rsplit("/", 1)[0]
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = base.replace("postgresql:", "postgresql+psycopg2:", 1) + "/" + self.pg_db
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = base.replace("postgresql:", "postgresql+asyncpg:", 1) + "/" + self.pg_db
            self.meta = MetadataDB("postgres", f"{base}/{self.pg_db}")
            log(f"metadata database: PostgreSQL {self.pg_db} (fresh; dropped at exit)")
        else:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{self.home}/airflow.db"
            self.meta = MetadataDB("sqlite", str(self.home / "airflow.db"))
            log("metadata database: SQLite")

        # the offline Messages API on a fixed port, so its restart with another latency keeps the connection
        self.api_port = free_port()
        env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"] = json.dumps({
            "conn_type": "anthropic", "host": f"http://127.0.0.1:{self.api_port}",
            "password": "sk-offline-test-double-not-a-key"})
        self.env = env

        # demo repository: one module per shard (max_files_per_shard=1)
        self.repo = self.home / "repo"
        p = subprocess.run([self.py, str(PROJECT / "scripts" / "demo_repo.py"), "--dest", str(self.repo),
                            "--modules", str(a.shards)], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SetupError(f"scripts/demo_repo.py failed: {p.stderr[-800:]}")
        log(f"demo repository with {a.shards} modules: {self.repo}")

        t = time.monotonic()
        self.af("db", "migrate", timeout=600)
        log(f"airflow db migrate ({time.monotonic() - t:.0f}s)")
        t = time.monotonic()
        self.af("dags", "reserialize", timeout=600)
        log(f"airflow dags reserialize ({time.monotonic() - t:.0f}s)")
        listed = self.af("dags", "list", "-o", "plain")
        for dag in (REAL_DAG, NOOP_DAG, PROBE_DAG):
            if not re.search(rf"^{dag}\s", listed, re.M):
                raise SetupError(f"DAG {dag} is not registered: {listed[-800:]}")

        exec_port = free_port()
        self.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{exec_port}/execution/"
        p = self.procs.start("api-server", [*self.airflow, "api-server", "--apps", "execution", "-H", "127.0.0.1",
                                            "-p", str(exec_port), "-w", "1"], logs / "api_server.log", self.env)
        wait_http(f"http://127.0.0.1:{exec_port}/execution/health", 180, p)
        log(f"api-server (execution API) on 127.0.0.1:{exec_port}")
        sched_env = dict(self.env)
        if self.args.preload:  # experiment: import modules in the scheduler, so forked task processes inherit them
            site = self.home / "preload"
            site.mkdir()
            (site / "sitecustomize.py").write_text(
                "".join(f"import {m}\n" for m in self.args.preload.split(",") if m.strip()))
            sched_env["PYTHONPATH"] = f"{site}:{sched_env['PYTHONPATH']}" if sched_env.get("PYTHONPATH") else str(site)
            log(f"scheduler preloads {self.args.preload} (sitecustomize)")
        if self.args.forkserver_preload:  # Airflow 3.3's own knob: LocalExecutor workers start from a forkserver
            sched_env["AIRFLOW__SCHEDULER__MP_START_METHOD"] = "forkserver"  # that imported these modules once
            sched_env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] = self.args.forkserver_preload
            log(f"scheduler: mp_start_method=forkserver, mp_forkserver_preload={self.args.forkserver_preload}")
        self.procs.start("scheduler", [*self.airflow, "scheduler"], logs / "scheduler.log", sched_env)
        self.procs.start("dag-processor", [*self.airflow, "dag-processor"], logs / "dag_processor.log", self.env)
        log("scheduler and dag-processor started")
        self.logs = logs

    def start_offline_api(self, latency: float) -> None:
        self.procs.stop("offline-api", grace=5)
        port_file = self.logs / f"offline_api_{latency:g}.port"
        p = self.procs.start("offline-api", [self.py, "-m", "airflow_provider_worktree.testing", "--port",
                                             str(self.api_port), "--port-file", str(port_file), "--latency",
                                             str(latency)], self.logs / "offline_api.log", self.env)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"the offline Messages API server did not start: see {self.logs}/offline_api.log")
            time.sleep(0.1)
        log(f"offline Messages API test double on 127.0.0.1:{self.api_port}, latency {latency:g}s")

    # ---------------------------------------------------------------- one run
    def run(self, label: str, dag_id: str) -> dict:
        a = self.args
        conf = {"repo": str(self.repo), "task": "todo", "max_files_per_shard": 1, "max_shards": a.shards,
                "parallel_limit": a.parallel}
        run_id = f"bench_{label}_{time.strftime('%H%M%S')}"
        time.sleep(a.settle)  # let the previous run's processes go idle
        cpu0, la0 = self.procs.cpu_snapshot(), os.getloadavg()[0]
        self.af("dags", "trigger", dag_id, "--run-id", run_id, "-c", json.dumps(conf))
        log(f"{label}: triggered {dag_id} run {run_id}")
        deadline = time.monotonic() + a.timeout
        last = 0.0
        while True:
            dr = self.meta.dag_run(dag_id, run_id)
            state = (dr or {}).get("state", "missing").split(".")[-1].lower()
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise SetupError(f"{label}: run {run_id} did not finish within {a.timeout:.0f}s (state {state})")
            for name, p in self.procs.procs.items():
                if p.poll() is not None:
                    raise SetupError(f"{name} exited with {p.returncode} during {label}: see {self.logs}")
            if time.monotonic() - last > 15:
                last = time.monotonic()
                done = sum(1 for r in shard_rows(self.home / "shard_status.db", run_id) if r["status"] == "completed")
                log(f"{label}: {state}, {done} shard(s) completed")
            time.sleep(0.5)
        cpu1, la1 = self.procs.cpu_snapshot(), os.getloadavg()[0]
        tis = self.meta.task_instances(dag_id, run_id)
        shards = shard_rows(self.home / "shard_status.db", run_id)
        wall = secs(dr["start"], dr["end"])
        res = {"label": label, "dag_id": dag_id, "run_id": run_id, "state": state, "wall_s": wall,
               "queued_to_start_s": secs(dr["queued_at"], dr["start"]), "tis": tis, "shards": shards,
               "cpu": {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}, "load": (la0, la1)}
        bad = [t for t in tis if t["state"].split(".")[-1].lower() != "success"]
        log(f"{label}: {state} in {wall:.1f}s ({len(tis)} task instances, {len(bad)} not successful)")
        self.results[label] = res
        return res

    def run_xargs(self, label: str) -> dict:
        """The same shards through the core API, one process per shard under ``xargs -P parallel`` (no Airflow):
        the baseline a plain shell loop gives, against the offline server at its current latency."""
        from airflow_provider_worktree.core.store import ShardStore
        from airflow_provider_worktree.core.planning import plan_shards

        a = self.args
        db = self.home / "xargs_shard_status.db"
        run_id = f"bench_{label}_{time.strftime('%H%M%S')}"
        shards = plan_shards(self.repo, "todo", max_files=1, max_shards=a.shards)
        store = ShardStore.open(str(db))
        store.register_shards(run_id, shards)
        store.close()
        time.sleep(a.settle)
        cpu0, la0 = machine_busy_s(), os.getloadavg()[0]
        argv = ["xargs", "-P", str(a.parallel), "-n", "1", self.py, str(PROJECT / "bench" / "xargs_shard.py"),
                "--db", str(db), "--repo", str(self.repo), "--root", str(self.home / "xargs_worktrees"),
                "--run-id", run_id, "--base-url", f"http://127.0.0.1:{self.api_port}"]
        log(f"{label}: {len(shards)} shards through the core API, xargs -P {a.parallel}")
        t = time.monotonic()
        p = subprocess.run(argv, input="\n".join(s["shard_id"] for s in shards), text=True, capture_output=True,
                           env=self.env, timeout=a.timeout)
        wall = time.monotonic() - t
        rows = shard_rows(db, run_id)
        done = sum(1 for r in rows if r["status"] == "completed")
        state = "success" if p.returncode == 0 and done == len(shards) else "failed"
        if state != "success":
            log(f"{label}: xargs exited {p.returncode}: {p.stderr[-800:]}")
        res = {"label": label, "dag_id": "(xargs, core API)", "run_id": run_id, "state": state, "wall_s": wall,
               "tis": [], "shards": rows, "cpu": {"machine (all processes)": machine_busy_s() - cpu0},
               "load": (la0, os.getloadavg()[0])}
        log(f"{label}: {state} in {wall:.1f}s ({done}/{len(shards)} shards completed)")
        self.results[label] = res
        return res

    # ---------------------------------------------------------------- task-process probe
    def probe(self) -> dict:
        """Run bench_task_probe (two task processes of the same executor) and read what they wrote."""
        for name in ("probe_steps.json", "probe_profiled.json"):
            (self.home / name).unlink(missing_ok=True)
        run_id = f"bench_probe_{time.strftime('%H%M%S')}"
        self.af("dags", "trigger", PROBE_DAG, "--run-id", run_id, "-c", json.dumps({"repo": str(self.repo)}))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            dr = self.meta.dag_run(PROBE_DAG, run_id)
            state = (dr or {}).get("state", "missing").split(".")[-1].lower()
            if state in ("success", "failed"):
                break
            time.sleep(0.5)
        out: dict = {"state": state}
        for key, name in (("steps", "probe_steps.json"), ("profiled", "probe_profiled.json")):
            f = self.home / name
            if f.exists():
                out[key] = json.loads(f.read_text())
        log(f"probe run {run_id}: {state}")
        return out

    # ---------------------------------------------------------------- profile of a task process's imports
    def profile(self) -> dict:
        """In a fresh process with the bench environment: what importing each DAG file and the runner's SDK costs,
        on top of airflow.sdk and the task runner (which every task process has)."""
        code = r"""
import importlib.util, json, os, sys, time
def mark(name):
    print("@@MARK " + name, file=sys.stderr, flush=True)
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
out = {}
t = time.perf_counter(); mark("base")
import airflow.sdk, airflow.sdk.execution_time.task_runner
out["base"] = time.perf_counter() - t
t = time.perf_counter(); mark("noop_dag")
load(sys.argv[1], "noop_dag"); out["noop_dag"] = time.perf_counter() - t
t = time.perf_counter(); mark("real_dag")
load(sys.argv[2], "real_dag"); out["real_dag"] = time.perf_counter() - t
t = time.perf_counter(); mark("anthropic_hook")
from airflow.providers.anthropic.hooks.anthropic import AnthropicHook
out["anthropic_hook"] = time.perf_counter() - t
t = time.perf_counter(); mark("anthropic_client")
try:
    AnthropicHook(conn_id="anthropic_default").get_conn(); out["anthropic_client"] = time.perf_counter() - t
except Exception as exc:
    out["anthropic_client_error"] = repr(exc)[:200]
t = time.perf_counter(); mark("shard_store")
try:
    from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
    s = ShardStatusHook().get_store(); s.list_shards(run_id="none"); out["shard_store"] = time.perf_counter() - t
    t = time.perf_counter(); s2 = ShardStatusHook().get_store(); s2.list_shards(run_id="none")
    out["shard_store_again"] = time.perf_counter() - t
except Exception as exc:
    out["shard_store_error"] = repr(exc)[:200]
mark("end")
import resource
out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""
        dags = self.home / "dags"
        p = subprocess.run([self.py, "-X", "importtime", "-c", code, str(dags / f"{NOOP_DAG}.py"),
                            str(dags / f"{REAL_DAG}.py")], env=self.env, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            return {"error": p.stderr[-1500:]}
        out = json.loads(p.stdout.strip().splitlines()[-1])
        # heaviest top-level imports (least indented lines) of each step, by cumulative time
        step, heavy = None, {}
        for line in p.stderr.splitlines():
            if line.startswith("@@MARK "):
                step = line.split()[1]
                heavy[step] = []
                continue
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m and step:
                heavy[step].append((len(m.group(3)), int(m.group(2)) / 1e6, m.group(4)))
        tops = {}
        for step, rows in heavy.items():
            if not rows:
                continue
            depth = min(r[0] for r in rows)
            tops[step] = sorted(((c, n) for d, c, n in rows if d == depth), reverse=True)[:6]
        out["top_imports"] = tops
        return out

    # ---------------------------------------------------------------- report
    def report(self, prof: dict | None) -> None:
        a, R = self.args, self.results
        print()
        print(f"== End-to-end benchmark: {a.shards} shards, parallel limit {a.parallel}, metadata DB {self.db_kind}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}"
              + (f", scheduler preloads {a.preload}" if a.preload else ""))
        hdr = ("run", "state", "wall s", "TIs ok/all", "shards done", "task wall p50", "slot gap p50", "op total p50", "model p50",
               "calls/shard", "peak RSS max")
        print(" | ".join(hdr))
        for label, r in R.items():
            mapped = [t for t in r["tis"] if t["task_id"] == "maintain"]
            walls = [secs(t["start"], t["end"]) for t in mapped]
            gaps = slot_gaps(mapped)
            durs = [s["durations"] for s in r["shards"]]
            tot = [d.get("total_s") for d in durs if d.get("total_s") is not None]
            model = [d.get("model_s") for d in durs if d.get("model_s") is not None]
            turns = [s["turns"] for s in r["shards"] if s["turns"] is not None]
            rss = [s["peak_rss_mib"] for s in r["shards"] if s["peak_rss_mib"] is not None]
            print(" | ".join([
                label, r["state"], f"{r['wall_s']:.1f}",
                f"{sum(1 for t in r['tis'] if t['state'].split('.')[-1].lower() == 'success')}/{len(r['tis'])}",
                f"{sum(1 for s in r['shards'] if s['status'] == 'completed')}/{len(r['shards'])}" if label != "noop" else "-",
                f"{med(walls):.2f}s", f"{med(gaps):.2f}s",
                f"{med(tot):.2f}s" if tot else "-", f"{med(model):.2f}s" if model else "-",
                f"{statistics.mean(turns):.2f}" if turns else "-", f"{max(rss):.1f} MiB" if rss else "-"]))
        print()
        print("CPU seconds per run (from /proc; 'machine' includes everything else running on the host):")
        keys = sorted({k for r in R.values() for k in r["cpu"]})
        print("component | " + " | ".join(R))
        for k in keys:
            print(f"{k} | " + " | ".join(f"{r['cpu'].get(k, 0.0):.1f}" for r in R.values()))
        print("load average (start/end) | " + " | ".join(f"{r['load'][0]:.1f}/{r['load'][1]:.1f}" for r in R.values()))
        print("task-process CPU per task instance | " + " | ".join(
            f"{r['cpu'].get('task processes (+ their git etc.)', 0.0) / max(1, len(r['tis'])):.2f}s"
            for r in R.values()) + "")

        # operator phase durations
        for label, r in R.items():
            if not r["shards"] or not any(s["durations"] for s in r["shards"]):
                continue
            phases = sorted({k for s in r["shards"] for k in s["durations"]})
            print(f"{label}: operator phases p50 (p90): " + ", ".join(
                f"{k} {med([s['durations'].get(k) for s in r['shards']]):.2f} ({pct([s['durations'].get(k) for s in r['shards']], 90):.2f})"
                for k in phases))
            mapped = {t["map_index"]: t for t in r["tis"] if t["task_id"] == "maintain"}
            over = []
            for t in mapped.values():
                w = secs(t["start"], t["end"])
                over.append(w)
            tot = med([s["durations"].get("total_s") for s in r["shards"]])
            print(f"{label}: task wall p50 {med(over):.2f}s - operator run_shard total p50 {tot:.2f}s = "
                  f"{med(over) - tot:.2f}s outside run_shard (task start, DAG parse, imports, hooks, XCom, finish)")

        # targets
        print()
        noop, r0 = R.get("noop"), R.get("real_L0")
        rl = R.get(f"real_L{a.latency:g}")
        verdicts = []
        if noop and r0:
            ratio = r0["wall_s"] / noop["wall_s"]
            verdicts.append(("(a) wall real latency 0 / no-op", f"{r0['wall_s']:.1f}s / {noop['wall_s']:.1f}s = {ratio:.2f}x",
                             f"<= {TARGET_RATIO}", ratio <= TARGET_RATIO))
        if noop and rl and rl["shards"]:
            floor = noop["wall_s"]
            turns = [s["turns"] or 0 for s in rl["shards"]]
            model = [s["durations"].get("model_s") or 0.0 for s in rl["shards"]]
            n = len(rl["shards"])
            ideal_issue = n * med(model) / a.parallel
            ideal_calls = sum(turns) * a.latency / a.parallel
            net = rl["wall_s"] - floor
            for name, ideal in (("issue formula: N x model_s p50 / P", ideal_issue),
                                ("calls x latency: sum(turns) x L / P", ideal_calls)):
                eff = ideal / net if net > 0 else float("nan")
                verdicts.append((f"(b) efficiency, ideal = {name}",
                                 f"{ideal:.1f}s / ({rl['wall_s']:.1f}s - {floor:.1f}s floor) = {eff:.2f} "
                                 f"(raw, no floor: {ideal / rl['wall_s']:.2f})", f">= {a.target_eff}",
                                 eff >= a.target_eff))
            literal = n * a.latency / a.parallel
            print(f"(the issue's formula taken literally, {n} x {a.latency:g}s / {a.parallel} = {literal:.1f}s, assumes one "
                  f"model call per shard; the rule-based model makes {statistics.mean(turns):.2f} calls per shard)")
        rx = R.get(f"xargs_L{a.latency:g}")
        if rx and rx["shards"]:
            ideal = sum(s["turns"] or 0 for s in rx["shards"]) * a.latency / a.parallel
            verdicts.append(("(d) baseline: xargs -P over the core API, ideal = sum(turns) x L / P",
                             f"{ideal:.1f}s / {rx['wall_s']:.1f}s = {ideal / rx['wall_s']:.2f}", "(reference)", True))
            if rl:
                verdicts.append(("(e) Airflow DAG wall / xargs wall, same shards and latency",
                                 f"{rl['wall_s']:.1f}s / {rx['wall_s']:.1f}s = {rl['wall_s'] / rx['wall_s']:.2f}x",
                                 "(reference)", True))
        rss = [s["peak_rss_mib"] for r in R.values() for s in r["shards"] if s["peak_rss_mib"] is not None]
        if rss:
            verdicts.append(("(c) peak RSS of a task process (max over shards)",
                             f"{max(rss):.1f} MiB (p50 {med(rss):.1f})", f"<= {TARGET_RSS:g} MiB", max(rss) <= TARGET_RSS))
        for name, value, target, ok in verdicts:
            print(f"{'MET   ' if ok else 'MISSED'} {name}: {value} (target {target})")

        if prof:
            print()
            if "error" in prof:
                print(f"import profile failed: {prof['error']}")
            else:
                print("Import profile of a fresh process (wall s; the task process pays the DAG file and, in the real "
                      "DAG, the Anthropic hook/client and the shard store):")
                for k in ("base", "noop_dag", "real_dag", "anthropic_hook", "anthropic_client", "shard_store",
                          "shard_store_again", "rss_mib"):
                    if k in prof:
                        print(f"  {k}: {prof[k]:.3f}")
                for k, v in prof.items():
                    if k.endswith("_error"):
                        print(f"  {k}: {v}")
                for step, rows in prof.get("top_imports", {}).items():
                    print(f"  heaviest imports in {step}: " + ", ".join(f"{n} {c:.2f}s" for c, n in rows))
            probe = prof.get("probe") or {}
            if probe.get("steps"):
                print("Set-up steps of the operator, timed one by one in a task process of the same executor "
                      "(bench_task_probe.steps):")
                for name, dt, rss in probe["steps"]:
                    print(f"  {dt:7.3f}s  (peak RSS {rss:.0f} MiB)  {name}")
            if probe.get("profiled"):
                pr = probe["profiled"]
                print(f"ClaudeMaintenanceOperator.execute on one shard under cProfile in a task process: {pr['wall_s']:.2f}s "
                      f"wall (cProfile inflates Python-heavy parts); run_shard durations {pr.get('durations')}")
                print("  heaviest calls by cumulative time (package, hooks, connections):")
                shown = 0
                for ct, tt, nc, where in pr["top"]:
                    if shown >= 25 or ct < 0.02:
                        break
                    if re.search(r"airflow_provider_worktree|hooks/anthropic|get_connection|anthropic/__init__|"
                                 r"comms\.py|_get_connection|secrets|run_git|subprocess\.py:\d+\(communicate\)", where):
                        print(f"  {ct:7.3f}s cum {tt:6.3f}s own {nc:>6} calls  {where}")
                        shown += 1
            elif probe:
                print(f"task probe: {probe.get('state')}, no output")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({"results": R, "profile": prof}, default=str, indent=1))
            print(f"\nraw figures: {self.args.json}")

    def cleanup(self) -> None:
        self.procs.stop_all()
        if self.pg_db:
            try:
                self.pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop the PostgreSQL database {self.pg_db}: {exc}")
        if self.home and not self.args.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)
        elif self.home:
            log(f"kept {self.home}")


def slot_gaps(tis: list[dict]) -> list[float]:
    """For each mapped task instance (after the first P), the time from the latest end of a task instance before its
    queueing to its own start: how long a freed slot stays empty (scheduling + executor + task start)."""
    ends = sorted(t["end"] for t in tis if t["end"])
    gaps = []
    for t in tis:
        if not t["start"]:
            continue
        before = [e for e in ends if e <= t["start"]]
        if before:
            gaps.append((t["start"] - before[-1]).total_seconds())
    return gaps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--latency", type=float, default=2.0, help="offline server latency of the second real run (s)")
    ap.add_argument("--metadata-db", choices=("auto", "postgres", "sqlite"), default="auto")
    ap.add_argument("--pg-dsn", default=PG_DSN)
    ap.add_argument("--runs", default="noop,real0,realL,xargs",
                    help="comma list of noop, real0, realL, xargs (default: all, in order)")
    ap.add_argument("--target-eff", type=float, default=TARGET_EFF, help="efficiency target at --latency")
    ap.add_argument("--timeout", type=float, default=600, help="seconds each DAG run may take")
    ap.add_argument("--settle", type=float, default=5, help="seconds of quiet before each run")
    ap.add_argument("--no-profile", action="store_true", help="skip the import profile")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME (logs, shard DB)")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--forkserver-preload", default="",
                    help="set [scheduler] mp_start_method=forkserver and mp_forkserver_preload=MODULES for the "
                         "scheduler (the deployment recipe in docs/benchmarks.md), e.g. "
                         "airflow.providers.anthropic.hooks.anthropic,airflow_provider_worktree.operators.maintenance")
    ap.add_argument("--preload", default="", help="experiment: modules the scheduler imports at start (comma list, "
                    "e.g. airflow.providers.anthropic.hooks.anthropic); LocalExecutor task processes are forks of it")
    args = ap.parse_args(argv)
    if args.shards < 1 or args.parallel < 1 or args.latency < 0:
        ap.error("--shards and --parallel must be >= 1, --latency >= 0")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # explicit handlers: a shell starts background jobs with SIGINT ignored, and Python keeps it that way
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(args)
    t0 = time.monotonic()
    rc = 0
    try:
        bench.setup()
        for which in [w.strip() for w in args.runs.split(",") if w.strip()]:
            if which == "noop":
                bench.run("noop", NOOP_DAG)
            elif which == "real0":
                bench.start_offline_api(0.0)
                bench.run("real_L0", REAL_DAG)
            elif which == "realL":
                bench.start_offline_api(args.latency)
                bench.run(f"real_L{args.latency:g}", REAL_DAG)
            elif which == "xargs":
                bench.start_offline_api(args.latency)
                bench.run_xargs(f"xargs_L{args.latency:g}")
            else:
                raise SetupError(f"--runs: unknown run {which!r}")
        probe = None
        if not args.no_profile:
            bench.start_offline_api(0.0)
            probe = bench.probe()
        bench.procs.stop_all()  # the import profile runs on a quiet machine
        prof = None if args.no_profile else bench.profile()
        if probe is not None and prof is not None:
            prof["probe"] = probe
        bench.report(prof)
    except SetupError as exc:
        log(f"SETUP ERROR: {exc}")
        if bench.results:
            try:
                bench.report(None)
            except Exception:  # noqa: BLE001
                pass
        rc = 2
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'SIGINT'}): stopping everything this bench started")
        rc = 143 if str(exc) == "SIGTERM" else 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        log(f"bench took {time.monotonic() - t0:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
