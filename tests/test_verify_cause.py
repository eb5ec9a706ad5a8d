"""A failed verify says why in one line (issue 23): the cause is read from the real output of real commands
(pytest, a traceback, a missing executable, a timeout), run through run_verify in the box as a shard's verify is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.core.tasks import run_verify

PY = sys.executable


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_missing_test_dependency_is_named(tmp_path):
    root = _project(tmp_path, {"test_clock.py": "import freezegun_not_installed_here\n\n"
                                                "def test_tick():\n    assert True\n"})
    result = run_verify([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, timeout=120, isolation="none")
    assert not result.ok and result.returncode == 2
    assert "No module named 'freezegun_not_installed_here'" in result.cause
    assert result.failure().startswith("the verify command failed (exit 2): ")
    assert "\n" not in result.failure()


def test_a_failing_assertion_names_the_test_or_the_error(tmp_path):
    root = _project(tmp_path, {"test_m.py": "def test_parse():\n    assert 1 + 1 == 3, 'parse is off by one'\n"})
    result = run_verify([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, timeout=120, isolation="none")
    assert not result.ok and result.returncode == 1
    assert "AssertionError" in result.cause and "parse is off by one" in result.cause


def test_a_traceback_gives_its_last_line_and_a_plain_exit_its_last_line(tmp_path):
    crash = run_verify([PY, "-c", "import json; json.loads('{oops')"], tmp_path, isolation="none")
    assert crash.cause.startswith("JSONDecodeError: Expecting property name")
    quiet = run_verify([PY, "-c", "print('checking'); print('3 files would be reformatted'); raise SystemExit(1)"],
                       tmp_path, isolation="none")
    assert quiet.cause == "3 files would be reformatted"


def test_a_command_that_never_ran_or_timed_out_says_so(tmp_path):
    missing = run_verify(["no-such-verify-tool-xyz", "--check"], tmp_path, isolation="none")
    assert missing.failure().startswith("the verify command failed (did not start): executable not found")
    slow = run_verify([PY, "-c", "import time; time.sleep(30)"], tmp_path, timeout=1, isolation="none")
    assert slow.timed_out and "(timed out)" in slow.failure()


def test_a_passing_command_has_no_cause(tmp_path):
    assert run_verify([PY, "-c", "pass"], tmp_path, isolation="none").cause == ""


@pytest.mark.parametrize("isolation", ["auto"])
def test_the_cause_survives_the_box(tmp_path, isolation):
    root = _project(tmp_path, {"test_x.py": "import not_a_module_in_the_box\n"})
    result = run_verify([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, timeout=120, isolation=isolation)
    assert "No module named 'not_a_module_in_the_box'" in result.cause
