"""One shard through the core API, no Airflow: the baseline of bench/bench_e2e.py's ``xargs`` run.

    python bench/xargs_shard.py --db DB --repo REPO --root DIR --run-id RUN --base-url URL SHARD_ID

bench_e2e.py registers the shards in DB and runs ``xargs -P <parallel> -n 1`` over their ids: one fresh Python
process per shard, as a plain shell loop would, with the same lifecycle (claim, worktree, the Anthropic SDK over
HTTP to the offline test double, metric, commit, record, cleanup) and no scheduler, executor or task runner.
"""

from __future__ import annotations

import argparse
import sys

import anthropic

from airflow_provider_worktree.core.lifecycle import run_shard
from airflow_provider_worktree.core.runners import ApiRunner
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--db", "--repo", "--root", "--run-id", "--base-url"):
        ap.add_argument(name, required=True)
    ap.add_argument("--task", default="todo")
    ap.add_argument("--model", default="claude-offline-test-double")
    ap.add_argument("shard_id")
    a = ap.parse_args(argv)
    store = ShardStore.open(a.db)
    shard = store.get_shard(a.run_id, a.shard_id)  # ShardNotFound names the shard and the run
    client = anthropic.Anthropic(base_url=a.base_url, api_key="sk-offline-test-double-not-a-key")
    result = run_shard({"shard_id": a.shard_id, "files": shard["files"], "task": a.task}, a.run_id,
                       task=get_task(a.task), manager=WorktreeManager(a.repo, a.root),
                       runner=ApiRunner(client, a.model), store=store)
    print(f"{a.shard_id} {result.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
