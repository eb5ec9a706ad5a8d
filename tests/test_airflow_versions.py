"""Every supported Airflow minor: one minimum, the version-dependent names decided in ``version_compat`` only, and
the plugin loaded by a real api-server. Runs in the main suite (newest Airflow) and on the oldest supported
Airflow (scripts/test_oldest.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import airflow_provider_worktree
from airflow_provider_worktree import version_compat

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_provider_worktree"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

#: Names Airflow 3.2 moved into the Task SDK: imported from version_compat everywhere else.
MOVED = re.compile(r"^\s*from airflow\.sdk\.(exceptions|configuration|observability[.\w]*) import"
                   r"|^\s*from airflow\.sdk import [^\n]*\bconf\b"
                   r"|^\s*from airflow\.(exceptions|stats) import", re.M)


def _airflow_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "apache-airflow"]
    return req


def test_one_minimum_in_pyproject_and_the_runtime_check():
    floors = [s.version for s in _airflow_requirement().specifier if s.operator == ">="]
    assert floors == [airflow_provider_worktree.MIN_AIRFLOW_VERSION]
    assert version_compat.MIN_AIRFLOW_VERSION == airflow_provider_worktree.MIN_AIRFLOW_VERSION


def test_the_installed_airflow_is_supported_and_the_constants_match_it():
    import airflow

    installed = Version(Version(airflow.__version__).base_version)
    assert installed in _airflow_requirement().specifier
    assert version_compat.AIRFLOW_V_3_1_PLUS
    assert version_compat.AIRFLOW_V_3_2_PLUS == (installed >= Version("3.2"))
    assert version_compat.AIRFLOW_V_3_3_PLUS == (installed >= Version("3.3"))


def test_version_dependent_names_come_from_version_compat_only():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "version_compat.py":
            continue
        text = path.read_text()
        rel = path.relative_to(ROOT)
        offenders += [f"{rel}: {m.group(0).strip()}" for m in MOVED.finditer(text)]
        if re.search(r"\bAIRFLOW_V_\d", text) or "airflow import __version__" in text and path.name != "__init__.py":
            offenders.append(f"{rel}: tests the Airflow version itself")
    assert not offenders, "import these from airflow_provider_worktree.version_compat:\n" + "\n".join(offenders)


@pytest.mark.parametrize("name", ["AirflowException", "AirflowFailException", "AirflowNotFoundException",
                                  "AirflowSensorTimeout", "AirflowSkipException", "ParamValidationError",
                                  "TaskDeferred"])
def test_the_exceptions_are_the_ones_this_airflows_task_runner_catches(name):
    import airflow.exceptions

    assert getattr(version_compat, name) is getattr(airflow.exceptions, name)


def test_conf_and_stats_work():
    assert version_compat.conf.get("core", "dags_folder")
    version_compat.Stats.incr("worktree.test_version_compat")


def test_airflow_cli_has_the_worktree_command_where_airflow_supports_it():
    proc = subprocess.run([AIRFLOW, "worktree", "--help"], capture_output=True, text=True, timeout=300)
    if version_compat.AIRFLOW_CLI_COMMANDS_SUPPORTED:
        assert proc.returncode == 0 and "airflow-worktree" in proc.stdout, proc.stdout + proc.stderr
    else:  # Airflow 3.1: no provider CLI commands; the console script is the CLI (README, "Supported versions")
        assert proc.returncode != 0 and "invalid choice" in proc.stderr
    script = subprocess.run([str(Path(sys.executable).with_name("airflow-worktree")), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert script.returncode == 0 and "status" in script.stdout, script.stderr


@pytest.mark.integration
def test_the_api_server_loads_the_plugin_and_serves_the_dashboard(tmp_path):
    """A real api-server of this Airflow: the plugin is listed with its app and views, the dashboard answers a
    reader and refuses a user without permissions."""
    import uihelpers

    ui = uihelpers.AirflowUI.start(tmp_path)
    try:
        status, body = ui.request("GET", "/api/v2/plugins", user="admin")
        assert status == 200, body
        (plugin,) = [p for p in body["plugins"] if p["name"] == "worktree"]
        assert plugin["fastapi_apps"] and plugin["fastapi_apps"][0]["url_prefix"] == "/worktree"
        assert {v["url_route"] for v in plugin["external_views"]} == {"worktree", "worktree-run"}
        assert any("preload" in listener for listener in plugin["listeners"])
        status, page = ui.request("GET", "/worktree/")
        assert status == 200 and "<html" in str(page).lower()
        status, health = ui.request("GET", "/worktree/api/health", user="viewer")
        assert status == 200, health
        status, _ = ui.request("GET", "/worktree/api/health", user="nobody")
        assert status == 403
    finally:
        ui.stop()
