"""One set of figures everywhere (issue 22, item 5): ``airflow-worktree report``, the Markdown report and the
dashboard's JSON (what its page prints) show one run's input, cache and output tokens, durations and cost in the same words,
mark a run against the offline test double, and say neutrally that a run planned no shards. One real SQLite shard
database; the CLI through its real console entry point."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.core.health.figures import NO_SHARDS, OFFLINE_MARK, format_duration
from airflow_provider_worktree.core.health.report import build_report, render_markdown
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.ui import data

RUN = "manual__2026-12-09T10:00:00+00:00"
#: The figures of the run below, in the one wording (the issue's example: the CLI said "tokens: 0 in").
TOKENS = "input 12,908 (uncached 0 + cache read 11,000 + cache write 1,908), output 256"


class _Clock:
    """A store clock the test moves: shard durations are exact."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 9, 10, 0, 0)

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _seed(path: str, *, offline: bool) -> None:
    clock = _Clock()
    store = ShardStore.open(path, clock=clock)
    store.register_shards(RUN, [{"shard_id": sid, "task": "todo", "files": [f"{sid}.py"]} for sid in ("a", "b")])
    lease = store.assign_shard(RUN, "w:1", "a")
    clock.tick(0.23)
    store.complete(lease, branch=f"worktree/{RUN}/a", commit_sha="a" * 40, input_tokens=0, output_tokens=200,
                   cache_read_tokens=10_000, cache_write_tokens=1_500, cost_usd=0.0061,
                   summary={"model": "claude-sonnet-4-6", "offline": offline})
    lease = store.assign_shard(RUN, "w:2", "b")
    clock.tick(150)
    store.complete(lease, branch=f"worktree/{RUN}/b", commit_sha="b" * 40, input_tokens=0, output_tokens=56,
                   cache_read_tokens=1_000, cache_write_tokens=408, cost_usd=0.0015,
                   summary={"model": "claude-sonnet-4-6", "offline": offline})
    store.close()


def _cli_report(tmp_path: Path, db: str, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "af"), "COLUMNS": "200",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    proc = subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", "report", "--db", db,
                           "--color", "never", *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "billed"])
def test_cli_report_and_dashboard_print_the_same_figures(tmp_path, offline):
    db = str(tmp_path / "shard_status.db")
    _seed(db, offline=offline)
    cli = _cli_report(tmp_path, db)
    store = ShardStore.open(db, read_only=True)
    markdown = render_markdown(build_report(store, RUN))
    run = data.run_view(store, RUN, now=0)
    (listed,) = data.runs_view(store, now=0)["runs"]

    # tokens: the whole input (cache reads and writes included) and its parts, the same words in all three
    assert f"tokens: {TOKENS}" in cli
    assert f"- Tokens: {TOKENS}" in markdown
    assert run["figures"]["tokens"] == listed["figures"]["tokens"] == TOKENS
    assert "0 in" not in cli and "tokens: 0" not in cli
    # per shard: the same short cell in the CLI table and the page's rows; the page's title is the whole text
    shard_a = next(s for s in run["shards"] if s["shard_id"] == "a")
    assert shard_a["tokens_text"] == "11,500/200" and re.search(r"^a\s.*\s11,500/200\s", cli, re.M), cli
    assert shard_a["tokens_title"] in markdown
    # durations: one decimal everywhere (0.23 s was "0s" in the CLI and "0.2s" on the page)
    assert [s["duration_text"] for s in run["shards"]] == ["0.2s", "2.5 min"]
    assert re.search(r"^a\s.*\s0\.2s\s", cli, re.M) and re.search(r"^b\s.*\s2\.5 min\s", cli, re.M), cli
    assert "| 0.2s |" in markdown and "| 2.5 min |" in markdown
    summary = f"avg {run['figures']['avg_duration']}, max {run['figures']['max_duration']}"
    assert summary == "avg 75.1s, max 2.5 min"
    assert f"duration {summary}" in cli and f"- Duration: {summary}" in markdown
    # cost, and the offline mark in all three
    cost = run["figures"]["cost"]
    assert cost == listed["figures"]["cost"] == "$0.0076" + (f" ({OFFLINE_MARK})" if offline else "")
    assert f"cost {cost};" in cli and f"- Cost: {cost}" in markdown
    assert run["offline"] is listed["offline"] is offline
    assert (OFFLINE_MARK in cli.splitlines()[0]) is offline, cli
    assert ("OFFLINE TEST DOUBLE" in markdown) is offline
    store.close()


def test_a_run_that_planned_no_shards_says_so_neutrally_everywhere(tmp_path):
    db = str(tmp_path / "shard_status.db")
    _seed(db, offline=False)
    store = ShardStore.open(db, read_only=True)
    empty = "scheduled__2026-12-09T11:00:00+00:00"  # a DAG run whose plan matched no file: no shard row at all
    assert data.run_view(store, empty) is None  # a run id nobody knows: the app answers 404
    view = data.run_view(store, empty, known_run=True)  # a DAG run Airflow knows: a view with no rows
    assert view["message"] == NO_SHARDS and view["shards"] == [] and view["total"] == 0
    assert view["health"]["level"] == "ok" and view["figures"]["duration"] == ""
    markdown = render_markdown(build_report(store, empty))
    assert "This run planned no shards (nothing matched the task's files)." in markdown
    assert "| shard |" not in markdown  # no empty table
    store.close()
    assert f"shards: 0 ({NO_SHARDS})" in _cli_report(tmp_path, db, "--run-id", empty)


def test_durations_have_one_decimal():
    assert [format_duration(s) for s in (0.04, 0.23, 9.96, 45, 119.9, 150, 5400, 9000)] == [
        "0.0s", "0.2s", "10.0s", "45.0s", "119.9s", "2.5 min", "90.0 min", "2.5 h"]
    assert format_duration(None) == "-" and format_duration(None, none="") == ""


def test_the_health_page_and_the_tasks_agree_on_the_default_worktree_root(tmp_path, monkeypatch, git_repo):
    """With no [worktree] worktree_root, the Health page measures where the maintain tasks put worktrees
    ($AIRFLOW_HOME/worktrees), instead of "no worktree root configured"."""
    from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
    from airflow_provider_worktree.ui import app

    monkeypatch.delenv("AIRFLOW__WORKTREE__WORKTREE_ROOT", raising=False)
    home = Path(os.environ["AIRFLOW_HOME"])
    root, source = app._worktree_root()
    manager = GitWorktreeHook(repo=str(git_repo)).get_manager()
    assert root == manager.worktree_root == os.path.realpath(home / "worktrees")
    assert "default" in source
    manager.create_worktree(RUN, "s1")
    db = str(tmp_path / "shard_status.db")
    _seed(db, offline=False)
    store = ShardStore.open(db, read_only=True)
    view = data.health_view(store, worktree_root=root, worktree_root_source=source)
    measured = {m["metric"]: m["value"] for m in view["metrics"]}
    assert measured["active_worktrees"] >= 1 and "disk_free_pct" in measured
    assert not any("no worktree root configured" in m["why"] for m in view["not_measured"])
    store.close()
    manager.remove_worktree(manager.list_worktrees()[-1].path)
