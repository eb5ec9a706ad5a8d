"""The CLI's output formats (the Airflow CLI's ``-o/--output`` convention): ``json`` and ``yaml`` are the same data,
``plain`` is tab-separated without colour, ``table`` is drawn with rich, coloured only when asked or on a
terminal; real SQLite shard databases, the real console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_provider_worktree.core.store import ShardStore

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RUN = "manual__2026-12-07T01:00:00+00:00"


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "af"),
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**base, **env}, cwd=tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "shard_status.db")
    store = ShardStore.open(path)
    store.register_shards(RUN, [{"shard_id": f"s-{i:02d}", "task": "todo", "files": [f"m{i}.py"]} for i in range(4)])
    long_branch = "worktree/" + "manual__2026-12-07T01-00-00" + "-x" * 30 + "/s-00"
    store.complete(store.assign_shard(RUN, "w:1", shard_id="s-00"), branch=long_branch, commit_sha="c" * 40,
                   input_tokens=1200, output_tokens=80, cost_usd=0.0123)
    store.fail(store.assign_shard(RUN, "w:2", shard_id="s-01"), "verification failed: the verify command failed "
               "(exit 1): ModuleNotFoundError: No module named 'freezegun'")
    store.assign_shard(RUN, "w:3", shard_id="s-02")
    store.close()
    return path


@pytest.mark.parametrize("command", [["report"], ["thresholds"], ["stale", "--older-than", "0s"], ["batches"]])
def test_json_and_yaml_are_the_same_data(tmp_path, db, command):
    as_json = _cli(tmp_path, *command, "--db", db, "-o", "json")
    alias = _cli(tmp_path, *command, "--db", db, "--json")
    as_yaml = _cli(tmp_path, *command, "--db", db, "--output", "yaml")
    assert as_json.returncode == alias.returncode == as_yaml.returncode, (as_json.stderr, as_yaml.stderr)
    data = json.loads(as_json.stdout)
    assert data == json.loads(alias.stdout) == yaml.safe_load(as_yaml.stdout)
    assert data and not ANSI.search(as_yaml.stdout)


def test_status_and_check_print_parseable_yaml(tmp_path, db):
    status = yaml.safe_load(_cli(tmp_path, "status", "--db", db, "-o", "yaml").stdout)   # ages differ per call
    assert status["counts"] == {"pending": 1, "running": 1, "completed": 1, "failed": 1}
    assert "No module named 'freezegun'" in status["recent_failures"][0]["error_message"]
    check = _cli(tmp_path, "check", "--db", db, "-o", "yaml")
    assert check.returncode == 2 and yaml.safe_load(check.stdout)["level"] == "critical"  # 1 failed of 4


def test_options_go_before_or_after_the_command(tmp_path, db):
    before = _cli(tmp_path, "-o", "yaml", "report", "--db", db)
    after = _cli(tmp_path, "report", "--db", db, "-o", "yaml")
    assert before.stdout == after.stdout and yaml.safe_load(before.stdout)["runs"][0]["run_id"] == RUN


def test_plain_is_tab_separated_without_colour(tmp_path, db):
    out = _cli(tmp_path, "report", "--db", db, "-o", "plain", "--color", "always")
    assert out.returncode == 0 and not ANSI.search(out.stdout)
    rows = [line.split("\t") for line in out.stdout.splitlines() if "\t" in line]
    assert rows[0] == ["SHARD", "STATUS", "BRANCH", "COMMIT", "DURATION", "TOKENS IN/OUT", "COST"]
    assert {r[0]: r[1] for r in rows[1:]} == {"s-00": "completed", "s-01": "failed", "s-02": "running",
                                              "s-03": "pending"}
    assert "No module named 'freezegun'" in out.stdout and "not done s-03 (pending): never claimed" in out.stdout


def test_colour_only_when_asked_and_tables_fit_a_narrow_terminal(tmp_path, db):
    coloured = _cli(tmp_path, "status", "--db", db, "--color", "always")
    plain = _cli(tmp_path, "status", "--db", db, "--color", "never")
    assert ANSI.search(coloured.stdout) and "\x1b[31m" in coloured.stdout, "failed in red"
    assert not ANSI.search(plain.stdout)
    report = _cli(tmp_path, "report", "--db", db, "--color", "always").stdout
    assert ANSI.sub("", report) == _cli(tmp_path, "report", "--db", db).stdout, "colour never shifts a column"
    assert not ANSI.search(_cli(tmp_path, "status", "--db", db, NO_COLOR="1").stdout)
    narrow = _cli(tmp_path, "report", "--db", db, "--color", "never", COLUMNS="72")
    table = [line for line in narrow.stdout.splitlines() if line.startswith(("SHARD", "s-0"))]
    assert len(table) == 5 and all(len(line) <= 72 for line in table), narrow.stdout
    row = next(line for line in table if line.startswith("s-00"))
    branch = row.split()[2]
    assert "…" in branch and branch.startswith("wor") and branch.endswith("s-00"), "head and tail of a branch kept"
    assert "$0.0123" in row and "1,200/80" in row, "figures are never cut"


def test_a_bad_format_is_a_usage_error(tmp_path, db):
    out = _cli(tmp_path, "status", "--db", db, "-o", "xml")
    assert out.returncode == 3 and "invalid choice: 'xml'" in out.stderr and "Traceback" not in out.stderr
