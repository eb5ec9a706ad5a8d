"""The example DAG publishes (issue 19): ``publish=draft`` through ``airflow dags test``, the real GitHub provider and
PyGithub against the offline GitHub, the integration branch pushed over git's smart HTTP, the same pull request
updated by a second run; every exchange checked against GitHub's OpenAPI description."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed "
                                                        "(pip install 'airflow-provider-worktree[github]')")

import githubapi
from conftest import airflow_home_env, make_repo

from airflow_provider_worktree.testing import OfflineMessagesServer
from airflow_provider_worktree.testing.forge import OfflineGitHub

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "parallel_maintenance_poc"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    shutil.copy(ROOT / "airflow_provider_worktree" / "example_dags" / f"{DAG_ID}.py", home / "dags")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_home_env(home), check=True,
                   capture_output=True, timeout=300)
    return home


def _states(home: Path, env: dict) -> dict[str, str]:
    code = ("import json\nfrom airflow.models.dagrun import DagRun\n"
            "from airflow.models.taskinstance import TaskInstance as TI\n"
            "from airflow.utils.session import create_session\n"
            "with create_session() as s:\n"
            f"    dr = s.query(DagRun).filter(DagRun.dag_id == {DAG_ID!r}).order_by(DagRun.id.desc()).first()\n"
            "    print(json.dumps({ti.task_id: str(ti.state).split('.')[-1].lower() for ti in\n"
            "                      s.query(TI).filter(TI.dag_id == dr.dag_id, TI.run_id == dr.run_id)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_state(out: str) -> str:
    """The DAG run's end state, from ``airflow dags test``'s "DagRun Finished: ... state=..." line."""
    (line,) = [x for x in out.splitlines() if "DagRun Finished:" in x] or [""]
    return line.split(" state=", 1)[-1].split(",", 1)[0] if line else "not finished"


def _envs(home: Path, gh: OfflineGitHub, srv: OfflineMessagesServer) -> dict[str, str]:
    return airflow_home_env(
        home,
        AIRFLOW_CONN_ANTHROPIC_DEFAULT=json.dumps({"conn_type": "anthropic", "host": srv.base_url,
                                                   "password": "sk-ant-dummy"}),
        AIRFLOW_CONN_GITHUB_DEFAULT=json.dumps({"conn_type": "github", "host": gh.api_url, "password": gh.token}))


def _dags_test(env: dict, conf: dict) -> str:
    proc = subprocess.run([str(BIN / "airflow"), "dags", "test", DAG_ID, "-c", json.dumps(conf)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.stdout + proc.stderr


def test_publish_draft_opens_one_pull_request_and_a_second_run_updates_it(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "demo", n_files=4)
    log = tmp_path / "forge-requests.jsonl"
    with OfflineGitHub(tmp_path / "forge", request_log=log) as gh, OfflineMessagesServer() as srv:
        full = gh.create_repo("demo", repo)
        env = _envs(airflow_home, gh, srv)
        conf = {"repo": str(repo), "max_files_per_shard": 2, "publish": "draft", "forge_repository": full}
        runs = []
        for _ in range(2):
            out = _dags_test(env, conf)
            assert _run_state(out) == "success", out[-5000:]
            states = _states(airflow_home, env)
            assert states["publish"] == "success", (states, out[-6000:])
            # draft stops at the draft: no approval is asked for, nothing is marked ready
            assert states["approve"] == "skipped" and states["ready_for_review"] == "skipped", states
            runs.append(out)
            (pr,) = gh.pulls(full)  # one pull request for the repository, also after the second run
            assert pr["number"] == 1 and pr["draft"] and pr["head"] == "worktree/todo" and pr["base"] == "main"
            # the forge's head is the integration branch the run made (pushed over git's smart HTTP)
            local = subprocess.run(["git", "rev-parse", "worktree/todo"], cwd=repo, capture_output=True,
                                   text=True, check=True).stdout.strip()
            assert pr["head_sha"] == local
            assert "offline test double" in pr["body"] and gh.token not in pr["body"]
            assert "sk-ant-dummy" not in pr["body"]
        listed = subprocess.run([str(BIN / "airflow-worktree"), "changesets", "--db",
                                 str(airflow_home / "shard_status.db"), "-o", "json"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)["changesets"]
        assert row["url"].endswith(f"/{full}/pull/1") and row["publication"] == "draft"
        assert row["external_state"] == "open"
        # the body names the run that wrote it last: the second
        (second_run,) = {x.split("run_id=", 1)[1].split(",")[0] for x in runs[1].splitlines() if "DagRun Finished" in x}
        assert second_run in gh.pulls(full)[0]["body"]
    checked, problems = githubapi.check_log(log)
    assert checked > 0 and not problems, "\n".join(problems[:20])
    creates = [json.loads(x) for x in log.read_text().splitlines()
               if '"POST"' in x and x and json.loads(x)["path"].endswith("/pulls")]
    assert len([c for c in creates if c["status"] == 201]) == 1, "the second run opened a second pull request"


def test_a_publish_that_the_forge_refuses_fails_the_run_naming_the_fix_and_keeps_the_branch(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "demo", n_files=2)
    with OfflineGitHub(tmp_path / "forge") as gh, OfflineMessagesServer() as srv:
        gh.create_repo("demo", repo)
        out = _dags_test(_envs(airflow_home, gh, srv), {"repo": str(repo), "publish": "ready",
                                                        "forge_repository": "octo-org/missing"})
        assert _run_state(out) == "failed", out[-5000:]
        assert "the repository does not exist or the token cannot see it" in out, out[-5000:]
        states = _states(airflow_home, airflow_home_env(airflow_home))
        assert states["report"] == "success" and states["publish"] == "failed", states
        assert states["approve"] == "upstream_failed", states  # nobody is asked to approve what was not published
        assert not gh.pulls("octo-org/demo")
    # the run's work is on its branch, ready for a retry of the publish task
    assert subprocess.run(["git", "rev-parse", "--verify", "worktree/todo"], cwd=repo, capture_output=True,
                          check=False).returncode == 0


def _wait(what: str, probe, timeout: float, ui) -> object:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s; api-server log:\n{ui.log_tail()}")


@pytest.mark.timeout(600)
def test_publish_ready_waits_for_the_approval_in_airflow_then_marks_the_pull_request_ready(tmp_path):
    """publish="ready" under the real scheduler and triggerer: the draft is opened, the approve task waits for a human
    (Airflow's HITL REST API, as the UI's Required actions page answers it) with the pull request in its body, and
    only once approved is the pull request marked ready for review."""
    import uihelpers

    repo = make_repo(tmp_path / "demo", n_files=2)
    with OfflineGitHub(tmp_path / "forge") as gh, OfflineMessagesServer() as srv:
        full = gh.create_repo("demo", repo)
        conns = {"AIRFLOW_CONN_ANTHROPIC_DEFAULT": json.dumps({"conn_type": "anthropic", "host": srv.base_url,
                                                               "password": "sk-ant-dummy"}),
                 "AIRFLOW_CONN_GITHUB_DEFAULT": json.dumps({"conn_type": "github", "host": gh.api_url,
                                                            "password": gh.token}),
                 "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                 "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5"}
        # (the tasks reach the execution API at [api] base_url + /execution/, the api-server started here)
        ui = uihelpers.AirflowUI.start(tmp_path, **conns)
        procs = []
        try:
            for service in ("scheduler", "dag-processor", "triggerer"):
                log = open(tmp_path / f"{service}.log", "w")
                procs.append(subprocess.Popen([str(BIN / "airflow"), service], env=ui.env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            assert ui.request("PATCH", f"/api/v2/dags/{DAG_ID}", user="admin", body={"is_paused": False})[0] == 200
            status, run = ui.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", user="admin", body={
                "logical_date": None, "conf": {"repo": str(repo), "publish": "ready", "forge_repository": full}})
            assert status == 200, run
            run_id = run["dag_run_id"]
            hitl = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"

            def waiting() -> dict | None:
                # the task is paused for input (3.3: awaiting_input; before: deferred on the HITL trigger). An
                # answer within milliseconds of the request, before the pause is recorded, races in Airflow
                # itself (the resumed task asks again); a human is never that fast.
                code, ti = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve",
                                      user="admin")
                if code != 200 or ti.get("state") not in ("awaiting_input", "deferred"):
                    return None
                code, body = ui.request("GET", hitl, user="admin")
                return body if code == 200 and not body.get("response_received") else None

            detail = _wait("the approval request", waiting, 400, ui)
            (pr,) = gh.pulls(full)
            assert pr["draft"], "marked ready before anyone approved"
            assert f"[{full} #1](" in detail["body"] and pr["title"] in detail["body"], detail
            code, answer = ui.request("PATCH", hitl, user="admin", body={"chosen_options": ["Approve"]})
            assert code == 200, answer

            def finished() -> str | None:
                code, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", user="admin")
                return body["state"] if code == 200 and body["state"] in ("success", "failed") else None

            assert _wait("the end of the run", finished, 300, ui) == "success", ui.log_tail()
            (pr,) = gh.pulls(full)
            assert not pr["draft"] and pr["number"] == 1, "approved, but the pull request is still a draft"
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            ui.stop()
