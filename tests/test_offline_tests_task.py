"""The offline model's ``tests`` task writes tests that import a module the way the project's own tests do (issue
23): on requests' real source (a ``src/`` layout whose modules use relative imports) the written tests pass when
run, where loading the file by path fails on ``from . import ...``."""

from __future__ import annotations

import subprocess
import sys

from airflow_provider_worktree.testing.planners import plan_tests

MODULES = ["src/requests/models.py", "src/requests/utils.py", "src/requests/__init__.py"]


def test_written_tests_pass_on_a_src_layout_with_relative_imports(real_repo_factory):
    repo = real_repo_factory("requests")
    written = plan_tests(MODULES)
    assert len(written) == 3
    for path, body in written:
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
                          *[p for p, _ in written]], cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    # the old way, by path, fails on the relative imports: the reason the import by name matters
    by_path = subprocess.run([sys.executable, "-c", "import importlib.util as u; s = u.spec_from_file_location("
                              "'models', 'src/requests/models.py'); s.loader.exec_module(u.module_from_spec(s))"],
                             cwd=repo, capture_output=True, text=True, timeout=120)
    assert by_path.returncode != 0 and "relative import" in by_path.stderr


def test_the_tests_task_runs_the_tests_a_shard_wrote(repo_factory):
    """The written tests run before the commit; failing ones fail the shard with the cause in one line."""
    from airflow_provider_worktree.core.tasks import get_task

    repo = repo_factory("r", {"pkg/__init__.py": "", "pkg/calc.py": "def add(a, b):\n    return a + b\n"})
    task = get_task("tests")
    before = task.measure(repo, ["pkg/calc.py"])
    assert before["written_tests"] is None, "nothing written yet: nothing run"
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(
        "from pkg.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    good = task.measure(repo, ["pkg/calc.py"])
    assert good["written_tests"] == {"files": ["tests/test_calc.py"], "ok": True, "cause": ""}
    ok, reason = task.evaluate(before, good, None)
    assert ok and "the written tests pass (1 file(s))" in reason
    (repo / "tests" / "test_calc.py").write_text(
        "from pkg.calc import add\nimport freezegun_missing_here\n\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    bad = task.measure(repo, ["pkg/calc.py"])
    ok, reason = task.evaluate(before, bad, None)
    assert not ok and "the written tests fail (tests/test_calc.py)" in reason
    assert "No module named 'freezegun_missing_here'" in reason
    off = get_task("tests", run_tests=False).measure(repo, ["pkg/calc.py"])
    assert off["written_tests"] is None
