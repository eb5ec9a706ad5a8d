"""The dashboard at common widths (issue 22, item 6), in a real Airflow api-server seen through headless Chromium.

At 1280 and 1440 px every view (runs, a run with its shards and batches, a shard with its attempts, health,
changesets) fits: the page does not scroll sideways, no table is wider than its box and no cell's content
sticks out of it, although the seeded values are long (branches, run ids, workers, paths, errors). Two runs of
one DAG started seconds apart get labels that tell them apart. Loaded as the DAG run's "Shards" tab inside
Airflow's own UI, the page shows that run without the dashboard's navigation. A run in batch mode shows its
Message Batches, and a shard's batch attempt (attempt 0) says so with its batch id. Screenshots of every view
at both widths go to the test's tmp_path.
"""

from __future__ import annotations

import sqlite3
import time
from urllib.parse import quote

import pytest

import uihelpers
from airflow_provider_worktree.core.store import ShardStore

pytestmark = pytest.mark.integration

_SKIP = uihelpers.skip_reason()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

WIDTHS = (1280, 1440)
RUNNING_WORKER = "uitest-host:4242"
LONG_SHARD = "packages-airflow-providers-amazon-aws-hooks-sagemaker-unified-studio-0007"
LONG_WORKER = "airflow-worker-5f7d9c8b6-x2k9p.airflow-workers.svc.cluster.local:31337"
LONG_PATH = "providers/amazon/src/airflow/providers/amazon/aws/hooks/sagemaker_unified_studio_notebook_run.py"
LONG_ERROR = ("verify failed: " + "tests/unit/providers/amazon/aws/hooks/test_sagemaker_unified_studio.py"
              "::TestSageMakerNotebookHook::test_start_notebook_execution_with_all_parameters_and_a_long_name"
              "[parametrised-with-an-unbreakable-identifier-that-is-very-long]")
#: Runs in the shard database only (no DAG run): two in one second, two with Airflow's random suffix.
SAME_SECOND = ("manual__2026-12-07T10:00:00.123000+00:00", "manual__2026-12-07T10:00:00.456000+00:00")
SUFFIXED = ("manual__2026-12-07T11:00:00+00:00_aB3dE5fG", "manual__2026-12-07T11:00:00+00:00_zY9xW8vU")
BATCH_0, BATCH_1 = "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF", "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def worktree_root(tmp_path_factory):
    """A long worktree root path (Health prints it)."""
    root = tmp_path_factory.mktemp("wt") / "a-rather-long-directory-name-for-the-worktrees-of-every-shard" / "root"
    root.mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def ui(tmp_path_factory, worktree_root):
    server = uihelpers.AirflowUI.start(tmp_path_factory.mktemp("ui"),
                                       AIRFLOW__WORKTREE__WORKTREE_ROOT=str(worktree_root))
    yield server
    server.stop()


def _dag_run(ui) -> str:
    status, body = ui.request("POST", "/api/v2/dags/worktree_health/dagRuns", user="admin",
                              body={"logical_date": None})
    assert status == 200, body
    return body["dag_run_id"]


def _record_batches(db: str, run_id: str) -> None:
    """Batch mode for ``run_id`` (a run seeded by ``uihelpers.seed_run``), through the store as the batch
    coordinator records it, by a store whose clock says three hours ago: part 0 collected (s01 succeeded, s02
    errored), part 1 still in progress (s06 queued), s04 too large for one prompt."""
    store = uihelpers.old_store(db, hours=3)
    store.put_batch_entries(run_id, [
        {"shard_id": "s01", "custom_id": "s01-0", "status": "queued", "part": 0, "model": "claude-sonnet-4-6"},
        {"shard_id": "s02", "custom_id": "s02-0", "status": "queued", "part": 0, "model": "claude-sonnet-4-6"},
        {"shard_id": "s06", "custom_id": "s06-1", "status": "queued", "part": 1, "model": "claude-sonnet-4-6"},
        {"shard_id": "s04", "status": "interactive", "reason": "too large for one prompt"}])
    for part, batch_id, requests in ((0, BATCH_0, 2), (1, BATCH_1, 1)):
        store.begin_batch_part(run_id, part, requests, "claude-sonnet-4-6")
        store.set_batch_id(run_id, part, batch_id)
    store.record_batch_result(run_id, "s01-0", "succeeded", response={"content": []}, stop_reason="end_turn",
                              usage={"input_tokens": 4200, "output_tokens": 900, "cache_read_tokens": 1000},
                              cost_usd=0.0189)
    store.record_batch_result(run_id, "s02-0", "errored", reason="overloaded_error",
                              usage={"input_tokens": 10}, cost_usd=0.0001)
    store.update_batch(run_id, 0, status="collected", request_counts={"succeeded": 1, "errored": 1}, ended=True,
                       collected=True)
    store.update_batch(run_id, 1, status="in_progress", request_counts={"processing": 1})


@pytest.fixture(scope="module")
def seeded(ui, tmp_path_factory):
    """Two DAG runs of worktree_health started two seconds apart (Airflow's own run ids), the first with shards
    of every kind, long values and batches; the second with the same kinds; runs of the shard database only whose
    ids differ late (the same second; Airflow's random suffix); changesets with a long head branch."""
    first = _dag_run(ui)
    time.sleep(2)
    second = _dag_run(ui)
    host, pid = RUNNING_WORKER.split(":")
    with sqlite3.connect(ui.home / "airflow.db") as conn:  # the running shard's worker ran a task instance
        conn.execute("UPDATE task_instance SET hostname = ?, pid = ? WHERE run_id = ? AND task_id = 'check_health'",
                     (f"{host}.example.internal", int(pid), first))
    db = str(tmp_path_factory.mktemp("shards") / "shard_status.db")
    store = ShardStore.open(db)
    uihelpers.seed_run(store, first, running_worker=RUNNING_WORKER, old_clock=uihelpers.old_store(db))
    _record_batches(db, first)
    store.register_shards(first, [{"shard_id": LONG_SHARD, "task": "todo", "files": [LONG_PATH, LONG_PATH + "i"]}])
    store.fail(store.assign_shard(first, LONG_WORKER, LONG_SHARD), LONG_ERROR, input_tokens=1_234_567,
               output_tokens=123_456, cache_read_tokens=9_876_543, cost_usd=123.4567)
    uihelpers.seed_run(store, second, running_worker="worker-z:9")
    for run in (*SAME_SECOND, *SUFFIXED):
        store.register_shards(run, ["x1"])
        store.complete(store.assign_shard(run, "cli:1", "x1"), input_tokens=10, output_tokens=5, cost_usd=0.001)
    for n, run in ((41, first), (42, second)):
        store.record_changeset({
            "forge": "github", "repository": "apache/airflow-providers-amazon-sagemaker-unified-studio",
            "head": f"worktree/{run}/{LONG_SHARD}", "base": "main", "number": n,
            "url": f"https://github.com/apache/airflow/pull/{n}", "title": "Fix the lint findings of " + LONG_PATH,
            "publication": "draft", "external_state": "open", "review": "pending", "checks": "pending",
            "head_sha": f"{n:040d}", "action": "created"}, run_id=run)
    ui.set_connection("shard_status_default", conn_type="sqlite", host=db)
    return {"first": first, "second": second, "store": store}


# ----------------------------------------------------------------------------------------------- helpers
#: What sticks out, measured in the page (or a frame): the page's own sideways scroll, every table wider than
#: the box it is in, every cell whose content is wider than the cell, every element of main reaching past the
#: right edge of the viewport.
OVERFLOW_JS = """() => {
  const d = document.documentElement, vw = d.clientWidth;
  const out = {page: d.scrollWidth - vw, tables: [], cells: [], out: []};
  const name = (t) => t.dataset.testid || t.className || "table";
  for (const t of document.querySelectorAll("main table")) {
    const box = t.parentElement;
    if (t.scrollWidth > box.clientWidth + 1) out.tables.push([name(t), t.scrollWidth, box.clientWidth]);
    for (const c of t.querySelectorAll("th, td")) {
      if (c.scrollWidth > c.clientWidth + 1) {
        out.cells.push([name(t), c.innerText.slice(0, 50), c.scrollWidth, c.clientWidth]);
      }
    }
  }
  for (const e of document.querySelectorAll("main *")) {
    const r = e.getBoundingClientRect();
    if (r.width && r.right > vw + 1) {
      out.out.push([e.tagName, (e.innerText || "").slice(0, 50), Math.round(r.right), vw]);
    }
  }
  out.out = out.out.slice(0, 10);
  return out;
}"""


def assert_fits(target, what: str) -> None:
    got = target.evaluate(OVERFLOW_JS)
    assert got["page"] <= 0, (what, "the page scrolls sideways", got)
    assert not got["tables"], (what, "a table is wider than its box", got["tables"])
    assert not got["cells"], (what, "clipped cells", got["cells"])
    assert not got["out"], (what, "past the right edge", got["out"])


def _open(ui, browser, fragment: str, width: int, user: str = "viewer"):
    page = ui.page(browser, user, width=width)
    page.goto(f"{ui.base_url}/worktree/{fragment}")
    page.wait_for_selector("body[data-loaded]")
    assert page.get_by_test_id("error").count() == 0, page.get_by_test_id("error").inner_text()
    return page


def _run(run_id: str) -> str:
    return "#/run/" + quote(run_id, safe="")


# ----------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_fits_without_clipping(ui, seeded, browser, tmp_path, width):
    first = seeded["first"]
    views = {"runs": "#/", "run": _run(first), "shard": _run(first) + "/shard/s01",
             "shard-long": _run(first) + "/shard/" + LONG_SHARD, "health": "#/health", "changesets": "#/changesets"}
    for name, fragment in views.items():
        page = _open(ui, browser, fragment, width)
        try:
            if name == "run":
                page.wait_for_selector("tbody#shard-rows[data-complete]")
                assert page.locator("tbody#shard-rows tr").count() == 7
                # the long shard's cells are shortened (the whole value in the tooltip) or wrapped, not cut
                row = page.locator(f'tr[data-shard="{LONG_SHARD}"]')
                assert row.locator("a").first.get_attribute("title") == LONG_SHARD
                assert row.locator(f'[title="{LONG_WORKER}"]').count() == 1
                branch = page.locator('tr[data-shard="s01"] td').nth(6)
                assert branch.locator("[title]").first.get_attribute("title") == f"worktree/{first}/s01"
            assert_fits(page, f"{name} at {width}px")
            page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
        finally:
            page.context.close()


def test_runs_of_one_dag_seconds_apart_are_told_apart(ui, seeded, browser):
    first, second = seeded["first"], seeded["second"]
    page = _open(ui, browser, "#/", 1280)
    try:
        labels = {r.get_attribute("data-run"): r.locator("a[data-run-label]")
                  for r in page.locator("tr[data-run]").all()}
        assert set(labels) >= {first, second, *SAME_SECOND, *SUFFIXED}
        texts = {run: link.inner_text() for run, link in labels.items()}
        assert len(set(texts.values())) == len(texts), texts
        for run, link in labels.items():  # the whole id on hover and in the link
            assert link.get_attribute("title") == run
            assert link.get_attribute("href") == _run(run)
            assert link.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.closest('td').scrollWidth <= "
                                 "e.closest('td').clientWidth + 1"), run
        # the run type and the start: Airflow's ids of two runs two seconds apart differ in the seconds
        assert texts[first].startswith("manual 20") and texts[second].startswith("manual 20")
        assert texts[first] != texts[second] and "__" not in texts[first] and "+00:00" not in texts[first]
        assert first.removeprefix("manual__")[11:19] in texts[first]  # hh:mm:ss
        # the same second: the milliseconds; Airflow's random suffix when that is all that differs
        assert [texts[r] for r in SAME_SECOND] == ["manual 2026-12-07 10:00:00.123", "manual 2026-12-07 10:00:00.456"]
        assert [texts[r] for r in SUFFIXED] == ["manual 2026-12-07 11:00:00 aB3dE5fG",
                                                "manual 2026-12-07 11:00:00 zY9xW8vU"]
        # each run's own page is headed by its label, the whole id below it
        page.locator(f'tr[data-run="{second}"] a[data-run-label]').click()
        page.wait_for_selector("tbody#shard-rows[data-complete]")
        assert page.locator("h1").inner_text() == "Run " + texts[second]
        assert page.get_by_test_id("run-id").inner_text() == second
        assert page.locator('header nav a[data-nav="runs"]').is_visible()  # not embedded: the nav is there
    finally:
        page.context.close()
    # the changesets of the two runs, too
    page = _open(ui, browser, "#/changesets", 1280)
    try:
        shown = [a.inner_text() for a in page.locator("tbody#changeset-rows a[data-run-label]").all()]
        assert sorted(shown) == sorted([texts[first], texts[second]])
    finally:
        page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dag_runs_shards_tab_shows_the_run_without_the_dashboards_nav(ui, seeded, browser, tmp_path, width):
    first = seeded["first"]
    page = ui.page(browser, "admin", width=width)
    try:
        page.goto(f"{ui.base_url}/dags/worktree_health/runs/{quote(first, safe='')}")
        page.locator('a[href$="/plugin/worktree-run"]', has_text="Shards").click()
        page.wait_for_url("**/plugin/worktree-run")
        iframe = page.locator("iframe")
        assert "embed=run" in iframe.get_attribute("src")
        frame = page.frame_locator("iframe")
        frame.locator("tbody#shard-rows[data-complete]").wait_for()
        frame.get_by_test_id("batches").wait_for()
        assert frame.locator("header").is_hidden() and frame.locator("nav a[data-nav]").first.is_hidden()
        assert frame.locator("main h1").inner_text().startswith("Run manual 20")
        assert "DAG run:" not in frame.locator("main").inner_text()  # it is the page around it
        inner = iframe.element_handle().content_frame()
        assert "embed=run" in inner.url
        assert_fits(inner, f"the Shards tab at {width}px")
        page.screenshot(path=str(tmp_path / f"shards-tab-{width}.png"))
        frame.locator("#shards-box").screenshot(path=str(tmp_path / f"shards-tab-table-{width}.png"))
        # the shard page opens in the tab, still without the nav
        frame.locator('tr[data-shard="s01"] a').first.click()
        frame.get_by_test_id("facts").wait_for()
        assert frame.locator("header").is_hidden()
        assert_fits(inner, f"a shard in the Shards tab at {width}px")
        # the navigation entry of the dashboard keeps its own nav
        page.goto(f"{ui.base_url}/plugin/worktree")
        frame = page.frame_locator("iframe")
        frame.locator(f'tr[data-run="{first}"]').wait_for()
        assert frame.locator('nav a[data-nav="changesets"]').is_visible()
    finally:
        page.context.close()
    # the same page asked for directly with the query parameter: no nav either
    page = _open(ui, browser, "?embed=run" + _run(first), width)
    try:
        assert page.locator("header").is_hidden() and page.locator("h1").is_visible()
    finally:
        page.context.close()


def test_a_run_in_batch_mode_shows_its_batches_and_the_batch_attempts(ui, seeded, browser, tmp_path):
    first, second = seeded["first"], seeded["second"]
    status, body = ui.request("GET", f"/worktree/api/batches?run_id={quote(first)}", user="viewer")
    assert status == 200 and body["batch_mode"] and not body["collected"], body
    assert [(p["part"], p["batch_id"], p["status"], p["requests"]) for p in body["parts"]] == [
        (0, BATCH_0, "collected", 2), (1, BATCH_1, "in_progress", 1)]
    assert body["parts"][0]["cost_text"] == "$0.0190" and body["parts"][0]["entries"] == {"errored": 1,
                                                                                          "succeeded": 1}
    assert body["entries"] == {"errored": 1, "succeeded": 1, "queued": 1, "interactive": 1}
    assert body["interactive"] == ["s04"] and body["cost_text"] == "$0.0190"
    assert body["parts"][0]["created_at"] <= body["parts"][0]["ended_at"] and body["parts"][1]["ended_at"] is None
    for user, want in ((None, 401), ("nobody", 403)):
        status, body = ui.request("GET", f"/worktree/api/batches?run_id={quote(first)}", user=user)
        assert status == want and BATCH_0 not in str(body)
    status, body = ui.request("GET", f"/worktree/api/batches?run_id={quote(second)}", user="viewer")
    assert status == 200 and not body["batch_mode"] and body["parts"] == []

    page = _open(ui, browser, _run(first), 1280)
    try:
        section = page.get_by_test_id("batches")
        rows = section.locator("tbody tr")
        assert [r.get_attribute("data-batch") for r in rows.all()] == [BATCH_0, BATCH_1]
        assert [r.get_attribute("data-part") for r in rows.all()] == ["0", "1"]
        done = rows.nth(0).locator("td").all_inner_texts()
        assert done[0] == f"{BATCH_0}\npart 0" and done[1] == "collected" and done[2] == "2"
        assert done[3] == "succeeded 1, errored 1" and done[4] == "succeeded 1, errored 1" and done[6] == "$0.0190"
        assert done[7].startswith("20") and done[8].startswith("20")  # submitted, ended
        waiting = rows.nth(1).locator("td").all_inner_texts()
        assert waiting[1] == "in progress" and waiting[3] == "processing 1" and waiting[8] == ""  # not ended yet
        assert page.get_by_test_id("batch-entries").inner_text() == "succeeded 1, errored 1, interactive 1, queued 1"
        text = section.inner_text()
        assert "waiting for the batch" in text and "too large for one prompt): s04" in text
        section.screenshot(path=str(tmp_path / "batches.png"))
    finally:
        page.context.close()
    page = _open(ui, browser, _run(second), 1280)
    try:
        assert page.get_by_test_id("batches").count() == 0  # no batch: no section
    finally:
        page.context.close()
    # the shard's attempts: attempt 0 is its batch entry, labelled with the batch id, then the interactive one
    page = _open(ui, browser, _run(first) + "/shard/s01", 1280)
    try:
        attempts = page.get_by_test_id("attempts").locator("tbody tr")
        assert [r.get_attribute("data-attempt") for r in attempts.all()] == ["0", "1"]
        batch = attempts.nth(0)
        assert batch.get_attribute("data-batch") == BATCH_0
        cells = batch.locator("td").all_inner_texts()
        assert cells[0] == "0" and cells[1] == "batch" and cells[2] == f"Message Batch {BATCH_0}"
        assert cells[5] == "5,200/900" and cells[6] == "$0.0189"
        assert attempts.nth(1).get_attribute("data-batch") is None
        assert attempts.nth(1).locator("td").all_inner_texts()[2] == "worker-b:202"
        assert page.get_by_test_id("shard-batch-id").inner_text() == BATCH_0
        page.screenshot(path=str(tmp_path / "shard-attempts.png"), full_page=True)
    finally:
        page.context.close()
