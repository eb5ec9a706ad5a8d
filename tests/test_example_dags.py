"""The example DAGs under real Airflow: they parse fast with no import errors, and they run.

Runs go through ``airflow dags test`` in a subprocess, with the DAG files in that Airflow's dags folder
(``dag.test()`` only works for DAGs in files under the dags folder), the real SDK talking over HTTP to the
offline Messages API server, and real git repositories and SQLite shard databases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from airflow_provider_worktree.testing import OfflineMessagesServer
from conftest import airflow_home_env, make_repo

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """An Airflow home with the example DAGs in its dags folder and a migrated metadata database."""
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    for dag_file in (ROOT / "airflow_provider_worktree" / "example_dags").glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    env = _env(home)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return home


_env = airflow_home_env


def _dags_test(home: Path, dag_id: str, conf: dict, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([AIRFLOW, "dags", "test", dag_id, "-c", json.dumps(conf)], env=_env(home, **extra),
                          capture_output=True, text=True, timeout=600)
    return proc


def _poc_offline(home: Path, conf: dict) -> tuple[subprocess.CompletedProcess, list]:
    """The example DAG through ``airflow dags test`` against the offline server; its output and the model calls."""
    with OfflineMessagesServer() as srv:
        conn = json.dumps({"conn_type": "anthropic", "host": srv.base_url, "password": "sk-ant-dummy"})
        proc = _dags_test(home, "parallel_maintenance_poc", conf, AIRFLOW_CONN_ANTHROPIC_DEFAULT=conn)
        return proc, srv.message_requests()


def test_dags_parse_fast_without_import_errors_or_side_effects(airflow_home):
    env = _env(airflow_home)
    proc = subprocess.run([AIRFLOW, "dags", "list-import-errors", "--local", "-o", "json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "parallel_maintenance_poc" not in proc.stdout, proc.stdout + proc.stderr
    # parsing touches no database or repository (its speed is measured in bench/, not asserted here)
    code = "import runpy, sys\nfor f in sys.argv[1:]: runpy.run_path(f)\n"
    files = [str(p) for p in sorted((airflow_home / "dags").glob("*.py"))]
    subprocess.run([sys.executable, "-c", code, *files], env=env, capture_output=True, text=True,
                   check=True, timeout=120)
    assert not (airflow_home / "shard_status.db").exists(), "parsing must not create the shard database"
    listed = subprocess.run([AIRFLOW, "dags", "list", "--local", "-o", "json"], env=env, capture_output=True, text=True,
                            check=True, timeout=300).stdout
    assert "parallel_maintenance_poc" in listed and "worktree_health" in listed


def test_parallel_maintenance_poc_runs_end_to_end(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "demo", n_files=9)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
    with OfflineMessagesServer() as srv:
        conn = json.dumps({"conn_type": "anthropic", "host": srv.base_url, "password": "sk-ant-dummy"})
        proc = _dags_test(airflow_home, "parallel_maintenance_poc",
                          {"repo": str(repo), "max_files_per_shard": 3, "model": "claude-sonnet-4-6",
                           "integration_branch": "maintenance/integration"},
                          AIRFLOW_CONN_ANTHROPIC_DEFAULT=conn)
    assert "state=success" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-5000:]
    store = ShardStore.open(str(airflow_home / "shard_status.db"))
    rows = [r for r in store.list_shards() if r["run_id"].startswith("manual__")]
    run_id = rows[0]["run_id"]
    rows = store.list_shards(run_id=run_id)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        subprocess.run(["git", "rev-parse", "--verify", row["commit_sha"]], cwd=repo, check=True,
                       capture_output=True)
    # the integration branch merges every shard branch: no TODO is left anywhere in it
    grep = subprocess.run(["git", "grep", "-c", "TODO", "maintenance/integration", "--", "pkg"], cwd=repo,
                          capture_output=True, text=True)
    assert grep.returncode == 1, grep.stdout
    # the report lies beside the shard database; the user's checkout did not move
    reports = list((airflow_home / "reports").glob("*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["totals"]["by_status"] == {"completed": 3} and report["integration"]["conflicts"] == []
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout == head
    assert subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True,
                          text=True).stdout.count("\n") == 1


def _plant_dead_owner_worktree(repo: Path, root: Path) -> str:
    """A worktree made (and left locked, dirty) by a process that has since exited."""
    code = (
        "import sys, pathlib\n"
        "from airflow_provider_worktree.core.worktrees.manager import WorktreeManager\n"
        "m = WorktreeManager(sys.argv[1], worktree_root=sys.argv[2])\n"
        "wt = m.create_worktree('old_run', 'orphan-shard')\n"
        "pathlib.Path(wt.path, 'README.md').write_text('unsaved work\\n')\n"
        "print(wt.path)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(repo), str(root)], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


def test_health_dag_reclaims_stale_lock_and_prunes_orphan_worktree(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "worktrees"
    orphan = _plant_dead_owner_worktree(repo, root)
    db = tmp_path / "shard_status.db"
    store = ShardStore.open(str(db))
    store.register_shards("run_h", [{"shard_id": "s1", "task": "todo", "files": ["a.py"]},
                                    {"shard_id": "s2", "task": "todo", "files": ["b.py"]}])
    store.assign_shard("run_h", "dead-worker:1", shard_id="s1")
    time.sleep(2.2)  # the lease's heartbeat is now older than stale_after_s below
    conn = json.dumps({"conn_type": "sqlite", "host": str(db)})
    proc = _dags_test(airflow_home, "worktree_health",
                      {"repo": str(repo), "worktree_root": str(root), "prune_older_than_hours": 0,
                       "stale_after_s": 2},
                      AIRFLOW_CONN_SHARD_STATUS_DEFAULT=conn)
    out = proc.stdout + proc.stderr
    assert "state=success" in out, out[-5000:]
    assert store.get_shard("run_h", "s1")["status"] == "pending", "the stale lock was reclaimed"
    assert not Path(orphan).exists(), "the dead owner's worktree was pruned"
    salvage = subprocess.run(["git", "branch", "--list", "worktree-salvage/*"], cwd=repo, capture_output=True,
                             text=True).stdout.split()
    assert salvage, "its uncommitted work was saved first"
    saved = subprocess.run(["git", "show", f"{salvage[0]}:README.md"], cwd=repo, capture_output=True,
                           text=True).stdout
    assert saved == "unsaved work\n"
    assert len(WorktreeManager(str(repo), worktree_root=str(root)).list_worktrees()) == 1


def test_health_dag_fails_on_critical_threshold(airflow_home, tmp_path):
    db = tmp_path / "shard_status.db"
    store = ShardStore.open(str(db))
    store.register_shards("run_c", [{"shard_id": f"s{i}", "task": "todo", "files": [f"f{i}.py"]}
                                    for i in range(10)])
    for i in range(2):  # 2 failed of 10: 20% > the runbook's 10% critical
        lease = store.assign_shard("run_c", "w:1", shard_id=f"s{i}")
        store.fail(lease, "boom")
    conn = json.dumps({"conn_type": "sqlite", "host": str(db)})
    proc = _dags_test(airflow_home, "worktree_health", {"repo": ""},
                      AIRFLOW_CONN_SHARD_STATUS_DEFAULT=conn)
    out = proc.stdout + proc.stderr
    assert "state=failed" in out and "critical threshold crossed" in out, out[-5000:]


def test_failed_shard_fails_the_run_but_the_report_is_written(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "demo", n_files=2)
    proc, _ = _poc_offline(airflow_home, {"repo": str(repo), "max_files_per_shard": 5, "model": "claude-sonnet-4-6",
                                          "verify_command": "python -c 'raise SystemExit(1)'"})
    out = proc.stdout + proc.stderr
    assert "state=failed" in out and "shard(s) failed" in out, out[-5000:]
    report = json.loads(max((airflow_home / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
                        .read_text())
    assert report["totals"]["by_status"] == {"failed": 1}
    assert "verif" in report["failed"][0]["error"]


def test_a_shard_never_claimed_fails_the_run_with_its_reason(airflow_home, tmp_path):
    """Issue 23: a maintain task that fails before claiming its shard (here a budget the claude_code runner cannot
    turn into dollars) leaves the shard pending; the run is not green and the report says why."""
    repo = make_repo(tmp_path / "demo", n_files=2)
    proc, calls = _poc_offline(airflow_home, {"repo": str(repo), "max_files_per_shard": 5, "runner": "claude_code",
                                              "max_input_tokens": None})
    assert calls == [], "nothing reached the model"
    out = proc.stdout + proc.stderr
    assert "state=failed" in out and "1 not done" in out and "never claimed" in out, out[-5000:]
    report = json.loads(max((airflow_home / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
                        .read_text())
    assert report["failed"] == [] and [u["status"] for u in report["unfinished"]] == ["pending"]


# ------------------------------------------------------------------------- parallel_maintenance_poc: Params
def _poc_dag():
    """The example DAG object, loaded from its file as the DAG processor would."""
    import runpy

    module = runpy.run_path(str(ROOT / "airflow_provider_worktree" / "example_dags" / "parallel_maintenance_poc.py"))
    return module["dag"]


def test_poc_params_validate_with_their_defaults_and_reject_bad_values():
    """Fail in the form, not at run time: Airflow's own ParamsDict validation accepts every default but ``repo``,
    which is required (no default, a non-empty string: the trigger form disables its Trigger button until it is
    filled); every other Param with an empty default is nullable, so the form never blocks on it."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow_provider_worktree.version_compat import ParamValidationError

    dag = _poc_dag()
    params = dag.params
    with pytest.raises(ParamValidationError, match="repo"):
        ParamsDict({k: params.get_param(k) for k in params}).validate()
    for empty in ("", "   "):
        trial = ParamsDict({k: params.get_param(k) for k in params})
        with pytest.raises((ParamValidationError, ValueError)):
            trial["repo"] = empty
            trial.validate()
    assert params.get_param("repo").schema["type"] == "string" and not params.get_param("repo").has_value
    given = ParamsDict({k: params.get_param(k) for k in params})
    given["repo"] = "/srv/repo"
    resolved = given.validate()
    assert resolved["repo"] == "/srv/repo" and resolved["task"] == "todo" and resolved["isolation"] == "auto"
    assert resolved["parallel_limit"] == 10
    for name in ("task", "lint_command", "verify_command", "prompt", "include", "exclude", "max_files_per_shard",
                 "max_input_tokens", "max_output_tokens", "max_cost_usd", "runner", "model", "allow_commands",
                 "isolation", "push", "integration_branch", "parallel_limit"):
        assert name in params, name
    for name in params:
        param = params.get_param(name)
        types = param.schema.get("type")
        if name != "repo" and param.value in (None, ""):
            assert isinstance(types, list) and "null" in types, f"{name}: empty default but not nullable"
    # What a user types in the form or the conf: good values pass, bad ones are refused by Airflow itself.
    good = ParamsDict(params.dump() | {"repo": "/srv/repo"})
    good.update({"task": "lint", "lint_command": "ruff check", "include": ["src/**"], "parallel_limit": 3,
                 "isolation": "bwrap", "allow_commands": ["python -m pytest"], "max_cost_usd": 0.5})
    good.validate()
    for bad in ({"parallel_limit": 0}, {"parallel_limit": 10_000}, {"task": "bogus"}, {"isolation": "docker"},
                {"runner": "shell"}, {"include": "src/**"}, {"base_ref": "--upload-pack=evil"},
                {"base_ref": "main branch"}, {"integration_branch": "a:b"}):
        trial = ParamsDict({k: params.get_param(k) for k in params})
        trial["repo"] = "/srv/repo"
        with pytest.raises((ParamValidationError, ValueError)):
            for key, value in bad.items():
                trial[key] = value
            trial.validate()


def _task_states(home: Path, dag_id: str) -> dict[str, list[str]]:
    """task_id -> states of its instances in the newest run of ``dag_id`` (from the metadata database)."""
    code = (
        "import json, sys\n"
        "from airflow.models.dagrun import DagRun\n"
        "from airflow.models.taskinstance import TaskInstance as TI\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    dr = s.query(DagRun).filter(DagRun.dag_id == sys.argv[1]).order_by(DagRun.id.desc()).first()\n"
        "    out = {}\n"
        "    for ti in s.query(TI).filter(TI.dag_id == dr.dag_id, TI.run_id == dr.run_id):\n"
        "        out.setdefault(ti.task_id, []).append(str(ti.state).split('.')[-1].lower())\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, dag_id], env=_env(home), capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_poc_nothing_to_do_is_a_green_run_with_a_report_saying_so(airflow_home, tmp_path):
    repo = make_repo(tmp_path / "clean", {"README.md": "# clean\n", "pkg/a.py": "def f(x):\n    return x\n"})
    proc = _dags_test(airflow_home, "parallel_maintenance_poc", {"repo": str(repo)})
    out = proc.stdout + proc.stderr
    assert "state=success" in out, out[-5000:]
    states = _task_states(airflow_home, "parallel_maintenance_poc")
    assert states["plan"] == ["success"] and states["report"] == ["success"], states
    assert states["watch_shards"] == ["skipped"], states  # it never waited for shards
    assert set(states.get("maintain", ["skipped"])) == {"skipped"}, states
    report = json.loads(max((airflow_home / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
                        .read_text())
    assert report["totals"]["shards"] == 0
    assert "needs the 'todo' task" in report["nothing_to_do"]
    markdown = Path(report_path := str(max((airflow_home / "reports").glob("*.md"),
                                          key=lambda p: p.stat().st_mtime))).read_text()
    assert "## Nothing to do" in markdown, report_path


@pytest.mark.parametrize(
    ("conf", "message"),
    [({"task": "lint"}, "task 'lint' needs the lint_command Param"),
     ({"repo": "/nonexistent/repository"}, "does not exist")],
    ids=["lint-without-lint_command", "missing-repository"],
)
def test_poc_failed_plan_fails_the_run_at_once(airflow_home, tmp_path, conf, message):
    repo = make_repo(tmp_path / "repo", n_files=2)
    proc = _dags_test(airflow_home, "parallel_maintenance_poc", {"repo": str(repo), **conf})
    out = proc.stdout + proc.stderr
    assert "state=failed" in out and message in out, out[-5000:]
    assert "The plan task failed" in out, out[-5000:]
    states = _task_states(airflow_home, "parallel_maintenance_poc")
    assert states["plan"] == ["failed"] and states["report"] == ["failed"], states
    # the sensor never started, so nothing waited for shards that will never come
    assert states["watch_shards"][0] in ("upstream_failed", "skipped"), states


def test_a_trigger_without_a_repository_is_refused_before_a_run_exists(airflow_home):
    """``airflow dags trigger`` (the form's POST goes the same way: DAG.create_dagrun validates the Params merged
    with the conf) refuses a missing or empty repository and a bad value; no DAG run is created."""
    env = _env(airflow_home)
    subprocess.run([AIRFLOW, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    code = ("from airflow.models.dagrun import DagRun\nfrom airflow.utils.session import create_session\n"
            "with create_session() as s:\n"
            "    print(s.query(DagRun).filter(DagRun.dag_id == 'parallel_maintenance_poc').count())\n")

    def runs() -> str:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip().splitlines()[-1]

    before = runs()
    for conf in (None, {"repo": ""}, {"repo": "  "}, {"repo": "/srv/repo", "task": "bogus"}):
        cmd = [AIRFLOW, "dags", "trigger", "parallel_maintenance_poc", *(["-c", json.dumps(conf)] if conf else [])]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "Invalid input for param" in out, (conf, out[-3000:])
        assert ("param task" if conf and "task" in conf else "param repo") in out, (conf, out[-3000:])
    assert runs() == before, "a refused trigger created a DAG run"
