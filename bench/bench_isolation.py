"""Benchmark: the cost of isolation per verify, bubblewrap (and the fallback) against a plain run.

Takes a small real project nobody here wrote (click's sources from its pinned PyPI sdist, via
``tests/realrepos.py``; cached outside the project), commits it into a fresh git repository, and runs its test
suite with ``run_verify`` in interleaved rounds: ``isolation="none"`` (the baseline: a plain run with the
allowlisted environment), ``"bwrap"`` and the fallback (``"auto"`` on a worker whose probe found no bubblewrap).
Prints the median wall time of each and the ratios against the baseline of the same run (target <= 1.15).

    .venv/bin/python bench/bench_isolation.py [--rounds 7] [--project click]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from airflow_provider_worktree.core.sandbox import box  # noqa: E402
from airflow_provider_worktree.core.tasks import run_verify  # noqa: E402
from realrepos import real_repo  # noqa: E402


def one(mode: str, repo: Path, argv: list[str]) -> float:
    if mode == "fallback":
        box._probe = (False, "benchmark: fallback path")  # what a worker without bubblewrap has
    else:
        box._probe = None  # probe again (cached after the first call of the round)
    start = time.perf_counter()
    result = run_verify(argv, repo, timeout=900, isolation="auto" if mode == "fallback" else mode,
                        env={"PYTHONPATH": "src"})
    elapsed = time.perf_counter() - start
    if not result.ok or result.isolation != mode:
        sys.exit(f"{mode}: verify failed or ran as {result.isolation}:\n{result.output_tail[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--project", default="click")
    args = parser.parse_args()
    if not box.bwrap_status()[0]:
        sys.exit(f"bubblewrap does not work here ({box.bwrap_status()[1]}): nothing to compare.")
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        repo = real_repo(Path(tmp) / args.project, args.project)
        # The project treats warnings as errors; a newer pytest than its own deprecates one of its idioms.
        argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "filterwarnings=", "tests"]
        modes = ["none", "bwrap", "fallback"]
        for mode in modes:  # warm-up: page cache, .pyc files
            one(mode, repo, argv)
        times: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(args.rounds):
            for mode in modes[i % 3:] + modes[: i % 3]:  # rotate the order: no mode always runs first
                times[mode].append(one(mode, repo, argv))
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"{args.project} test suite, {args.rounds} interleaved rounds, medians:")
    for m in modes:
        print(f"  {m:9s} {med[m]:8.3f} s   (min {min(times[m]):.3f}, max {max(times[m]):.3f})")
    print(f"  bwrap/none    {med['bwrap'] / med['none']:.3f}x  (target <= 1.15)")
    print(f"  fallback/none {med['fallback'] / med['none']:.3f}x")


if __name__ == "__main__":
    main()
