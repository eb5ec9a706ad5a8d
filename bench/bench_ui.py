"""How fast the shard dashboard loads a 2,000-shard run, against a plain SELECT of the same rows.

    python bench/bench_ui.py                      # the JSON views in process (SQLite)
    python bench/bench_ui.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    python bench/bench_ui.py --browser            # also: a real api-server, its JSON over HTTP, the page in Chromium

Baseline (same run, same database): ``SELECT * FROM shard_status WHERE run_id = ?`` with the DB-API driver,
rows fetched. Measured: ``ui.data.run_view`` (the report, the thresholds' check and one row per shard) serialised
to JSON, ``runs_view`` (every run with its verdict), and with ``--browser`` the ``/worktree/api/run`` response
over HTTP and the page, loaded fresh, until the run's rows are on the screen (timed in the page: from the
navigation's start to the first frame showing rows, and to the frame with all 2,000). Each is the median of ``--repeat`` runs; the
target is the page under a second on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_worktree.core.store import ShardStore, connection_factory  # noqa: E402
from airflow_provider_worktree.ui import data  # noqa: E402

RUN_ID = "manual__2026-11-30T00:00:00+00:00"


def seed(target: str, n: int) -> ShardStore:
    """A run of ``n`` shards: 80% completed (with diffstat and summary), 5% failed, 5% running, 10% pending."""
    store = ShardStore.open(target)
    store.register_shards(RUN_ID, [{"shard_id": f"shard-{i:05d}", "task": "todo",
                                    "files": [f"pkg/sub{i % 50}/mod_{i}_{j}.py" for j in range(5)]}
                                   for i in range(n)])
    for i in range(n):
        kind = i % 20
        if kind >= 18:
            continue  # pending
        lease = store.assign_shard(RUN_ID, f"worker-{i % 10}:{1000 + i}", f"shard-{i:05d}")
        if kind == 17:
            continue  # running
        if kind == 16:
            store.fail(lease, "verify failed: " + "x" * 400, input_tokens=900, output_tokens=100, cost_usd=0.004)
            continue
        store.complete(lease, branch=f"worktree/{RUN_ID}/shard-{i:05d}", commit_sha=f"{i:040x}",
                       files_changed=[f"pkg/sub{i % 50}/mod_{i}_0.py"],
                       diffstat=" 1 file changed, 3 insertions(+), 1 deletion(-)\n", input_tokens=1500,
                       output_tokens=300, cache_read_tokens=4000, cost_usd=0.012,
                       summary={"turns": 4, "verify": {"ok": True, "returncode": 0, "output_tail": "ok\n" * 50}})
    return store


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline(target: str) -> None:
    connect, dialect, _ = connection_factory(target)
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT * FROM shard_status WHERE run_id = " + ("?" if dialect == "sqlite" else "%s"), (RUN_ID,))
        rows = cur.fetchall()
        assert rows
    finally:
        conn.close()


#: Notes, in the page, when the run's first rows and all its rows reach the screen (the frame after they are in).
_PROBE = """
window.__shown = 0; window.__complete = 0;
new MutationObserver(() => {
  const body = document.getElementById("shard-rows");
  if (!body) return;
  if (!window.__shown && body.rows.length) { window.__shown = -1; requestAnimationFrame(() => { window.__shown = performance.now(); }); }
  if (!window.__complete && body.dataset.complete === "1") { window.__complete = -1; requestAnimationFrame(() => { window.__complete = performance.now(); }); }
}).observe(document, {childList: true, subtree: true, attributes: true});
"""


def browser_figures(target: str, repeat: int, n: int) -> dict[str, float]:
    """A real api-server on ``target`` (SQLite file), the JSON over HTTP and the page in Chromium."""
    sys.path.insert(0, str(ROOT / "tests"))
    import uihelpers

    reason = uihelpers.skip_reason()
    if reason:
        raise SystemExit(f"--browser: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    ui = uihelpers.AirflowUI.start(tmp)
    pw = browser = None
    try:
        ui.set_connection("shard_status_default", conn_type="sqlite", host=target)
        path = f"/worktree/api/run?run_id={quote(RUN_ID)}"
        ui.request("GET", path, user="viewer")  # warm: the hook, the store, the app
        out = {"http_json_s": median_s(lambda: ui.request("GET", path, user="viewer"), repeat)}
        pw, browser = uihelpers.launch_browser()
        page = ui.page(browser, "viewer")
        run_url = f"{ui.base_url}/worktree/#/run/{quote(RUN_ID, safe='')}"
        shown, complete = [], []
        page.add_init_script(_PROBE)
        for _ in range(repeat):
            # Timed in the page (performance.now() counts from the navigation's start): to the first frame
            # with the run's rows, and to the frame with all of them. Polling from here would add its own
            # round trips to the figure.
            page.goto("about:blank")
            page.goto(run_url)
            page.wait_for_function("() => window.__complete > 0", timeout=120_000)
            assert page.evaluate("document.querySelectorAll('#shard-rows tr').length") == n
            shown.append(page.evaluate("window.__shown") / 1000)
            complete.append(page.evaluate("window.__complete") / 1000)
        out["page_s"] = statistics.median(shown)
        out["page_all_rows_s"] = statistics.median(complete)
        return out
    finally:
        if browser is not None:
            uihelpers.close_browser(pw, browser)
        ui.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pg", metavar="URL", help="a PostgreSQL database URL (tables are created in it)")
    ap.add_argument("--browser", action="store_true", help="also time HTTP and the page in Chromium (SQLite)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-db-"))
    target = args.pg or str(tmp / "shard_status.db")
    t0 = time.perf_counter()
    store = seed(target, args.shards)
    print(f"seeded {args.shards} shards in {time.perf_counter() - t0:.1f}s ({store.description})")

    base = median_s(lambda: baseline(target), args.repeat)
    run_json = median_s(lambda: json.dumps(data.run_view(store, RUN_ID)), args.repeat)
    runs_json = median_s(lambda: json.dumps(data.runs_view(store)), args.repeat)
    size = len(json.dumps(data.run_view(store, RUN_ID)))
    print(f"baseline  SELECT of the run's rows       {base * 1000:8.1f} ms")
    print(f"run view  (JSON, {size / 1024:.0f} KiB)            {run_json * 1000:8.1f} ms   ratio {run_json / base:6.1f}x")
    print(f"runs view (JSON, every run + verdict)   {runs_json * 1000:8.1f} ms   ratio {runs_json / base:6.1f}x")
    if args.browser:
        if args.pg:
            raise SystemExit("--browser runs on the SQLite database: leave out --pg")
        fig = browser_figures(target, args.repeat, args.shards)
        print(f"HTTP      /worktree/api/run               {fig['http_json_s'] * 1000:8.1f} ms   ratio "
              f"{fig['http_json_s'] / base:6.1f}x")
        print(f"page      run page shown (first rows)    {fig['page_s'] * 1000:8.1f} ms   ratio "
              f"{fig['page_s'] / base:6.1f}x   target < 1000 ms: {'met' if fig['page_s'] < 1 else 'MISSED'}")
        print(f"page      all {args.shards} rows in the table     {fig['page_all_rows_s'] * 1000:8.1f} ms   ratio "
              f"{fig['page_all_rows_s'] / base:6.1f}x")
    if args.pg:
        store.close()


if __name__ == "__main__":
    main()
