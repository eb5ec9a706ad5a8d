"""The shard dashboard in a real Airflow api-server, seen through headless Chromium.

One api-server (simple auth manager, users of every role) for the module; each test seeds its own shard
database (real SQLite files; one test real PostgreSQL) and points the ``shard_status_default`` connection at it
through Airflow's REST API, so the dashboard is read exactly as a deployment would read it. Screenshots are
test artefacts (build/test-artifacts/ui/); ``WORKTREE_UPDATE_SCREENSHOTS=1`` refreshes docs/img/ with them.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from urllib.parse import quote

import pytest

import uihelpers
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from conftest import make_repo

pytestmark = pytest.mark.integration

_SKIP = uihelpers.skip_reason()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

RUNNING_WORKER = "uitest-host:4242"  # the running shard's worker, recorded on a task instance of the DAG run


@pytest.fixture(scope="module")
def worktree_root(tmp_path_factory):
    """A worktree root with two real shard worktrees in it (Health counts them)."""
    base = tmp_path_factory.mktemp("wt")
    repo = make_repo(base / "repo")
    manager = WorktreeManager(str(repo), worktree_root=str(base / "worktrees"))
    manager.create_worktree("old_run", "w1")
    manager.create_worktree("old_run", "w2")
    return base / "worktrees"


@pytest.fixture(scope="module")
def ui(tmp_path_factory, worktree_root):
    server = uihelpers.AirflowUI.start(tmp_path_factory.mktemp("ui"), AIRFLOW__WORKTREE__UI_ALLOW_RESET="True",
                                       AIRFLOW__WORKTREE__WORKTREE_ROOT=str(worktree_root))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dag_run_id(ui):
    """A real DAG run of worktree_health (created through the REST API; no scheduler runs it), one of whose
    task instances ran as RUNNING_WORKER."""
    status, body = ui.request("POST", "/api/v2/dags/worktree_health/dagRuns", user="admin", body={"logical_date": None})
    assert status == 200, body
    run_id = body["dag_run_id"]
    host, pid = RUNNING_WORKER.split(":")
    with sqlite3.connect(ui.home / "airflow.db") as db:  # what the task runner records when the task starts
        db.execute("UPDATE task_instance SET hostname = ?, pid = ? WHERE run_id = ? AND task_id = 'check_health'",
                   (f"{host}.example.internal", int(pid), run_id))
    return run_id


@pytest.fixture
def seeded(ui, dag_run_id, tmp_path):
    """A fresh SQLite shard database behind shard_status_default: the DAG run with shards of every kind, and a
    run the CLI made (no DAG run in this Airflow)."""
    db = str(tmp_path / "shard_status.db")
    store = ShardStore.open(db)
    kinds = uihelpers.seed_run(store, dag_run_id, running_worker=RUNNING_WORKER, old_clock=uihelpers.old_store(db))
    store.register_shards("cli_run_1", ["c1", "c2"])
    for sid in ("c1", "c2"):
        store.complete(store.assign_shard("cli_run_1", "cli:1", sid), input_tokens=10, output_tokens=5, cost_usd=0.001)
    ui.set_connection("shard_status_default", conn_type="sqlite", host=db)
    return store, dag_run_id, kinds


def _open(ui, browser, user, fragment="#/"):
    page = ui.page(browser, user)
    page.goto(f"{ui.base_url}/worktree/{fragment}")
    page.wait_for_selector("body[data-loaded]")
    return page


def test_unauthorised_users_get_no_shard_data(ui, seeded, browser):
    store, run_id, _ = seeded
    endpoints = ["/worktree/api/runs", f"/worktree/api/run?run_id={quote(run_id)}",
                 f"/worktree/api/shard?run_id={quote(run_id)}&shard_id=s03", "/worktree/api/health"]
    for path in endpoints:
        status, body = ui.request("GET", path)
        assert status == 401 and "s03" not in str(body), (path, status, body)
        status, body = ui.request("GET", path, token="not-a-jwt")
        assert status in (401, 403) and "s03" not in str(body), (path, status, body)
        status, body = ui.request("GET", path, user="nobody")  # signed in, no role: may not read DAGs
        assert status == 403 and "s03" not in str(body), (path, status, body)
        status, body = ui.request("GET", path, user="viewer")
        assert status == 200, (path, status, body)
    # signed out in the browser: an explanation, and not one shard or run id on the page
    for user in (None, "nobody"):
        page = _open(ui, browser, user)
        error = page.get_by_test_id("error")
        assert error.is_visible()
        assert error.get_attribute("data-status") == ("401" if user is None else "403")
        text = page.content()
        assert run_id not in text and "cli_run_1" not in text and "s03" not in text
        if user is None:
            uihelpers.screenshot(page, "ui-signed-out", locator=page.locator("body"))
        page.context.close()
    # the one action needs the permission to clear task instances: a viewer may not, and nothing changes
    status, body = ui.request("POST", f"/worktree/api/run/reset-stale?run_id={quote(run_id)}", user="viewer",
                              headers={"X-Worktree-Action": "reset-stale"})
    assert status == 403 and "clear task instances" in body["detail"], body
    status, body = ui.request("POST", f"/worktree/api/run/reset-stale?run_id={quote(run_id)}", user="admin")
    assert status == 400, body  # no action header: what a cross-site form would send
    assert store.get_shard(run_id, "s05")["status"] == "running"


def test_run_list_shows_every_run_with_counts_and_verdict(ui, seeded, browser):
    _, run_id, _ = seeded
    page = _open(ui, browser, "viewer")
    runs = page.get_by_test_id("runs")
    assert runs.is_visible()
    row = page.locator(f'tr[data-run="{run_id}"]')
    counts = {b.get_attribute("data-count"): b.inner_text() for b in row.locator("[data-count]").all()}
    assert counts == {"pending": "pending 1", "running": "running 2", "completed": "completed 2",
                      "failed": "failed 1", "stale": "stale 1"}
    # one failed of six is 16.7% (critical above 10%), and the stale shard runs for two hours: the runbook's actions
    assert row.get_attribute("data-level") == "critical"
    assert "Review error logs" in row.inner_text() and "Check for deadlocks" in row.inner_text()
    assert "worktree_health" in row.inner_text()  # its DAG run, linked into Airflow
    link = row.locator("a[target=_top]").first.get_attribute("href")
    assert link == f"../dags/worktree_health/runs/{quote(run_id, safe='')}"
    cli = page.locator('tr[data-run="cli_run_1"]')
    assert cli.get_attribute("data-level") == "ok" and "completed 2" in cli.inner_text()
    assert "$0.0020" in cli.inner_text()
    uihelpers.screenshot(page, "ui-runs")
    page.context.close()


def test_a_run_shows_its_shards_stale_locks_timeline_and_log_links(ui, seeded, browser):
    _, run_id, kinds = seeded
    page = _open(ui, browser, "viewer", f"#/run/{quote(run_id, safe='')}")
    rows = page.locator("tbody#shard-rows tr")
    assert rows.count() == 6
    shown = {r.get_attribute("data-shard"): r.get_attribute("data-status") for r in rows.all()}
    assert shown == {sid: ("running" if kind == "stale" else kind) for sid, kind in kinds.items()}
    stale = page.locator("tr[data-stale]")
    assert stale.count() == 1 and stale.get_attribute("data-shard") == "s05" and "stale" in stale.inner_text()
    failed = page.locator('tr[data-shard="s03"]')
    assert "tests/test_mod_3.py::test_negative" in failed.inner_text()
    done = page.locator('tr[data-shard="s01"]')
    assert "3f2a9c1d5e" in done.inner_text()  # the commit under the branch, shortened in the middle (whole on hover)
    assert done.locator(f'[title="worktree/{run_id}/s01"]').count() == 1
    assert "6,200/340" in done.inner_text()  # tokens in: uncached + cache read
    # the running shard's worker is a task instance of the DAG run: its log is one click away
    log = page.locator('tr[data-shard="s04"] a[target=_top]')
    assert log.get_attribute("href") == f"../dags/worktree_health/runs/{quote(run_id, safe='')}/tasks/check_health"
    assert done.locator("a[target=_top]").count() == 0  # its worker is no task instance of this Airflow
    # the timeline: four shards started, the stale one two hours before the others
    assert page.get_by_test_id("timeline").is_visible()
    note = page.locator("#timeline-note")
    assert note.get_attribute("data-peak") == "2" and note.inner_text().startswith("5 shard(s) started")
    # a viewer may not reset: no button
    assert page.get_by_test_id("reset").count() == 0
    uihelpers.screenshot(page, "ui-run", full_page=True)
    # filtering by status, sorting by a column
    page.locator('.filters button[data-filter="failed"]').click()
    assert [r.get_attribute("data-shard") for r in rows.all()] == ["s03"]
    page.locator('.filters button[data-filter="stale"]').click()
    assert [r.get_attribute("data-shard") for r in rows.all()] == ["s05"]
    page.locator('.filters button[data-filter="all"]').click()
    page.locator('th[data-key="shard_id"]').click()  # already sorted by shard id: now descending
    assert [r.get_attribute("data-shard") for r in rows.all()] == ["s06", "s05", "s04", "s03", "s02", "s01"]
    page.locator('th[data-key="cost_usd"]').click()
    assert rows.first.get_attribute("data-shard") == "s04"  # ascending, costless shards first
    page.locator('th[data-key="cost_usd"]').click()
    assert rows.first.get_attribute("data-shard") == "s01"  # the dearest shard first
    # following the log link lands on the task instance in the real Airflow UI
    page.locator('.filters button[data-filter="running"]').click()
    log.click()
    page.wait_for_url("**/dags/worktree_health/runs/**/tasks/check_health**")
    page.context.close()


def test_a_shard_shows_files_diffstat_verify_output_and_summary(ui, seeded, browser):
    _, run_id, _ = seeded
    page = _open(ui, browser, "viewer", f"#/run/{quote(run_id, safe='')}")
    page.locator('tr[data-shard="s01"] a').first.click()
    page.wait_for_selector("[data-testid=facts]")
    assert "M pkg/mod_1.py" in page.get_by_test_id("files").inner_text()
    assert "pkg/util_1.py" in page.get_by_test_id("files").inner_text()
    assert "3 insertions(+)" in page.get_by_test_id("diffstat").inner_text()
    assert "4 passed in 0.12s" in page.get_by_test_id("verify").inner_text()
    assert '"turns": 4' in page.get_by_test_id("summary").inner_text()
    facts = page.get_by_test_id("facts").inner_text()
    assert "input 6,200 (uncached 1,200 + cache read 5,000 + cache write 0), output 340" in facts
    assert "worker-b:202" in facts
    uihelpers.screenshot(page, "ui-shard", full_page=True)
    page.goto(f"{ui.base_url}/worktree/#/run/{quote(run_id, safe='')}/shard/s03")
    page.wait_for_selector("[data-testid=shard-error]")
    assert "1 failed, 3 passed" in page.get_by_test_id("shard-error").inner_text()
    page.context.close()


def test_attempts_of_a_shard_when_the_store_keeps_them(ui, seeded):
    store, run_id, _ = seeded
    if not hasattr(store, "list_attempts"):
        status, body = ui.request("GET", f"/worktree/api/shard?run_id={quote(run_id)}&shard_id=s01", user="viewer")
        assert status == 200 and body["attempts"] is None  # schema before v3: the page says so
        return
    store.reset_stale(3600, run_id=run_id)  # s05's dead attempt ends; a second attempt takes the shard
    store.complete(store.assign_shard(run_id, "worker-e:505", "s05"), input_tokens=50, output_tokens=5)
    status, body = ui.request("GET", f"/worktree/api/shard?run_id={quote(run_id)}&shard_id=s05", user="viewer")
    assert status == 200, body
    assert [a["attempt"] for a in body["attempts"]] == [1, 2]
    assert [a["worker_id"] for a in body["attempts"]] == ["worker-dead:404", "worker-e:505"]
    assert not any("lease_token" in a for a in body["attempts"]), "the fencing token is not shown to readers"


def test_health_panel_shows_the_check_thresholds_with_worktrees_and_disk(ui, seeded, browser, worktree_root):
    page = _open(ui, browser, "viewer", "#/health")
    table = page.get_by_test_id("health")
    levels = {r.get_attribute("data-metric"): r.get_attribute("data-level") for r in table.locator("tbody tr").all()}
    assert set(levels) == {"active_worktrees", "task_duration_s", "failed_ratio", "disk_free_pct", "db_size_bytes",
                           "stale_locks"}
    assert levels["task_duration_s"] == "critical" and levels["failed_ratio"] == "critical"
    assert levels["active_worktrees"] == "ok" and levels["stale_locks"] == "ok"
    worktrees = table.locator('tr[data-metric="active_worktrees"]').inner_text()
    assert "Active Worktrees\t2\t" in worktrees
    assert str(worktree_root) in page.locator("main").inner_text()
    assert "Review error logs" in page.get_by_test_id("actions").inner_text()
    assert page.get_by_test_id("stale").locator("tbody tr").count() == 1
    # the same figures as `airflow-worktree check`
    status, body = ui.request("GET", "/worktree/api/health", user="viewer")
    assert status == 200 and body["level"] == "critical"
    uihelpers.screenshot(page, "ui-health", full_page=True)
    page.context.close()


def test_reached_from_the_airflow_navigation_and_the_dag_run(ui, seeded, browser):
    _, run_id, _ = seeded
    page = ui.page(browser, "admin")
    page.goto(ui.base_url + "/")
    page.get_by_role("link", name="Worktree shards").click()
    page.wait_for_url("**/plugin/worktree")
    frame = page.frame_locator("iframe")
    frame.locator(f'tr[data-run="{run_id}"]').wait_for()
    assert frame.locator("tr[data-run]").count() == 2
    uihelpers.screenshot(page, "ui-in-airflow")
    # the DAG run's own "Shards" tab shows that run
    page.goto(f"{ui.base_url}/dags/worktree_health/runs/{quote(run_id, safe='')}")
    page.locator('a[href$="/plugin/worktree-run"]', has_text="Shards").click()
    frame = page.frame_locator("iframe")
    frame.locator('tr[data-shard="s05"][data-stale]').wait_for()
    page.context.close()


def test_reset_stale_shards_as_a_user_who_may_clear_task_instances(ui, seeded, browser):
    store, run_id, _ = seeded
    page = _open(ui, browser, "operator", f"#/run/{quote(run_id, safe='')}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("reset").click()
    page.get_by_test_id("reset-done").wait_for()
    assert "s05" in page.get_by_test_id("reset-done").inner_text()
    assert store.get_shard(run_id, "s05")["status"] == "pending"
    assert page.locator("tr[data-stale]").count() == 0
    assert page.locator('tr[data-shard="s05"]').get_attribute("data-status") == "pending"
    page.context.close()


@pytest.mark.postgres
def test_postgres_shard_database_through_the_connection(ui, dag_run_id, browser, pg_url):
    from urllib.parse import urlsplit

    store = ShardStore.open(pg_url)
    kinds = uihelpers.seed_run(store, dag_run_id, old_clock=uihelpers.old_store(pg_url))
    url = urlsplit(pg_url)
    ui.set_connection("shard_status_default", conn_type="postgres", host=url.hostname, port=url.port or 5432,
                      login=url.username, schema=url.path.lstrip("/"))
    status, body = ui.request("GET", f"/worktree/api/run?run_id={quote(dag_run_id)}", user="viewer")
    assert status == 200, body
    assert {s["shard_id"]: s["status"] for s in body["shards"]} == {
        sid: ("running" if kind == "stale" else kind) for sid, kind in kinds.items()}
    assert [s["shard_id"] for s in body["shards"] if s["stale"]] == ["s05"]
    page = _open(ui, browser, "viewer")
    assert page.locator(f'tr[data-run="{dag_run_id}"]').get_attribute("data-level") == "critical"
    assert "postgresql" in page.locator("#db").inner_text()
    page.context.close()


def test_no_shard_database_yet_is_said_and_not_created(ui, tmp_path, browser):
    missing = tmp_path / "not-yet" / "shard_status.db"
    ui.set_connection("shard_status_default", conn_type="sqlite", host=str(missing))
    status, body = ui.request("GET", "/worktree/api/runs", user="viewer")
    assert status == 200 and body["runs"] == [] and body["message"] == "no shard database yet"
    status, body = ui.request("GET", "/worktree/api/run?run_id=anything", user="viewer")
    assert status == 404 and "anything" in body["detail"]
    page = _open(ui, browser, "viewer")
    assert "no shard database yet" in page.get_by_test_id("empty").inner_text()
    page.context.close()
    assert not missing.exists() and not missing.parent.exists(), "reading must not create the database"


def test_a_dag_run_that_planned_no_shards_says_so_without_alarm(ui, seeded, browser):
    """A parallel_maintenance_poc run whose plan matched no file has no shard row: its Shards tab says so
    neutrally (it used to show a red "no shard ... check the run id" although the run id was right)."""
    status, body = ui.request("POST", "/api/v2/dags/parallel_maintenance_poc/dagRuns", user="admin",
                              body={"logical_date": None, "conf": {"repo": "/srv/clean-repo"}})
    assert status == 200, body
    run_id = body["dag_run_id"]
    with sqlite3.connect(ui.home / "airflow.db") as db:  # the plan task succeeded with nothing to do
        db.execute("UPDATE task_instance SET state = 'success' WHERE run_id = ? AND task_id = 'plan'", (run_id,))
    status, view = ui.request("GET", f"/worktree/api/run?run_id={quote(run_id)}", user="viewer")
    assert status == 200 and view["shards"] == [] and view["dag_id"] == "parallel_maintenance_poc", view
    assert view["message"] == "this run planned no shards (nothing matched the task's files)"
    page = _open(ui, browser, "viewer", f"#/run/{quote(run_id, safe='')}")
    try:
        assert page.get_by_test_id("error").count() == 0, "a run with no shard is no error"
        note = page.get_by_test_id("no-shards")
        assert "This run planned no shards (nothing matched the task's files)." in note.inner_text()
        assert "check the run id" not in page.locator("main").inner_text()
        colour = note.evaluate("e => getComputedStyle(e).borderColor + ' ' + getComputedStyle(e).color")
        assert "217, 52, 43" not in colour, colour  # not the critical red of errors
        uihelpers.screenshot(page, "ui-run-no-shards")
    finally:
        page.context.close()
    # a run id neither the shard database nor Airflow knows is still a 404
    status, body = ui.request("GET", "/worktree/api/run?run_id=no_such_run", user="viewer")
    assert status == 404 and "check the run id" in body["detail"]


def test_the_page_prints_the_figures_of_the_cli_report(ui, seeded, browser, tmp_path):
    """One set of figures: the run page's tokens, cost and durations are the words `airflow-worktree report`
    prints for the same run; a run against the offline test double is marked on both."""
    store, run_id, _ = seeded
    store.register_shards("offline_run", ["o1"])
    store.complete(store.assign_shard("offline_run", "w:9", "o1"), input_tokens=0, output_tokens=256,
                   cache_read_tokens=11_000, cache_write_tokens=1_908, cost_usd=0.0076,
                   summary={"offline": True, "model": "claude-sonnet-4-6"})
    db = str(tmp_path / "shard_status.db")

    def cli(run: str) -> str:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "af"),
               "COLUMNS": "250", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
        return subprocess.run([sys.executable, "-m", "airflow_provider_worktree.cli", "report", "--db", db,
                               "--run-id", run, "--color", "never"], capture_output=True, text=True, check=True,
                              timeout=120, env=env).stdout

    for run, offline in ((run_id, False), ("offline_run", True)):
        text = cli(run)
        tokens = next(ln for ln in text.splitlines() if ln.startswith("  tokens: ")).removeprefix("  tokens: ")
        cost = next(ln for ln in text.splitlines() if ln.startswith("  cost ")).removeprefix("  cost ").split(";")[0]
        page = _open(ui, browser, "viewer", f"#/run/{quote(run, safe='')}")
        try:
            cards = page.get_by_test_id("cards")
            assert cards.locator('[data-card="Tokens"] b').inner_text() == tokens
            assert cards.locator('[data-card="Cost"] b').inner_text() == cost
            assert (page.get_by_test_id("offline").count() == 1) is offline
            for row in page.locator("tbody#shard-rows tr").all():
                shard = row.get_attribute("data-shard")
                cli_row = next(ln for ln in text.splitlines() if ln.startswith(shard + " "))
                cells = row.locator("td").all_inner_texts()
                duration, figures = cells[4], cells[7]
                if row.get_attribute("data-status") in ("running", "pending"):
                    duration = ""  # the page counts a running shard's time up to now; the report has no end yet
                assert figures in cli_row and (not duration or f" {duration} " in cli_row), (cells, cli_row)
        finally:
            page.context.close()
    assert tokens == "input 12,908 (uncached 0 + cache read 11,000 + cache write 1,908), output 256"
    assert cost == "$0.0076 (offline test double, not billed)"
    page = _open(ui, browser, "viewer")
    try:
        row = page.locator('tr[data-run="offline_run"]')
        assert "offline test double" in row.inner_text() and "12,908/256" in row.inner_text()
    finally:
        page.context.close()
