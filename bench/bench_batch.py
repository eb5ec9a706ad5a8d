"""Benchmark: the same docstrings run in batch mode against interactive mode: cost at list prices, and wall time.

    .venv/bin/python bench/bench_batch.py [--project requests] [--glob 'src/requests/*.py'] [--max-files 1]
                                          [--procs 4] [--rounds 3] [--model claude-sonnet-4-5] [--latency 0]
                                          [--min-cache-tokens 1024] [--json FILE]

One real repository nobody here wrote (the sdist of a pinned PyPI package via ``tests/realrepos.py``, cached
outside the project, committed into a fresh git repository in a temporary directory) is planned once for the
``docstrings`` task; the same shards then run twice, each time under a new run id, against the offline Messages
API test double (``OfflineMessagesServer``, the rule-based model; never the real API), with a real SQLite shard
database, real worktrees and the real ``anthropic`` SDK over HTTP:

1. **interactive** (the baseline): every shard's agent loop (``run_shard`` with an ``ApiRunner``), on a spawn
   pool of ``--procs`` processes;
2. **batch**: ``BatchCoordinator.submit`` (one Message Batch), ``server.finish_batches()`` (the offline double
   processes a batch at once; the real API takes minutes to hours, up to 24 h), ``collect``, then every shard's
   ``run_shard`` with the runner ``batch_runner`` picks (the stored reply, or the agent loop for a shard left out
   of the batch), on the same pool.

Costs are the shard database's: ``shard_attempts`` rows at ``PriceTable()`` list prices for the model, the rows
with status ``batch`` at batch prices. Prints per run the shards completed, docstrings added (missing before minus
after, from the shard results), tokens, cost, cost per docstring and wall time (the batch run split into submit,
processing, collect and apply), what the batch entries' tokens would cost at list prices, and the ratio
batch/interactive, and like for like on the shards sent in the batch when some were left to the agent loop.
``--rounds`` pairs run with alternating order, each on a fresh server (an empty prompt cache); tokens and costs are
the first round's (a round that differs is reported), wall times medians. The pool is started and warmed before
the clock starts. ``--latency`` delays each ``/v1/messages`` reply (interactive turns), not batch processing.
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests"))

from airflow_provider_worktree.core.runners import PriceTable, Usage  # noqa: E402

DEFAULT_GLOBS = {"requests": "src/requests/*.py", "attrs": "src/attr/*.py", "click": "src/click/*.py",
                 "flask": "src/flask/*.py"}
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ pool workers
def _warm() -> None:
    """Pool initializer: import what the shard workers import, so the pool's start-up is not in the timed runs."""
    import anthropic  # noqa: F401

    from airflow_provider_worktree.core import lifecycle  # noqa: F401
    from airflow_provider_worktree.core.runners import api, batch  # noqa: F401
    from airflow_provider_worktree.core.store import shards  # noqa: F401
    from airflow_provider_worktree.core.tasks import catalog  # noqa: F401
    from airflow_provider_worktree.core.worktrees import manager  # noqa: F401


def _ping(_: int) -> int:
    time.sleep(0.5)  # long enough that every pool process takes one: all have started and imported
    return os.getpid()


def _runner(ctx: dict, allowed_write):
    import anthropic

    from airflow_provider_worktree.core.runners import ApiRunner

    client = anthropic.Anthropic(api_key="sk-offline-bench", base_url=ctx["base_url"])
    return ApiRunner(client, ctx["model"], max_turns=ctx["max_turns"], max_tokens=ctx["max_tokens"],
                     allowed_write=allowed_write)


def _shard(job: tuple[dict, str, dict]) -> dict:
    """One shard through ``run_shard`` in a pool process: interactively, or as batch mode's apply step."""
    from airflow_provider_worktree.core.runners.batch import BatchEntryRunner, batch_runner
    from airflow_provider_worktree.core.lifecycle import ShardConfig, ShardFailed, run_shard
    from airflow_provider_worktree.core.store import ShardStore
    from airflow_provider_worktree.core.tasks import get_task
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    ctx, mode, shard = job
    t0 = time.perf_counter()
    store = ShardStore.open(ctx["db"])
    manager = WorktreeManager(ctx["repo"], ctx["worktrees"])
    task = get_task("docstrings")
    allowed = task.allowed_paths(shard)
    out = {"shard_id": shard["shard_id"], "via": "interactive"}
    try:
        if mode == "batch":
            plan = batch_runner(store, ctx["run_id"], shard["shard_id"],
                                interactive=lambda: _runner(ctx, allowed), allowed_write=allowed)
            out["via"] = "batch" if isinstance(plan.runner, BatchEntryRunner) else "interactive fallback"
            out["note"] = plan.note
            runner, base_ref = plan.runner, plan.base_ref or "HEAD"
        else:
            runner, base_ref = _runner(ctx, allowed), "HEAD"
        res = run_shard(shard, ctx["run_id"], task=task, manager=manager, runner=runner, store=store,
                        config=ShardConfig(base_ref=base_ref))
        out.update(status=res.status, turns=res.turns, before=res.metric_before.get("missing"),
                   after=res.metric_after.get("missing"), error=res.error)
    except ShardFailed as exc:
        out.update(status="failed", error=str(exc)[:300])
    out["seconds"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ accounting
def spend(store, run_id: str, model: str, shard_ids: set[str] | None = None) -> dict:
    """Tokens and cost of a run's attempts (of ``shard_ids`` only, if given), split into batch entries (status
    ``batch``) and the rest."""
    list_prices = PriceTable()
    out = {k: {t: 0 for t in TOKENS} | {"cost_usd": 0.0, "rows": 0} for k in ("batch", "interactive")}
    out["batch"]["list_cost_usd"] = 0.0
    for a in store.list_attempts(run_id):
        if shard_ids is not None and a["shard_id"] not in shard_ids:
            continue
        part = out["batch" if a["status"] == "batch" else "interactive"]
        for t in TOKENS:
            part[t] += int(a[t] or 0)
        part["cost_usd"] += float(a["cost_usd"] or 0)
        part["rows"] += 1
        if a["status"] == "batch":
            usage = Usage(*(int(a[t] or 0) for t in TOKENS))
            part["list_cost_usd"] += list_prices.cost(usage, a.get("model") or model)
    return out


def added(results: list[dict]) -> int:
    return sum(r["before"] - r["after"] for r in results
               if r.get("status") == "completed" and r.get("before") is not None and r.get("after") is not None)


def fmt_row(name: str, r: dict) -> str:
    per = f"${r['cost_usd'] / r['added']:.5f}" if r.get("added") else "-"
    wall = f"{r['wall_s']:.1f} s" if r.get("wall_s") is not None else "-"
    shards, n = ("-" if r.get(k) is None else r[k] for k in ("shards", "added"))
    return (f"| {name} | {shards} | {n} | {r['input_tokens']:,} | "
            f"{r['output_tokens']:,} | {r['cache_read_tokens']:,} | {r['cache_write_tokens']:,} | "
            f"${r['cost_usd']:.4f} | {per} | {wall} |")


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="requests", help="pinned package of tests/realrepos.py (default requests)")
    ap.add_argument("--glob", help="files to plan (default: the package's own sources)")
    ap.add_argument("--max-files", type=int, default=1, help="files per shard (default 1)")
    ap.add_argument("--procs", type=int, default=4, help="spawn pool size for the shards (default 4)")
    ap.add_argument("--model", default="claude-sonnet-4-5", help="a list-priced model id")
    ap.add_argument("--max-turns", type=int, default=20, help="interactive agent loop (the operator's default)")
    ap.add_argument("--max-tokens", type=int, default=4096, help="interactive max_tokens (the operator's default)")
    ap.add_argument("--batch-max-tokens", type=int, default=8192,
                    help="batch request max_tokens (ClaudeBatchSubmitOperator's default)")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds the double waits before each /v1/messages reply (not batch processing)")
    ap.add_argument("--min-cache-tokens", type=int, default=1024,
                    help="the double caches no shorter prompt (the API's minimum for Sonnet: 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="interactive+batch pairs, order alternating (default 3)")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ns = ap.parse_args(argv)

    import anthropic
    import realrepos

    from airflow_provider_worktree.core.runners.batch import BatchCoordinator
    from airflow_provider_worktree.core.health.report import build_report
    from airflow_provider_worktree.core.store import ShardStore
    from airflow_provider_worktree.core.planning import plan_repository
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
    from airflow_provider_worktree.testing import OfflineMessagesServer

    glob = ns.glob or DEFAULT_GLOBS.get(ns.project, "**/*.py")
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    pool = None
    try:
        version = realrepos.PINNED[ns.project]
        repo = realrepos.real_repo(tmp / "repo", ns.project)
        plan = plan_repository(repo, "docstrings", globs=[glob], include=[glob], max_files=ns.max_files)
        shards = plan.shards
        if not shards:
            print(f"no shard planned for {glob} in {ns.project} {version}", file=sys.stderr)
            return 2
        n_files = sum(len(s["files"]) for s in shards)
        log(f"{ns.project} {version}: {len(shards)} shard(s) over {n_files} file(s) ({glob}, --max-files "
            f"{ns.max_files}); model {ns.model}; pool of {ns.procs} spawned processes")
        db = str(tmp / "shards.db")
        store = ShardStore.open(db)
        manager = WorktreeManager(repo, tmp / "worktrees")
        pool = mp.get_context("spawn").Pool(ns.procs, initializer=_warm)
        pool.map(_ping, range(ns.procs), chunksize=1)
        figures: dict = {"project": ns.project, "version": version, "glob": glob, "shards": len(shards),
                         "files": n_files, "model": ns.model, "procs": ns.procs, "latency": ns.latency,
                         "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                         "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                    f"{platform.python_version()}, git "
                                    + subprocess.run(["git", "--version"], capture_output=True,
                                                     text=True).stdout.split()[-1]}

        base = {"model": ns.model, "max_turns": ns.max_turns, "max_tokens": ns.max_tokens, "db": db,
                "repo": str(repo), "worktrees": str(tmp / "worktrees")}

        def interactive(run_id: str) -> dict:
            """The baseline: every shard's agent loop, on the pool. A fresh server (an empty prompt cache)."""
            with OfflineMessagesServer(latency=ns.latency, min_cache_tokens=ns.min_cache_tokens) as server:
                ctx = {**base, "base_url": server.base_url, "run_id": run_id}
                t0 = time.perf_counter()
                res = pool.map(_shard, [(ctx, "interactive", s) for s in shards], chunksize=1)
                wall = time.perf_counter() - t0
                billed = Usage(*(getattr(server.billed, t) for t in TOKENS))
            return {"run_id": run_id, "results": res, "wall": {"total": wall}, "billed": billed.to_dict()}

        def batch(run_id: str) -> dict:
            """Submit, processing (at once on the double), collect, apply on the pool. A fresh server."""
            with OfflineMessagesServer(latency=ns.latency, min_cache_tokens=ns.min_cache_tokens) as server:
                ctx = {**base, "base_url": server.base_url, "run_id": run_id}
                client = anthropic.Anthropic(api_key="sk-offline-bench", base_url=server.base_url)
                coord = BatchCoordinator(store, client, run_id, model=ns.model, max_tokens=ns.batch_max_tokens)
                t0 = time.perf_counter()
                coord.submit(shards, manager=manager)
                t1 = time.perf_counter()
                server.finish_batches()
                t2 = time.perf_counter()
                state = coord.collect()
                t3 = time.perf_counter()
                res = pool.map(_shard, [(ctx, "batch", s) for s in shards], chunksize=1)
                t4 = time.perf_counter()
                billed = Usage(*(getattr(server.billed, t) for t in TOKENS))
                batch_billed = Usage(*(getattr(server.batch_billed, t) for t in TOKENS))
                creates = server.batch_creates
            return {"run_id": run_id, "results": res, "entries": state["entries"], "batch_ids": state["batch_ids"],
                    "wall": {"submit": t1 - t0, "processing": t2 - t1, "collect": t3 - t2, "apply": t4 - t3,
                             "total": t4 - t0},
                    "billed": billed.to_dict(), "batch_billed": batch_billed.to_dict(), "batch_creates": creates}

        figures["load_before"] = os.getloadavg()
        rounds: list[tuple[dict, dict]] = []
        for n in range(1, ns.rounds + 1):
            # alternate which run goes first, so neither always gets the warmer page cache
            if n % 2:
                ri = interactive(f"bench__interactive_{n}")
                rb = batch(f"bench__batch_{n}")
            else:
                rb = batch(f"bench__batch_{n}")
                ri = interactive(f"bench__interactive_{n}")
            for r in (ri, rb):
                r["spend"] = spend(store, r["run_id"], ns.model)
            rounds.append((ri, rb))
            w = rb["wall"]
            log(f"round {n}: interactive {ri['wall']['total']:.2f} s; batch {w['total']:.2f} s (submit "
                f"{w['submit']:.2f}, processing {w['processing']:.2f}, collect {w['collect']:.2f}, apply "
                f"{w['apply']:.2f}); cost ${ri['spend']['interactive']['cost_usd']:.4f} vs "
                f"${rb['spend']['batch']['cost_usd'] + rb['spend']['interactive']['cost_usd']:.4f}; "
                f"entries {rb['entries']}")
        figures["load_after"] = os.getloadavg()
        med = statistics.median
        wall_i = med(ri["wall"]["total"] for ri, _ in rounds)
        wall_b = {k: med(rb["wall"][k] for _, rb in rounds) for k in ("submit", "processing", "collect", "apply",
                                                                      "total")}
        # costs and tokens: the first round's (the rule-based double answers the same prompt the same way; a
        # difference between rounds is printed)
        ri, rb = rounds[0]
        sp_i, sp_b = ri["spend"], rb["spend"]
        res_i, res_b = ri["results"], rb["results"]
        run_i, run_b = ri["run_id"], rb["run_id"]

        def key(a: dict, b: dict) -> str:
            """What a round spent and added (floats to the micro-dollar: sums may differ in the last bit)."""
            spent = [{k: {t: round(v, 6) for t, v in part.items()} for k, part in x["spend"].items()} for x in (a, b)]
            return json.dumps([spent, added(a["results"]), added(b["results"])], sort_keys=True)

        differ = [n for n, (a, b) in enumerate(rounds, 1) if key(a, b) != key(*rounds[0])]
        state = {"entries": rb["entries"]}
        billed_i, billed_b_interactive = ri["billed"], rb["billed"]
        batch_billed, batches = rb["batch_billed"], rb["batch_creates"]

        # ---- figures
        rep_i, rep_b = build_report(store, run_i)["totals"], build_report(store, run_b)["totals"]
        fallback = [r for r in res_b if r["via"] != "batch"]
        done = lambda rs: sum(r["status"] == "completed" for r in rs)  # noqa: E731
        rows = {
            "interactive (list prices)": {**sp_i["interactive"], "shards": done(res_i), "added": added(res_i),
                                          "wall_s": wall_i},
            "batch run, total": {**{t: sp_b["batch"][t] + sp_b["interactive"][t] for t in TOKENS},
                                 "cost_usd": sp_b["batch"]["cost_usd"] + sp_b["interactive"]["cost_usd"],
                                 "shards": done(res_b), "added": added(res_b), "wall_s": wall_b["total"]},
            "- batch entries (batch prices)": {**sp_b["batch"], "shards": done(r for r in res_b if r["via"] == "batch"),
                                               "added": added([r for r in res_b if r["via"] == "batch"])},
            "- the same tokens at list prices": {**sp_b["batch"], "cost_usd": sp_b["batch"]["list_cost_usd"],
                                                 "shards": None, "added": None},
            "- left to the agent loop (list prices)": {**sp_b["interactive"], "shards": done(fallback),
                                                       "added": added(fallback)},
        }
        cost_i, cost_b = rows["interactive (list prices)"]["cost_usd"], rows["batch run, total"]["cost_usd"]
        # like for like: what the shards that went into the batch cost in the interactive run
        sent = {r["shard_id"] for r in res_b if r["via"] == "batch"}
        sent_i = spend(store, run_i, ns.model, sent)["interactive"]["cost_usd"]
        list_b = sp_b["batch"]["list_cost_usd"] + sp_b["interactive"]["cost_usd"]
        figures.update(
            rounds=ns.rounds, rows=rows, wall={"interactive": wall_i, **{f"batch_{k}": v for k, v in wall_b.items()}},
            wall_rounds=[{"interactive": a["wall"], "batch": b["wall"]} for a, b in rounds],
            spend_rounds=[{"interactive": a["spend"], "batch": b["spend"], "added": [added(a["results"]),
                                                                                    added(b["results"])]}
                          for a, b in rounds],
            rounds_differing_in_cost=differ, report_totals={"interactive": rep_i, "batch": rep_b},
            results={"interactive": res_i, "batch": res_b}, entries=state["entries"],
            fallback=[{"shard_id": r["shard_id"], "note": r.get("note")} for r in fallback],
            server={"billed_interactive_run": billed_i, "billed_batch_run_agent_loop": billed_b_interactive,
                    "batch_billed": batch_billed, "batch_creates": batches},
            ratios={"cost_batch_over_interactive": cost_b / cost_i if cost_i else None,
                    "tokens_at_list_batch_over_interactive": list_b / cost_i if cost_i else None,
                    "price_batch_run_over_its_list": cost_b / list_b if list_b else None,
                    "price_batch_entries_over_their_list": (sp_b["batch"]["cost_usd"] / sp_b["batch"]["list_cost_usd"]
                                                            if sp_b["batch"]["list_cost_usd"] else None),
                    "sent_shards_batch_over_interactive": (sp_b["batch"]["cost_usd"] / sent_i if sent_i else None),
                    "wall_batch_over_interactive": wall_b["total"] / wall_i if wall_i else None},
            sent_shards={"count": len(sent), "interactive_cost_usd": sent_i,
                         "batch_cost_usd": sp_b["batch"]["cost_usd"]})

        # ---- print
        print()
        print(f"{ns.project} {version}, {len(shards)} shards over {n_files} files ({glob}), model {ns.model}, "
              f"pool of {ns.procs}, {ns.rounds} round(s), latency {ns.latency:g} s; {figures['machine']}; load average "
              f"{figures['load_before'][0]:.1f} -> {figures['load_after'][0]:.1f}")
        print("offline test double: its token counts are a ~4 bytes/token stand-in; costs are PriceTable() list "
              "prices (batch rows at the batch factor); tokens and costs of round 1, wall times medians")
        print()
        print("| run | shards completed | docstrings added | input | output | cache read | cache write | cost | "
              "cost/docstring | wall |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            print(fmt_row(name, r))
        print()
        print(f"batch wall time: submit {wall_b['submit']:.2f} s + processing {wall_b['processing']:.2f} s (offline "
              f"double: at once; the real API takes minutes to hours, up to 24 h) + collect {wall_b['collect']:.2f} s"
              f" + apply {wall_b['apply']:.2f} s = {wall_b['total']:.2f} s; interactive {wall_i:.2f} s (medians; the "
              "parts' medians need not add up to the total's)")
        print(f"batch entries: {state['entries']}; shards left to the agent loop: {len(fallback)}"
              + "".join(f"\n  {r['shard_id']}: {r.get('note')}" for r in fallback))
        print(f"report totals: interactive run ${rep_i['cost_usd']:.4f} (interactive_cost_usd "
              f"${rep_i['interactive_cost_usd']:.4f}); batch run ${rep_b['cost_usd']:.4f} (batch_cost_usd "
              f"${rep_b['batch_cost_usd']:.4f} over {rep_b['batch_shards']} shard(s), interactive_cost_usd "
              f"${rep_b['interactive_cost_usd']:.4f})")
        print(f"server billed: interactive run {billed_i}; batch run: Message Batches {batch_billed} in {batches} "
              f"batch(es), /v1/messages {billed_b_interactive}")
        r = figures["ratios"]
        if cost_i:
            print(f"cost batch/interactive = {r['cost_batch_over_interactive']:.3f} (expected about 0.5)"
                  f" = tokens at list prices {r['tokens_at_list_batch_over_interactive']:.3f}"
                  f" x price {r['price_batch_run_over_its_list']:.3f} (the batch entries' own: "
                  f"{r['price_batch_entries_over_their_list'] or 0:.3f})")
        if fallback and sent_i:
            print(f"like for like, the {len(sent)} shard(s) sent in the batch: batch ${sp_b['batch']['cost_usd']:.4f}"
                  f" / interactive run ${sent_i:.4f} = {r['sent_shards_batch_over_interactive']:.3f}")
        print(f"wall batch/interactive = {r['wall_batch_over_interactive']:.2f} (offline: the real batch also waits "
              "for the API)")
        if differ:
            print(f"NOTE: rounds {differ} spent or added differently from round 1 (see --json)")
        for x in [x for x in res_i + res_b if x["status"] != "completed"]:
            print(f"NOT completed: {x['shard_id']} ({x['via']}): {x['status']}: {x.get('error')}")
        if ns.json:
            Path(ns.json).write_text(json.dumps(figures, indent=2, default=str))
        pool.close()
        return 0
    finally:
        if pool is not None:
            pool.terminate()  # after close(): the workers are idle; on an error or Ctrl-C: stops them
            pool.join()
        if ns.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
