"""Bringing the CeleryExecutor deployment up: pre-flight, the environment, services, workers, readiness."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.request

from distrun.constants import DAG_ID, POOL, PROJECT, CannotRun
from distrun.services import RabbitBroker, RedisBroker
from harness.processes import free_port, log, run


class DeploymentSetup:
    """Set-up of :class:`~.deployment.Deployment`."""

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
