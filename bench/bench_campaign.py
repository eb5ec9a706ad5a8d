"""Benchmark of a campaign's planning at scale: R generated repositories x F files, planned into shards and
registered for one DAG run, against one repository planned alone in the same process (the baseline).

    .venv/bin/python bench/bench_campaign.py [--repos 200] [--files 25] [--max-files 5]

Prints the time to plan every repository (each with ``plan_repository``, the shard ids prefixed per repository as
the ``campaign_maintenance`` DAG does), the ratio to R times the one-repository figure (1.00 = planning scales
linearly), the registration of every shard in one SQLite shard database against registering one repository's,
and the process's peak memory. The repositories are generated (real git repositories, one commit each).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_worktree.core.campaigns.run import prefixed, repo_prefix, shard_budget  # noqa: E402
from airflow_provider_worktree.core.campaigns.types import Target  # noqa: E402
from airflow_provider_worktree.core.planning import plan_repository  # noqa: E402
from airflow_provider_worktree.core.store import ShardStore  # noqa: E402
from airflow_provider_worktree.core.tasks import get_task  # noqa: E402

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@example.com"}


def make_repos(root: Path, repos: int, files: int) -> list[Path]:
    out = []
    for r in range(repos):
        path = root / f"repo-{r:04d}"
        (path / "pkg").mkdir(parents=True)
        for f in range(files):
            (path / "pkg" / f"mod_{f:03d}.py").write_text(
                f'"""Module {f} of repository {r}."""\n\n\ndef f_{f}(x):\n    # TODO: handle None\n    return x + {f}\n')
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=ENV)
        subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=ENV)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=ENV)
        out.append(path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=200)
    ap.add_argument("--files", type=int, default=25)
    ap.add_argument("--max-files", type=int, default=5)
    a = ap.parse_args()
    task = get_task("todo")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repos = make_repos(Path(tmp), a.repos, a.files)
        made = time.perf_counter() - t0
        budget = shard_budget(1024, len(repos))

        one = []  # the baseline: one repository planned alone, five times
        for _ in range(5):
            t = time.perf_counter()
            plan_repository(repos[0], task, max_files=a.max_files, max_shards=1024)
            one.append(time.perf_counter() - t)
        t_one = statistics.median(one)

        t = time.perf_counter()
        shards = []
        for path in repos:
            plan = plan_repository(path, task, max_files=a.max_files, max_shards=budget)
            shards += prefixed(plan.shards, Target(path.name, str(path)))
        t_all = time.perf_counter() - t

        store = ShardStore.open(str(Path(tmp) / "one.db"))
        first = [s for s in shards if s["shard_id"].startswith(repo_prefix(repos[0].name))]
        t = time.perf_counter()
        store.register_shards("one", first)
        t_reg_one = time.perf_counter() - t
        store = ShardStore.open(str(Path(tmp) / "all.db"))
        t = time.perf_counter()
        store.register_shards("all", shards)
        t_reg_all = time.perf_counter() - t
        assert len({s["shard_id"] for s in shards}) == len(shards), "two repositories share a shard id"

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_shard_one = t_reg_one / max(1, len(first))
    per_shard_all = t_reg_all / max(1, len(shards))
    print(f"{a.repos} repositories x {a.files} files (generated in {made:.1f}s), max {a.max_files} files per shard, "
          f"shard budget {budget} per repository")
    print(f"shards: {len(shards)} ({len(first)} in one repository)")
    print(f"plan one repository (baseline, median of 5): {t_one * 1000:.1f} ms")
    print(f"plan all {a.repos}: {t_all:.2f} s = {t_all / a.repos * 1000:.1f} ms per repository; "
          f"ratio to {a.repos} x baseline: {t_all / (a.repos * t_one):.2f}")
    print(f"register {len(shards)} shards: {t_reg_all * 1000:.0f} ms = {per_shard_all * 1000:.3f} ms per shard; "
          f"one repository's {len(first)}: {per_shard_one * 1000:.3f} ms per shard; ratio {per_shard_all / per_shard_one:.2f}")
    print(f"peak memory of this process: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
