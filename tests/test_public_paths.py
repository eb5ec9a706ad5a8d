"""The import paths that the README and the docs of 0.1 showed keep working, with a DeprecationWarning that names
the new path (issue 18: public paths kept for one minor release)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest


def _fresh_import(module: str):
    sys.modules.pop(module, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(module)
    return mod, [w for w in caught if issubclass(w.category, DeprecationWarning)]


def test_old_box_path_warns_and_still_works():
    mod, caught = _fresh_import("airflow_provider_worktree.core.box")
    from airflow_provider_worktree.core.sandbox import bwrap_status

    assert mod.bwrap_status is bwrap_status
    assert caught and "airflow_provider_worktree.core.sandbox" in str(caught[0].message)


def test_new_paths_import_without_a_warning():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "from airflow_provider_worktree.core.sandbox import bwrap_status, run_boxed\n"
            "from airflow_provider_worktree.core.store import ShardStore\n"
            "from airflow_provider_worktree.core.worktrees import WorktreeManager\n"
            "from airflow_provider_worktree.core.tasks import MaintenanceTask, register_task\n"
            "from airflow_provider_worktree.core.planning import plan_repository, plan_shards\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["plan_shards", "plan_repository"])
def test_planning_names_from_the_old_tasks_path_warn(name):
    import airflow_provider_worktree.core.tasks as tasks
    from airflow_provider_worktree.core import planning

    with pytest.warns(DeprecationWarning, match="airflow_provider_worktree.core.planning"):
        old = getattr(tasks, name)
    assert old is getattr(planning, name)
