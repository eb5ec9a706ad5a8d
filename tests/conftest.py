"""Shared fixtures: real git repositories, an isolated AIRFLOW_HOME, a real PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

# An isolated AIRFLOW_HOME for the whole session, set before anything imports Airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="wt-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_AIRFLOW_HOME / "dags"))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}")
os.environ.setdefault("GIT_AUTHOR_NAME", "Test Author")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
os.environ.setdefault("GIT_COMMITTER_NAME", "Test Author")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")

PG_DSN = os.environ.get("WORKTREE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie nobody reaped counts as dead: PID 1 here may not reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_while(condition, timeout: float = 5.0) -> bool:
    """Poll until ``condition()`` is false; False when it still holds after ``timeout`` seconds (a bound on the
    wait, not a speed check)."""
    import time

    deadline = time.monotonic() + timeout
    while condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_until_dead(pid: int, timeout: float = 5.0) -> bool:
    """Poll until ``pid`` is gone (or a zombie); False when it still runs after ``timeout`` seconds."""
    return wait_while(lambda: pid_alive(pid), timeout)


def airflow_home_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow command run in its own ``home`` (SQLite metadata database, dags folder
    ``home/dags``, no examples), with nothing inherited from the caller's Airflow settings or connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        **extra,
    )
    return env


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None, *, n_files: int = 0) -> Path:
    """Create a real git repository at ``path`` with ``files`` (relative path -> text) committed on main.

    ``n_files`` adds generated Python modules ``pkg/mod_<i>.py`` (one TODO each) to reach a size.
    """
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "Test Author")
    _git(path, "config", "user.email", "test@example.com")
    _git(path, "config", "commit.gpgsign", "false")
    files = dict(files or {"README.md": "# demo\n"})
    for i in range(n_files):
        files.setdefault(f"pkg/mod_{i:04d}.py", f"def f_{i}(x):\n    # TODO: handle negative x\n    return x + {i}\n")
    for rel, text in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def server():
    """The offline Messages API server (the package's test double), on a loopback port for one test."""
    from airflow_provider_worktree.testing import OfflineMessagesServer

    with OfflineMessagesServer() as srv:
        yield srv


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A small real repository with a few files and TODO markers, on branch main."""
    return make_repo(
        tmp_path / "repo",
        {
            "README.md": "# demo\n",
            "src/app.py": "def add(a, b):\n    # TODO: validate inputs\n    return a + b\n",
            "src/util.py": "def double(x):\n    return 2 * x  # FIXME: overflow?\n",
            "docs/guide.md": "Guide\n",
        },
    )


@pytest.fixture
def repo_factory(tmp_path: Path):
    """Build more repositories: ``repo_factory(name, files=None, n_files=0)``."""
    def _factory(name: str = "repo2", files: dict[str, str] | None = None, n_files: int = 0) -> Path:
        return make_repo(tmp_path / name, files, n_files=n_files)
    return _factory


def _pg_available() -> str | None:
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install 'airflow-provider-worktree[postgres]')"
    try:
        psycopg2.connect(PG_DSN, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        return f"no PostgreSQL server at {PG_DSN}: {str(exc).strip().splitlines()[0]}"
    return None


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database URL on the local server; dropped afterwards. Skips when absent."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    name = f"wt_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(PG_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def real_repo_factory(tmp_path: Path):
    """Real open-source code in a fresh git repository: ``real_repo_factory("requests")`` (see tests/realrepos.py)."""
    from realrepos import real_repo

    def _factory(name: str, version: str | None = None) -> Path:
        return real_repo(tmp_path / f"real-{name}", name, version)
    return _factory


@pytest.fixture(scope="module")
def browser():
    """A real Chromium (Debian's, driven by Playwright) for the browser tests of a module."""
    import uihelpers

    pw, chromium = uihelpers.launch_browser()
    yield chromium
    uihelpers.close_browser(pw, chromium)
