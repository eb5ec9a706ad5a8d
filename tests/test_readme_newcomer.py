"""The README's "Your first run in your own Airflow" block, run command by command on a fresh ``AIRFLOW_HOME`` (only
that variable set, as a user's shell has it), so the section a newcomer follows stays true (issue 22, item 3).

What cannot run here is swapped, and only that: the constraints URL (no network to GitHub) becomes a constraints
file made with ``pip freeze`` of this environment (the README's own offline advice) and pip runs with ``--dry-run
--report`` so the editable install of the suite stays; ports are free ones. Every other line runs as written: the
example DAGs land in Airflow's own default dags folder, the api-server, scheduler and dag-processor are started,
the offline server answers as ``anthropic_default``, the trigger with ``-c '{"repo": ...}'`` runs the DAG to
success, and ``airflow-worktree status`` and ``report`` show the run."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_repo

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECTION = "## Your first run in your own Airflow"


def readme_commands() -> list[str]:
    """The commands of the section's bash block: comments dropped, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_block_has_the_steps_a_newcomer_needs():
    cmds = readme_commands()
    text = "\n".join(cmds)
    for needed in ("--constraint", "apache-airflow==${AIRFLOW_VERSION}", "airflow-worktree example-dags",
                   "airflow api-server", "airflow scheduler", "airflow dag-processor",
                   "python -m airflow_provider_worktree.testing", "airflow connections add anthropic_default",
                   "airflow dags trigger parallel_maintenance_poc -c '{\"repo\": ", "airflow-worktree status"):
        assert needed in text, f"the README's first-run block lost {needed!r}"
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" in (ROOT / "README.md").read_text()


@pytest.mark.timeout(900)
def test_a_newcomer_follows_the_readme_to_a_green_run(tmp_path):
    home = tmp_path / "airflow"  # fresh; nothing but AIRFLOW_HOME set, like a user's shell
    repo = make_repo(tmp_path / "their-repo", n_files=3)
    api_port, model_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(AIRFLOW_HOME=str(home), PATH=f"{BIN}:{env.get('PATH', '')}",
               AIRFLOW__CORE__LOAD_EXAMPLES="False",  # the dag-processor parses only these DAGs (speed only)
               # the README's note for an api-server on another port than 8080
               AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{api_port}/execution/")
    # the user's Airflow exists already: its metadata database is migrated
    setup = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True,
                           timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(x for x in frozen.splitlines() if not x.startswith("airflow-provider-worktree")))
    report = tmp_path / "pip-report.json"

    background: list[subprocess.Popen] = []
    logs: dict[str, Path] = {}

    def run(cmd: str) -> str:
        cmd = cmd.replace("./airflow-provider-worktree", shlex.quote(str(ROOT)))
        cmd = re.sub(r'--constraint "https://[^"]+"', f"--constraint {shlex.quote(str(constraints))} --dry-run "
                     f"--quiet --report {shlex.quote(str(report))}", cmd)
        cmd = cmd.replace("--port 8080", f"--port {api_port}").replace("--port 8765", f"--port {model_port}")
        cmd = cmd.replace("127.0.0.1:8765", f"127.0.0.1:{model_port}").replace("/path/to/your/repo", str(repo))
        if cmd.endswith("&"):
            name = cmd.split()[1] if cmd.startswith("airflow ") else "offline-server"
            logs[name] = tmp_path / f"{name}.log"
            background.append(subprocess.Popen(["bash", "-c", cmd[:-1]], env=env, stdout=logs[name].open("w"),
                                               stderr=subprocess.STDOUT, start_new_session=True))
            return ""
        proc = subprocess.run(["bash", "-c", f"set -euo pipefail; {cmd}"], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"README command failed: {cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    try:
        shell_vars = ""
        outputs: dict[str, str] = {}
        cmds = readme_commands()
        trigger = next(i for i, c in enumerate(cmds) if "airflow dags trigger" in c)
        for i, cmd in enumerate(cmds):
            if re.match(r"^[A-Z_]+=\"\$\(", cmd):  # AIRFLOW_VERSION=..., PYTHON_VERSION=...: carried into the rest
                shell_vars += cmd + "; "
                continue
            if cmd.startswith("airflow dags unpause"):
                _wait_for_dag(env)  # a user waits for the DAG to show up before unpausing it
            if i == trigger + 1:  # step 6 looks at the run once it has ended
                state = _wait_for_run(env, logs)
                assert state == "success", f"the run ended {state}:\n" + "\n".join(
                    f"--- {n}\n{p.read_text()[-2500:]}" for n, p in logs.items())
            outputs[cmd] = run(shell_vars + cmd if "${" in cmd else cmd)
        plan = json.loads(report.read_text())["install"]
        assert [p["metadata"]["name"] for p in plan] == ["airflow-provider-worktree"], \
            f"pip would install or upgrade more than this package: {[p['metadata']['name'] for p in plan]}"
        assert (home / "dags" / "parallel_maintenance_poc.py").is_file(), "example-dags missed [core] dags_folder"
        assert "worktree" in outputs["airflow providers list | grep worktree"]
        status = outputs["airflow-worktree status"]
        assert re.search(r"completed\s+[1-9]", status) and re.search(r"failed\s+0\b", status), status
        report_text = outputs["airflow-worktree report"]
        assert re.search(r"shards: [1-9]", report_text) and "offline" in report_text.lower(), report_text
    finally:
        for proc in background:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _airflow_json(env: dict[str, str], *args: str) -> list | dict | None:
    proc = subprocess.run([str(BIN / "airflow"), *args, "-o", "json"], env=env, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():  # Airflow's log lines come first on stdout ("... [warning  ] ...")
        if line.startswith(("[{", "[]", "{")):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _wait_for_dag(env: dict[str, str], timeout: float = 240) -> None:
    """The dag-processor (started by the README's step 3) has parsed the example DAG: a user waits for the DAG
    to appear in the UI before triggering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dags = _airflow_json(env, "dags", "list") or []
        if any(d.get("dag_id") == "parallel_maintenance_poc" for d in dags):
            return
        time.sleep(3)
    raise AssertionError("the dag-processor did not parse parallel_maintenance_poc in time")


def _wait_for_run(env: dict[str, str], logs: dict[str, Path], timeout: float = 480) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _airflow_json(env, "dags", "list-runs", "parallel_maintenance_poc") or []
        states = [r.get("state") for r in runs]
        if states and states[0] in ("success", "failed"):
            return states[0]
        time.sleep(3)
    raise AssertionError("the run did not finish in time:\n" + "\n".join(
        f"--- {n}\n{p.read_text()[-2500:]}" for n, p in logs.items()))
