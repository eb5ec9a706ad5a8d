"""The package is a real Airflow provider: discovered through its entry point, metadata complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_worktree
import airflow_provider_worktree.version_compat
from airflow_provider_worktree.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_provider_info_lists_every_module_and_they_import():
    import importlib

    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-worktree"
    assert info["versions"] == [airflow_provider_worktree.__version__]
    for kind in ("hooks", "operators", "sensors", "triggers"):
        modules = [m for entry in info[kind] for m in entry["python-modules"]]
        assert modules, kind
        for module in modules:
            importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"]
        for field, spec in conn["conn-fields"].items():
            assert "label" in spec and "schema" in spec, field


def test_airflow_discovers_the_provider():
    out = subprocess.run([AIRFLOW, "providers", "list", "-o", "json"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    names = {p["package_name"] for p in json.loads(out[out.index("["):])}
    assert "airflow-provider-worktree" in names
    hooks = subprocess.run([AIRFLOW, "providers", "hooks", "-o", "json"], capture_output=True, text=True,
                           timeout=300, check=True).stdout
    assert "git_worktree" in hooks and "GitWorktreeHook" in hooks


def test_public_names_importable_from_subpackages():
    from airflow_provider_worktree.hooks import GitWorktreeHook, ShardStatusHook
    from airflow_provider_worktree.operators import ClaudeMaintenanceOperator
    from airflow_provider_worktree.sensors import ShardStatusSensor
    from airflow_provider_worktree.triggers import ShardStatusTrigger

    assert GitWorktreeHook.conn_type == "git_worktree"
    assert ShardStatusHook.default_conn_name == "shard_status_default"
    assert ClaudeMaintenanceOperator.template_fields and ShardStatusSensor and ShardStatusTrigger


def test_core_and_cli_import_no_airflow():
    """The layers stay visible: core modules (and the CLI with --db) never import Airflow."""
    code = (
        "import sys, pkgutil, importlib, airflow_provider_worktree.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('airflow_provider_worktree.core.' + m.name)\n"
        "import airflow_provider_worktree.cli, airflow_provider_worktree.testing\n"
        "bad = sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_too_old_airflow_gives_a_clear_error(tmp_path):
    """A fake `airflow` package reporting 2.10 makes the import fail with the upgrade hint."""
    fake = tmp_path / "airflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.10.5'\n")
    code = "import airflow_provider_worktree.hooks"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert f"needs Apache Airflow {airflow_provider_worktree.MIN_AIRFLOW_VERSION}+" in proc.stderr
    assert "pip install" in proc.stderr


@pytest.mark.parametrize("subpackage", ["hooks", "operators", "sensors", "triggers"])
def test_unknown_public_name_is_a_clear_attribute_error(subpackage):
    import importlib

    mod = importlib.import_module(f"airflow_provider_worktree.{subpackage}")
    with pytest.raises(AttributeError, match="has no attribute"):
        mod.NoSuchThing  # noqa: B018


@pytest.mark.skipif(not airflow_provider_worktree.version_compat.AIRFLOW_CLI_COMMANDS_SUPPORTED,
                    reason="Airflow 3.1 reads no provider-info 'cli' section (3.2+): airflow-worktree is the CLI there")
def test_cli_entry_gives_airflow_a_worktree_command():
    """Like the official providers (celery, fab, edge3): get_provider_info()["cli"] names functions returning
    Airflow CLI commands; Airflow's parser accepts ``airflow worktree <airflow-worktree args>``."""
    import importlib

    from airflow.cli.cli_config import ActionCommand

    (path,) = get_provider_info()["cli"]
    module, _, name = path.rpartition(".")
    (command,) = getattr(importlib.import_module(module), name)()
    assert isinstance(command, ActionCommand) and command.name == "worktree"
    from airflow.cli import cli_parser

    args = cli_parser.get_parser().parse_args(["worktree", "status", "--db", "/x.db", "--json"])
    assert args.func is command.func and args.worktree_args == ["status", "--db", "/x.db", "--json"]


def test_health_dag_params_may_all_stay_empty_in_the_trigger_form():
    """The trigger form marks a Param required unless its schema allows null; the Trigger button stays
    disabled while a required field is empty. Every worktree_health Param has a valid default."""
    import runpy

    from airflow.sdk.definitions.param import ParamsDict

    dag = runpy.run_path(str(ROOT / "airflow_provider_worktree" / "example_dags" / "worktree_health.py"))["dag"]
    params: ParamsDict = dag.params
    for name in ("repo", "worktree_root", "archive_older_than_days"):
        schema = params.get_param(name).schema
        assert "null" in schema["type"], (name, schema)
        assert params[name] in (None, ""), name
    params.validate()  # the defaults as they are pass validation
