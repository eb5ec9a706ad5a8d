"""Benchmark: worktree create+remove through WorktreeManager vs raw git, full and sparse.

Generates a ~2,000-file repository in a temporary directory, then runs N interleaved rounds of:

* raw       ``git worktree add -b <branch> <path> HEAD`` + ``git worktree remove <path>``
* manager   ``WorktreeManager.create_worktree(...)`` + ``remove_worktree(...)`` (full checkout)
* sparse    the same with ``sparse_paths`` = a 10-file shard

and prints medians and the ratios manager/raw (target <= 1.25) and sparse/full (target < 0.25).

    .venv/bin/python bench/bench_worktree.py [--rounds 11] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_worktree.core.worktrees.manager import WorktreeManager  # noqa: E402


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path, n_files: int) -> list[str]:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    files = []
    for i in range(n_files):
        rel = f"pkg{i % 20:02d}/mod_{i:04d}.py"
        target = path / rel
        target.parent.mkdir(exist_ok=True)
        target.write_text(f'"""Module {i}."""\n\n\ndef f_{i}(x):\n    # TODO: handle negative x\n    return x + {i}\n'
                          + "# padding line\n" * (i % 40))
        files.append(rel)
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "initial")
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--files", type=int, default=2000)
    ns = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-worktree-"))
    try:
        repo = tmp / "repo"
        files = make_repo(repo, ns.files)
        root = tmp / "worktrees"
        mgr = WorktreeManager(repo, worktree_root=root)
        shard = files[:: max(1, len(files) // 10)][:10]
        times: dict[str, list[float]] = {"raw": [], "manager": [], "sparse": []}

        def raw(i: int) -> None:
            path = root / "raw" / f"r{i}"
            _git(repo, "worktree", "add", "-q", "-b", f"raw/{i}", str(path), "HEAD")
            _git(repo, "worktree", "remove", str(path))

        def managed(i: int) -> None:
            info = mgr.create_worktree("bench__2026-01-01T00:00:00+00:00", f"full-{i}")
            mgr.remove_worktree(info.path)

        def sparse(i: int) -> None:
            info = mgr.create_worktree("bench__2026-01-01T00:00:00+00:00", f"sparse-{i}", sparse_paths=shard)
            mgr.remove_worktree(info.path)

        for fn in (raw, managed, sparse):  # warm-up (page cache, first sparse config write)
            fn(-1)
        for i in range(ns.rounds):
            for name, fn in (("raw", raw), ("manager", managed), ("sparse", sparse)):
                t0 = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - t0)

        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"repository: {ns.files} files, rounds: {ns.rounds}, git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
        for k in ("raw", "manager", "sparse"):
            print(f"  {k:8s} create+remove median {med[k]:8.1f} ms")
        r1 = med["manager"] / med["raw"]
        r2 = med["sparse"] / med["manager"]
        print(f"  manager/raw  = {r1:.2f}  (target <= 1.25) {'OK' if r1 <= 1.25 else 'MISSED'}")
        print(f"  sparse/full  = {r2:.2f}  (target <  0.25) {'OK' if r2 < 0.25 else 'MISSED'}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    raise SystemExit(main())
