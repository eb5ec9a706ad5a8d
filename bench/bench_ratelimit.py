"""Benchmark: many shards at an organisation's input-token limit, with the shared limiter against per-worker retries.

    .venv/bin/python bench/bench_ratelimit.py [--shards 100] [--workers 20] [--itpm 120000] [--turns 3]
                                              [--file-kb 8] [--mode both|shared|baseline] [--json FILE]

The offline Messages API server (the package's test double, never the real API) enforces ``--itpm`` input tokens
per minute like the API does (continuous refill, ``anthropic-ratelimit-*`` headers, 429 with ``retry-after``,
cache reads not counted). ``--workers`` worker processes (spawn) take ``--shards`` shards from one queue; each
shard is a real ``ApiRunner`` conversation over the real ``anthropic`` SDK in its own directory: ``--turns - 1``
tool calls viewing a file of ``--file-kb`` KB (so the conversation grows and the prompt cache matters), then a
final answer. Two runs, the same load, the same process:

1. **baseline**: today's per-worker behaviour (no shared limiter; each worker retries 429s on its own, honouring
   ``retry-after`` up to the runner's cap, ``max_retries=5``);
2. **shared**: one ``SharedLimiter`` over a real SQLite shard database; the workers are split between two DAG run
   ids sharing the limit, to show that both progress.

Printed per run: wall time, input tokens the server charged, achieved input tokens per minute over the run divided
by the limit (``of_limit``: the tokens beyond the first full bucket, which goes at once, over the wall time; 1.0 is
the refill rate exactly, the target is 0.9 or more), the share of calls answered 429 (target at most 1 %), shards
failed (target 0), and for the shared run each DAG run's shards done and achieved rate. Timings are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "claude-sonnet-4-6"
SCOPE = "anthropic:bench"


def _model(turns: int):
    """A conversation of ``turns`` calls: view ``data.txt`` until the last, then answer."""
    from airflow_provider_worktree.testing import ScriptedModel, text_reply, tool_use_reply

    def reply(request: dict) -> dict:
        done = sum(1 for m in request["messages"] if m["role"] == "assistant")
        if done + 1 < turns:
            return tool_use_reply("str_replace_based_edit_tool", {"command": "view", "path": "data.txt"},
                                  text=f"Reading the file (step {done + 1}).")
        return text_reply("The file holds numbered lines; nothing to change.")

    return ScriptedModel([reply] * 100_000)


def _worker(base_url: str, db: str | None, run_id: str, queue, out, file_kb: int, ready) -> None:
    import anthropic

    from airflow_provider_worktree.core.ratelimit import SharedLimiter
    from airflow_provider_worktree.core.runners import ApiRunner, ModelRequestError
    from airflow_provider_worktree.core.store import ShardStore

    client = anthropic.Anthropic(api_key="sk-ant-bench", base_url=base_url, max_retries=0)
    limiter = SharedLimiter(ShardStore.open(db), SCOPE, run_id=run_id, max_wait_s=600) if db else None
    work = Path(tempfile.mkdtemp(prefix="bench-rl-"))
    ready.put(1)
    while True:
        shard = queue.get()
        if shard is None:
            break
        (work / "data.txt").write_text("".join(f"{shard}:{i:06d} the quick brown fox jumps over the lazy dog\n"
                                               for i in range(file_kb * 1024 // 60)))
        runner = ApiRunner(client, MODEL, max_tokens=256, limiter=limiter, max_turns=10)
        started = time.time()
        try:
            r = runner.run(work, f"Shard {shard}: read data.txt with the editor tool and say whether it needs "
                                 f"changes. " + "Be brief. " * 50)
            out.put((run_id, shard, r.stop_reason == "end_turn", r.throttled, r.wait_s, started, time.time()))
        except ModelRequestError as exc:
            res = exc.result
            out.put((run_id, shard, False, res.throttled if res else 0, res.wait_s if res else 0.0, started,
                     time.time()))


def run(mode: str, args: argparse.Namespace) -> dict:
    from airflow_provider_worktree.core.store import ShardStore
    from airflow_provider_worktree.testing import OfflineMessagesServer, RateLimits

    ctx = mp.get_context("spawn")
    db = str(Path(tempfile.mkdtemp(prefix="bench-rl-db-")) / "shards.db") if mode == "shared" else None
    if db:
        ShardStore.open(db).close()
    with OfflineMessagesServer(_model(args.turns), rate_limits=RateLimits(input_tokens_per_minute=args.itpm)) as srv:
        queue, out, ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
        runs = ["run-a", "run-b"] if mode == "shared" else ["baseline"]
        procs = [ctx.Process(target=_worker, args=(srv.base_url, db, runs[i % len(runs)], queue, out, args.file_kb,
                                                   ready)) for i in range(args.workers)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        started = time.time()
        for shard in range(args.shards):
            queue.put(shard)
        for _ in procs:
            queue.put(None)
        results = [out.get(timeout=3600) for _ in range(args.shards)]
        wall = time.time() - started
        for p in procs:
            p.join(60)
        billed = srv.billed
        rejected, admitted = srv.limiter.rejected, srv.limiter.admitted
    charged = billed.input_tokens + billed.cache_write_tokens
    per_run = {}
    for run_id in runs:
        mine = [r for r in results if r[0] == run_id]
        span = (max(r[6] for r in mine) - min(r[5] for r in mine)) if mine else 0.0
        per_run[run_id] = {"shards": len(mine), "ok": sum(1 for r in mine if r[2]), "span_s": round(span, 1),
                           "last_done_s": round(max(r[6] for r in mine) - started, 1) if mine else None}
    if db:
        store = ShardStore.open(db, read_only=True)
        for row in store.rate_runs():
            per_run[row["run_id"]]["input_tokens"] = row["input_tokens"]
            per_run[row["run_id"]]["wait_s"] = round(row["wait_s"], 1)
    return {
        "mode": mode, "wall_s": round(wall, 1), "shards": args.shards, "workers": args.workers,
        "ok": sum(1 for r in results if r[2]), "failed": sum(1 for r in results if not r[2]),
        "calls": admitted + rejected, "answered_429": rejected,
        "share_429": round(rejected / (admitted + rejected), 4) if admitted + rejected else 0.0,
        "charged_input_tokens": charged, "cache_read_tokens": billed.cache_read_tokens,
        "input_tpm": round(charged / (wall / 60.0)), "itpm_limit": args.itpm,
        # the bucket starts full (one limit's worth goes at once): the rest came at the refill rate
        "of_limit": round(max(0.0, charged - args.itpm) / (wall / 60.0) / args.itpm, 3),
        "ideal_s": round(max(0.0, charged - args.itpm) / args.itpm * 60.0, 1),
        "wait_s_total": round(sum(r[4] for r in results), 1), "per_run": per_run,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--itpm", type=int, default=120_000, help="input tokens per minute the server allows")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--file-kb", type=int, default=8)
    ap.add_argument("--mode", choices=("both", "shared", "baseline"), default="both")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    print(f"# bench_ratelimit {platform.python_version()} {platform.machine()} cpus={os.cpu_count()} "
          f"shards={args.shards} workers={args.workers} itpm={args.itpm} turns={args.turns} file_kb={args.file_kb}")
    figures = []
    for mode in (("baseline", "shared") if args.mode == "both" else (args.mode,)):
        f = run(mode, args)
        figures.append(f)
        print(f"{mode:9s} wall {f['wall_s']:7.1f}s  ideal ~{f['ideal_s']:.0f}s (the full bucket goes at once)  "
              f"ok {f['ok']}/{f['shards']} failed {f['failed']}  calls {f['calls']} 429 {f['answered_429']} "
              f"({f['share_429']:.1%})  input {f['charged_input_tokens']:,} -> {f['input_tpm']:,}/min = "
              f"{f['of_limit']:.2f} of the limit  waited {f['wait_s_total']:.0f}s")
        for run_id, r in f["per_run"].items():
            print(f"          {run_id}: {r}")
    if len(figures) == 2:
        base, shared = figures
        print(f"ratio shared/baseline: of_limit {shared['of_limit'] / max(base['of_limit'], 1e-9):.2f}, "
              f"wall {shared['wall_s'] / max(base['wall_s'], 1e-9):.2f}, 429 share {shared['share_429']:.2%} vs "
              f"{base['share_429']:.2%}, failed {shared['failed']} vs {base['failed']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
