"""ShardPlanOperator: a real git repository, a real SQLite shard database, templates rendered by real Airflow (the
example DAG runs it end to end in tests/test_example_dags.py)."""

from __future__ import annotations

import json
import shlex
import sys

import pendulum
import pytest
from airflow.sdk import DAG, Param

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.get_provider_info import get_provider_info
from airflow_provider_worktree.operators.options import InvalidMaintenanceConfig
from airflow_provider_worktree.operators.plan import ShardPlanOperator
from conftest import make_repo

RUN_ID = "manual__2026-12-01T05:00:00+00:00"


class XComRecorder:
    """The task instance's XCom push, recorded (the operator's only use of ``ti``)."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom would store: JSON


@pytest.fixture
def db(monkeypatch, tmp_path):
    path = tmp_path / "shard_status.db"
    monkeypatch.setenv("AIRFLOW_CONN_SHARD_TEST", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def _execute(op: ShardPlanOperator, params: dict | None = None) -> tuple[list[dict], dict]:
    ti = XComRecorder()
    result = op.execute({"run_id": RUN_ID, "ti": ti, "params": params or {}})
    return result, ti.pushed["plan"]


def test_plans_registers_and_returns_the_shards_for_expand(git_repo, db):
    op = ShardPlanOperator(task_id="plan", task="todo", repo=str(git_repo), max_files=1,
                           shard_status_conn_id="shard_test")
    shards, summary = _execute(op)
    assert shards == plan_shards(str(git_repo), "todo", max_files=1, max_shards=1024)
    assert {s["files"][0] for s in shards} == {"src/app.py", "src/util.py"}
    rows = ShardStore.open(str(db)).list_shards(run_id=RUN_ID)
    assert {r["shard_id"] for r in rows} == {s["shard_id"] for s in shards}
    assert {r["status"] for r in rows} == {"pending"}
    assert summary["task"] == "todo" and summary["repo"] == str(git_repo) and summary["base_ref"] == "HEAD"
    assert (summary["shards"], summary["files"]) == (2, 2) and "2 shard(s) for task todo" in summary["summary"]
    assert ShardPlanOperator.template_fields and "repo" in ShardPlanOperator.template_fields


def test_exported_and_listed_like_the_other_operators():
    from airflow_provider_worktree.operators import ShardPlanOperator as exported

    assert exported is ShardPlanOperator
    (group,) = get_provider_info()["operators"]
    assert "airflow_provider_worktree.operators.plan" in group["python-modules"]


def test_params_render_into_the_plan_and_the_per_shard_kwargs(tmp_path, db):
    """The example DAG's wiring: templated fields rendered natively by Airflow, a lint task whose command comes
    from a Param, include globs, and the per-shard keyword arguments for ``expand_kwargs``."""
    repo = make_repo(tmp_path / "repo", {"src/a.py": "x = 1\n", "src/b.py": "y = 2\n", "tests/t.py": "z = 3\n"})
    options = ("{{ {'lint': {'lint_command': params.lint_command}, 'custom': {'prompt': params.prompt}}"
               ".get(params.task) }}")
    with DAG("plan_params", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             render_template_as_native_obj=True, user_defined_filters={"shlex_split": shlex.split},
             params={"repo": Param(None, type=["null", "string"]), "task": Param("todo"),
                     "lint_command": Param(None, type=["null", "string"]), "prompt": Param(None),
                     "include": Param(None), "max_files": Param(1), "commands": Param(None)}):
        op = ShardPlanOperator(
            task_id="plan", repo="{{ params.repo }}", task="{{ params.task }}", task_options=options,
            include="{{ params.include }}", max_files="{{ params.max_files }}", shard_status_conn_id="shard_test",
            shard_kwargs={"task_options": options,
                          "allow_commands": "{{ (params.commands or []) | map('shlex_split') | list or None }}"})
    params = {"repo": str(repo), "task": "lint", "prompt": None, "include": ["src/**"], "max_files": 5,
              # every file is a finding of this "linter" (one output line per file given)
              "lint_command": f"{sys.executable} -c 'import sys; print(*sys.argv[1:], sep=chr(10))'",
              "commands": ["python -m pytest -q"]}
    context = {"run_id": RUN_ID, "ti": XComRecorder(), "params": params}
    op.render_template_fields(context)
    items = op.execute(context)
    assert [i["shard"]["files"] for i in items] == [["src/a.py", "src/b.py"]]
    assert items[0]["task_options"] == {"lint_command": params["lint_command"]}
    assert items[0]["allow_commands"] == [["python", "-m", "pytest", "-q"]]
    assert context["ti"].pushed["plan"]["globs"] == ["src/**"]


def test_max_shards_defaults_to_max_map_length(monkeypatch, tmp_path, db):
    repo = make_repo(tmp_path / "big", n_files=9)
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "4")
    shards, summary = _execute(ShardPlanOperator(task_id="plan", task="todo", repo=str(repo), max_files=1,
                                                 shard_status_conn_id=None))
    assert len(shards) == 3 and "exceed max_shards=4" in summary["summary"]
    top, _ = _execute(ShardPlanOperator(task_id="plan", task="todo", repo=str(repo), max_files=1, top=2,
                                        max_shards="None", shard_status_conn_id=None))
    assert len(top) == 2
    assert not db.exists(), "shard_status_conn_id=None registers nothing"


def test_a_missing_task_option_is_named_as_the_param_to_set(git_repo):
    op = ShardPlanOperator(task_id="plan", task="lint", repo=str(git_repo), task_options={"lint_command": None},
                           shard_status_conn_id=None)
    with pytest.raises(InvalidMaintenanceConfig, match="task 'lint' needs the lint_command Param: trigger the run"):
        _execute(op, {"lint_command": None})
    with pytest.raises(InvalidMaintenanceConfig, match=r"task 'lint' needs task_options\['lint_command'\]"):
        _execute(op)
    with pytest.raises(ConfigurationError, match="The lint task needs lint_command"):  # nothing left empty
        _execute(ShardPlanOperator(task_id="plan", task="lint", repo=str(git_repo), shard_status_conn_id=None))


def test_no_repository_is_one_line_naming_the_param_or_the_argument():
    op = ShardPlanOperator(task_id="plan", task="todo", repo="{{ params.repo }}", git_worktree_conn_id="no_such_conn",
                           shard_status_conn_id=None)
    op.repo = None  # as rendered from an empty Param
    with pytest.raises(InvalidMaintenanceConfig, match="No repository for this run: give the repo Param .* or "
                                                       "create the no_such_conn connection"):
        _execute(op, {"repo": None})
    with pytest.raises(InvalidMaintenanceConfig, match=r"No repository for this run: pass repo= \(a local path"):
        _execute(op)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "bogus"}, "Unknown maintenance task 'bogus'"),
    ({"split_by": "random"}, "split_by='random' is not one of"),
    ({"include": [1, 2]}, "include must be a list of glob strings"),
    ({"max_files": "many"}, "max_files must be a positive integer"),
    ({"task_options": "lint_command"}, "task_options must be a mapping"),
    ({"shard_kwargs": ["task_options"]}, "shard_kwargs must be a mapping"),
    ({"ref": "no-such-branch"}, "no-such-branch"),
], ids=["task", "split_by", "include", "max_files", "task_options", "shard_kwargs", "ref"])
def test_bad_input_fails_at_once_without_retry(git_repo, kwargs, message):
    op = ShardPlanOperator(task_id="plan", **{"task": "todo", "repo": str(git_repo), "shard_status_conn_id": None,
                                              **kwargs})
    with pytest.raises(InvalidMaintenanceConfig, match=message):
        _execute(op)
