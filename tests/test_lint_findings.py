"""The lint metric counts findings, read from real linters' output (issue 23): ruff's JSON and concise formats and
flake8's default format count each finding once and no summary line; the offline model's mechanical fixes make
real linters report fewer findings and keep the file parsing."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_worktree.core.tasks import get_task, parse_findings
from airflow_provider_worktree.testing.lint_fixes import plan_lint_fixes
from airflow_provider_worktree.testing.planners import apply_changes

BIN = Path(sys.executable).parent
RUFF, FLAKE8 = shutil.which("ruff", path=str(BIN)), shutil.which("flake8", path=str(BIN))
needs_linters = pytest.mark.skipif(not (RUFF and FLAKE8), reason="ruff and flake8 come with the test extra")

MESSY = textwrap.dedent('''\
    """A module with the findings every linter reports."""
    import os
    import sys, json

    DOC = """trailing spaces inside a string stay   
    """


    def f(x):   
        if x == None:
            return f"hi"
        return x == True and json.dumps({})
    ''')
RULES = "F401,W291,W293,E711,E712,F541"


def _run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120).stdout


@needs_linters
def test_each_format_counts_each_finding_once(tmp_path):
    (tmp_path / "m.py").write_text(MESSY)
    raw = json.loads(_run([RUFF, "check", "--isolated", "--no-cache", f"--select={RULES}", "--output-format=json",
                           "m.py"], tmp_path))
    as_json = parse_findings(json.dumps(raw), prefixes=[f"{tmp_path}/"])
    assert len(as_json) == len(raw) >= 7 and {f.path for f in as_json} == {"m.py"}
    assert {f.code for f in as_json} >= {"F401", "W291", "E711", "E712", "F541"}
    concise = _run([RUFF, "check", "--isolated", "--no-cache", f"--select={RULES}", "--output-format=concise",
                    "m.py"], tmp_path)
    assert "Found" in concise and len(concise.strip().splitlines()) > len(raw), "summary lines are there..."
    assert len(parse_findings(concise)) == len(raw), "...and do not count"
    full = _run([RUFF, "check", "--isolated", "--no-cache", f"--select={RULES}", "--output-format=full", "m.py"],
                tmp_path)
    assert " --> m.py:" in full and len(parse_findings(full)) == len(raw), "ruff's default format, one per finding"
    assert {f.code for f in parse_findings(full)} == {f.code for f in as_json}
    (tmp_path / "clean.py").write_text("X = 1\n")
    clean = _run([RUFF, "check", "--isolated", "--no-cache", "clean.py"], tmp_path)
    assert clean.strip() == "All checks passed!" and parse_findings(clean) == [], "a clean run has no finding"
    flake8 = _run([FLAKE8, f"--select={RULES}", "--count", "m.py"], tmp_path)
    found = parse_findings(flake8)
    assert len(found) == len(flake8.strip().splitlines()) - 1, "flake8's --count total is not a finding"
    assert all(f.path == "m.py" and f.line > 0 and f.code for f in found)


def test_pylint_json_and_the_line_fallback():
    pylint = [{"type": "warning", "module": "m", "obj": "", "line": 2, "column": 0, "path": "pkg/m.py",
               "symbol": "unused-import", "message": "Unused import os", "message-id": "W0611"}]
    assert parse_findings(json.dumps(pylint)) == [parse_findings(json.dumps({"messages": pylint}))[0]]
    assert str(parse_findings(json.dumps(pylint))[0]) == "pkg/m.py:2: W0611 Unused import os"
    assert len(parse_findings("one complaint\n\nanother complaint\n")) == 2      # no known format: per line


@needs_linters
def test_the_lint_task_measures_with_json_and_the_double_fixes_what_it_can(tmp_path):
    (tmp_path / "m.py").write_text(MESSY)
    task = get_task("lint", lint_command=[RUFF, "check", "--isolated", "--no-cache", f"--select={RULES}",
                                          "--output-format=json"])
    before = task.measure(tmp_path, ["m.py"])
    lines = tuple(MESSY.splitlines())
    fixed = "\n".join(apply_changes(lines, plan_lint_fixes("m.py", lines))) + "\n"
    ast.parse(fixed)
    assert "trailing spaces inside a string stay   \n" in fixed, "string content is not whitespace to strip"
    assert "import json" in fixed and "import os" not in fixed and "x is None" in fixed and 'return "hi"' in fixed
    (tmp_path / "m.py").write_text(fixed)
    after = task.measure(tmp_path, ["m.py"])
    assert before["findings"] >= 7 and after["findings"] < before["findings"]
    assert task.evaluate(before, after, None)[0] is True
    flake8_after = parse_findings(_run([FLAKE8, f"--select={RULES}", "m.py"], tmp_path))
    assert [f.code for f in flake8_after] == ["W291"], "only the string's own trailing spaces are left"
