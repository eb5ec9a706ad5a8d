"""The report counts every attempt's spend, shows the whole input (uncached, cache read, cache write), the
isolation in force, files kept out of a commit, and labels a run against the offline test double as such.
A real SQLite shard database written through the store, and one real shard run end to end."""

from __future__ import annotations

import anthropic
import pytest

from airflow_provider_worktree.core.lifecycle import ShardConfig, is_offline_double, run_shard
from airflow_provider_worktree.core.health.report import build_report, render_markdown
from airflow_provider_worktree.core.runners import ApiRunner
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from airflow_provider_worktree.testing import OfflineMessagesServer

RUN = "manual__2026-11-30T04:00:00+00:00"


def test_every_attempt_counts_and_input_is_shown_whole(tmp_path):
    store = ShardStore.open(str(tmp_path / "s.db"))
    store.register_shards(RUN, ["s1", "s2"])
    first = store.assign_shard(RUN, "w:1", "s1")
    store.fail(first, "transient: connection reset", input_tokens=0, output_tokens=40, cache_read_tokens=900,
               cache_write_tokens=100, cost_usd=0.02, summary={"model": "claude-sonnet-4-6", "offline": False})
    second = store.assign_shard(RUN, "w:2", "s1")
    store.complete(second, commit_sha="a" * 40, input_tokens=5, output_tokens=60, cache_read_tokens=1000,
                   cache_write_tokens=0, cost_usd=0.03, isolation="bwrap",
                   summary={"model": "claude-sonnet-4-6", "offline": False, "excluded_files": [".github/x.yml"]})
    report = build_report(store, RUN)
    s1 = next(s for s in report["shards"] if s["shard_id"] == "s1")
    assert s1["cost_usd"] == pytest.approx(0.05), "both attempts' cost, not the last one's"
    assert s1["input_total"] == 2005 and s1["input_tokens"] == 5 + 0
    assert [a["status"] for a in s1["attempts"]] == ["failed", "completed"]
    t = report["totals"]
    assert t["input_total"] == 2005 and t["cost_usd"] == pytest.approx(0.05) and t["attempts"] == 2
    assert t["isolation"] == ["bwrap"] and t["offline"] is False
    md = render_markdown(report)
    assert "input 2,005 (uncached 5 + cache read 1,900 + cache write 100), output 100" in md, "never just 'in 5'"
    assert "## Attempts" in md and "transient: connection reset" in md
    assert ".github/x.yml" in md and "$0.0500" in md and "OFFLINE" not in md


def test_a_run_against_the_offline_double_is_labelled(git_repo, tmp_path):
    store = ShardStore.open(str(tmp_path / "s.db"))
    with OfflineMessagesServer() as server:
        client = anthropic.Anthropic(api_key="sk-offline-test-double-not-a-key", base_url=server.base_url)
        result = run_shard(plan_shards(str(git_repo), "todo", max_files=5)[0], RUN, task=get_task("todo"),
                           manager=WorktreeManager(git_repo, worktree_root=tmp_path / "wt"),
                           runner=ApiRunner(client, "claude-sonnet-4-6"), store=store,
                           config=ShardConfig(heartbeat_interval=0.5, isolation="none"))
    assert result.status == "completed" and result.offline
    report = build_report(store, RUN)
    assert report["totals"]["offline"] and report["shards"][0]["isolation"] == "none"
    md = render_markdown(report)
    assert "OFFLINE TEST DOUBLE" in md and "(offline test double, not billed)" in md


def test_offline_detection():
    assert is_offline_double("claude-offline-test-double", "https://api.anthropic.com")
    assert is_offline_double("claude-sonnet-4-6", "http://127.0.0.1:8765")
    assert is_offline_double("claude-sonnet-4-6", None, "sk-offline-test-double-not-a-key")
    assert not is_offline_double("claude-sonnet-4-6", "https://api.anthropic.com", "sk-ant-api03-xyz")
    assert not is_offline_double("claude-sonnet-4-6", None)
