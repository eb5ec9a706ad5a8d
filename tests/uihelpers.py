"""A real Airflow api-server and a headless Chromium for the browser tests (test_ui.py, test_ui_trigger_forms.py).

``AirflowUI.start(tmp)`` makes an isolated AIRFLOW_HOME (the example DAGs in its dags folder, serialized into a
migrated SQLite metadata database, the simple auth manager with fixed users and passwords), starts
``airflow api-server`` on a free port and waits for it. ``browser()`` starts Debian's /usr/bin/chromium through
the ``playwright`` package (``playwright install`` is never needed nor run); ``ui.page(browser, user)`` is a page
signed in as ``user`` with the Airflow UI's own token cookie. ``skip_reason()`` says why the tests cannot run here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import airflow_home_env

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = os.environ.get("WORKTREE_CHROMIUM", "/usr/bin/chromium")
#: Where screenshots go (test artefacts); WORKTREE_UPDATE_SCREENSHOTS=1 also copies them to docs/img/.
ARTIFACTS = Path(os.environ.get("WORKTREE_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
DOCS_IMG = ROOT / "docs" / "img"

#: user -> (role, password). ``nobody`` has no role: a valid token, no permission at all.
USERS = {"admin": ("admin", "admin-pw"), "operator": ("op", "operator-pw"), "viewer": ("viewer", "viewer-pw"),
         "nobody": ("", "nobody-pw")}


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WORKTREE_CHROMIUM)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of every Airflow command of this home (nothing inherited from the caller's Airflow)."""
    return airflow_home_env(
        home,
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{role}" for u, (role, _) in USERS.items()),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API_AUTH__JWT_SECRET="ui-test-jwt-secret-" + "x" * 32,
        AIRFLOW__API__SECRET_KEY="ui-test-secret-key",
        AIRFLOW__CORE__FERNET_KEY="",
        **extra,
    )


class AirflowUI:
    """One api-server with the provider's plugin, in its own AIRFLOW_HOME."""

    def __init__(self, home: Path, port: int, proc: subprocess.Popen, env: dict[str, str]) -> None:
        self.home, self.port, self.proc, self.env = home, port, proc, env
        self.base_url = f"http://127.0.0.1:{port}"
        self._tokens: dict[str, str] = {}

    # ------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, tmp: Path, **extra_env: str) -> "AirflowUI":
        home = tmp / "airflow-home"
        (home / "dags").mkdir(parents=True)
        for dag_file in (ROOT / "airflow_provider_worktree" / "example_dags").glob("*.py"):
            shutil.copy(dag_file, home / "dags" / dag_file.name)
        (home / "passwords.json").write_text(json.dumps({u: pw for u, (_, pw) in USERS.items()}))
        port = free_port()
        env = airflow_env(home, AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}", **extra_env)
        for cmd in (["db", "migrate"], ["dags", "reserialize"]):
            proc = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"airflow {' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
        log = open(home / "api-server.log", "w")
        proc = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ui = cls(home, port, proc, env)
        ui._wait_ready()
        return ui

    def _wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the api-server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the api-server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.home / "api-server.log").read_text()[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    # ------------------------------------------------------------------------------------ HTTP
    def token(self, user: str) -> str:
        """A JWT for ``user`` from the api-server's own login endpoint (POST /auth/token)."""
        if user not in self._tokens:
            status, body = self.request("POST", "/auth/token", body={"username": user, "password": USERS[user][1]})
            if status not in (200, 201):
                raise RuntimeError(f"login of {user} failed: {status} {body}")
            self._tokens[user] = body["access_token"]
        return self._tokens[user]

    def request(self, method: str, path: str, *, user: str | None = None, token: str | None = None,
                body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body or text) of one request, as ``user`` (a bearer token) when given."""
        hdrs = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if user is not None:
            token = self.token(user)
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base_url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def set_connection(self, conn_id: str, **fields: Any) -> None:
        """Create or replace an Airflow connection through the REST API (as admin)."""
        self.request("DELETE", f"/api/v2/connections/{conn_id}", user="admin")
        status, body = self.request("POST", "/api/v2/connections", user="admin",
                                    body={"connection_id": conn_id, **fields})
        if status not in (200, 201):
            raise RuntimeError(f"creating connection {conn_id} failed: {status} {body}")

    # ------------------------------------------------------------------------------------ browser
    def page(self, browser: Any, user: str | None, *, width: int = 1400, height: int = 900) -> Any:
        """A new page (own context) signed in as ``user`` through the UI's token cookie; None: signed out."""
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(90_000)  # the Airflow UI on a loaded 2-core machine
        if user is not None:
            context.add_cookies([{"name": "_token", "value": self.token(user), "url": self.base_url}])
        return context.new_page()


def launch_browser() -> tuple[Any, Any]:
    """(playwright, browser): headless Debian Chromium. Stop both with ``close_browser``."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                 args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
    return pw, browser


def close_browser(pw: Any, browser: Any) -> None:
    try:
        browser.close()
    finally:
        pw.stop()


def screenshot(page: Any, name: str, *, full_page: bool = False, locator: Any = None) -> Path:
    """Save a screenshot as a test artefact (ARTIFACTS/ui/NAME.png); with WORKTREE_UPDATE_SCREENSHOTS=1 also as
    docs/img/NAME.png, so the documentation shows what the tests saw."""
    out = ARTIFACTS / "ui" / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    (locator or page).screenshot(path=str(out), **({} if locator is not None else {"full_page": full_page}))
    if os.environ.get("WORKTREE_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, DOCS_IMG / out.name)
    return out


def seed_run(store: Any, run_id: str, *, running_worker: str = "worker-a:101", old_clock: Any = None) -> dict[str, str]:
    """Shards of every kind in ``run_id``: completed (with diffstat and verify output), failed, running (fresh
    heartbeat, by ``running_worker``), stale (claimed two hours ago through ``old_clock``, a store whose clock
    runs two hours behind) and pending. Returns shard id -> what it is."""
    files = {f"s{i:02d}": [f"pkg/mod_{i}.py", f"pkg/util_{i}.py"] for i in range(1, 7)}
    store.register_shards(run_id, [{"shard_id": sid, "task": "todo", "files": f} for sid, f in files.items()])
    lease = store.assign_shard(run_id, "worker-b:202", "s01")
    store.complete(lease, branch=f"worktree/{run_id}/s01", commit_sha="3f2a9c1d5e7b8a9c0d1e2f3a4b5c6d7e8f9a0b1c",
                   files_changed=["pkg/mod_1.py"], diffstat=" pkg/mod_1.py | 4 +++-\n 1 file changed, 3 insertions(+), 1 deletion(-)\n",
                   input_tokens=1200, output_tokens=340, cache_read_tokens=5000, cost_usd=0.0123,
                   summary={"stop_reason": "end_turn", "turns": 4,
                            "verify": {"ok": True, "returncode": 0, "output_tail": "....\n4 passed in 0.12s"}})
    lease = store.assign_shard(run_id, "worker-b:203", "s02")
    store.complete(lease, branch=f"worktree/{run_id}/s02", commit_sha="9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
                   files_changed=["pkg/mod_2.py", "pkg/util_2.py"], diffstat=" 2 files changed, 6 insertions(+)\n",
                   input_tokens=900, output_tokens=410, cost_usd=0.0101)
    lease = store.assign_shard(run_id, "worker-c:301", "s03")
    store.fail(lease, "verify failed: 1 failed, 3 passed (tests/test_mod_3.py::test_negative)",
               input_tokens=700, output_tokens=120, cost_usd=0.0061)
    store.assign_shard(run_id, running_worker, "s04")
    if old_clock is not None:
        old_clock.assign_shard(run_id, "worker-dead:404", "s05")
    return {"s01": "completed", "s02": "completed", "s03": "failed", "s04": "running", "s05": "stale",
            "s06": "pending"}


def old_store(target: str, hours: float = 2.0) -> Any:
    """A store on ``target`` whose clock runs ``hours`` behind: what it claims looks stale to everyone else."""
    import datetime as dt

    from airflow_provider_worktree.core.store import ShardStore

    return ShardStore.open(target, clock=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                           - dt.timedelta(hours=hours))
