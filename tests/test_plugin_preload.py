"""The plugin's scheduler preload: Airflow's own listener manager calls it; only a scheduler imports the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter: Airflow loads the plugin from its entry point and calls the lifecycle hook the way
# Job.__init__ does. Prints whether the SDK was loaded before and after the hook.
PROBE = r"""
import json, sys
sys.argv = ["airflow", sys.argv[1]]
from airflow.listeners.listener import get_listener_manager
before = "anthropic" in sys.modules
get_listener_manager().hook.on_starting(component=object())
print(json.dumps({"before": before, "after": "anthropic" in sys.modules,
                  "operator": "airflow_provider_worktree.operators.maintenance" in sys.modules}))
"""


def _probe(component: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, component], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scheduler_preloads_the_sdk_and_the_operator():
    seen = _probe("scheduler")
    assert seen == {"before": False, "after": True, "operator": True}


@pytest.mark.parametrize("component", ["dag-processor", "triggerer", "api-server"])
def test_other_components_import_nothing(component):
    assert _probe(component) == {"before": False, "after": False, "operator": False}


def test_preload_can_be_turned_off():
    seen = _probe("scheduler", AIRFLOW__WORKTREE__PRELOAD_IN_SCHEDULER="False")
    assert seen["after"] is False
