"""The services of the distributed run: a fresh PostgreSQL database, a Redis or RabbitMQ broker, git remotes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distrun.constants import MARKER_KEY, PROJECT, CannotRun
from harness.processes import log, run


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
