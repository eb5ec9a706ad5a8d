"""The smoke run's set-up phases: pre-flight, the isolated AIRFLOW_HOME, DAG registration, the repository clone, the model API."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.processes import free_port
from smokerun.checks import PROBE, fingerprint, git, version_tuple
from smokerun.constants import DAG_FILE, PROJECT, Fatal


class SetupPhases:
    """Set-up phases of :class:`~.run.SmokeRun` (uses its ``run``/``af``/``out``/``o``)."""

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
        dag_file = DAG_FILE.with_name(f"{self.dag_id}.py")
        if not dag_file.is_file():
            raise Fatal(f"DAG file not found: {dag_file} (run from a checkout of the project)")
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
        if re.search(rf"^{self.dag_id}\s", listed, re.M):
            out.success(f"DAG {self.dag_id} is registered (airflow dags list)")
        else:
            dag_file = DAG_FILE.with_name(f"{self.dag_id}.py").relative_to(PROJECT)
            out.error(f"DAG {self.dag_id} is not registered: check 'python {dag_file}' for errors")
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
