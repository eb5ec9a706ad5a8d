"""The dashboard's Changesets view: the pull/merge requests runs published, their burndown, in a real Airflow
api-server seen through headless Chromium; and the burndown's derivation, tested directly with known dates.

The changesets are recorded through ``ShardStore.record_changeset`` into a real SQLite shard database, each by a
store whose clock says the day it happened (created days ago, merged or closed later), so the rows hold what a
publish and a later sync would have written. Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest

import uihelpers
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.ui import data

def _today() -> dt.date:
    """UTC today, asked when a test runs (not when the module is imported: a run may cross midnight UTC)."""
    return dt.datetime.now(dt.timezone.utc).date()


def _day(n: int, today: dt.date) -> dt.date:
    """``n`` days before ``today``."""
    return today - dt.timedelta(days=n)


def _row(created: str | None, updated: str | None = None, *, publication: str = "published",
         state: str = "open", **extra) -> dict:
    return {"created_at": created, "updated_at": updated or created, "publication": publication,
            "external_state": state, **extra}


# ----------------------------------------------------------------------------------------- the burndown, directly
def test_burndown_counts_each_day_from_creation_and_the_terminal_state_from_the_last_change():
    rows = [
        _row("2024-05-01 09:00:00.000000", publication="draft"),                       # a draft, still open
        _row("2024-05-02 23:59:59.999999"),                                            # published, open
        _row("2024-05-02 08:00:00", "2024-05-04 10:00:00", state="merged"),            # open, then merged
        _row("2024-05-03 12:00:00", "2024-05-05 01:00:00", publication="draft", state="closed"),
        _row("2024-05-04 07:00:00", "2024-05-04 18:00:00", state="merged"),            # merged the day it opened
    ]
    out = data.burndown(rows, today=dt.date(2024, 5, 6))
    assert out["series"] == ["merged", "closed", "open", "draft"]
    assert (out["from"], out["to"], out["truncated"], out["total"], out["uncounted"]) == (
        "2024-05-01", "2024-05-06", False, 5, 0)
    by_day = {d["date"]: (d["draft"], d["open"], d["merged"], d["closed"]) for d in out["days"]}
    assert by_day == {
        "2024-05-01": (1, 0, 0, 0),
        "2024-05-02": (1, 2, 0, 0),   # created at 23:59:59 counts on its own day
        "2024-05-03": (2, 2, 0, 0),   # the later-closed draft counts as a draft before it closed
        "2024-05-04": (2, 1, 2, 0),   # merged from its updated_at day, also the one merged on its first day
        "2024-05-05": (1, 1, 2, 1),
        "2024-05-06": (1, 1, 2, 1),   # up to today, with no change
    }
    assert out["message"] is None


def test_burndown_days_stop_at_today_capped_at_90_and_earlier_changesets_count_on_the_first_day():
    today = dt.date(2024, 12, 31)
    rows = [_row("2024-01-01 00:00:00", publication="draft"),
            _row("2024-03-01 00:00:00", "2024-12-30 12:00:00", state="closed")]
    out = data.burndown(rows, today=today)
    assert len(out["days"]) == data.BURNDOWN_MAX_DAYS == 90 and out["truncated"] is True
    assert out["to"] == "2024-12-31" and out["from"] == (today - dt.timedelta(days=89)).isoformat()
    assert out["days"][0] == {"date": out["from"], "draft": 1, "open": 1, "merged": 0, "closed": 0}
    assert out["days"][-2] == {"date": "2024-12-30", "draft": 1, "open": 0, "merged": 0, "closed": 1}
    short = data.burndown(rows, today=today, max_days=7)
    assert len(short["days"]) == 7 and short["from"] == "2024-12-25"
    assert len(data.burndown(rows, today=today, max_days=1000)["days"]) == 90  # the cap holds for callers too


def test_burndown_leaves_out_what_was_never_on_the_forge_and_reads_every_timestamp_form():
    created = dt.datetime(2024, 5, 2, 22, 30)  # PostgreSQL hands datetimes; the API hands epoch seconds
    rows = [_row("2024-05-01 10:00:00", publication="unpublished"),               # a publish that never landed
            _row(None),                                                           # no creation time: no day
            _row(created, created + dt.timedelta(hours=3), state="merged"),       # merged 01:30 the next day
            _row(created.replace(tzinfo=dt.timezone.utc).timestamp(), publication="draft"),
            _row("2024-05-09 00:00:00")]                                          # after "today": not yet
    out = data.burndown(rows, today=dt.date(2024, 5, 3))
    assert out["from"] == "2024-05-01" and out["total"] == 5 and out["uncounted"] == 3
    assert [(d["date"], d["draft"], d["open"], d["merged"]) for d in out["days"]] == [
        ("2024-05-01", 0, 0, 0), ("2024-05-02", 1, 1, 0), ("2024-05-03", 1, 0, 1)]
    empty = data.burndown([], today=dt.date(2024, 5, 3))
    assert empty["days"] == [] and empty["from"] is None and empty["message"] == data.NO_CHANGESETS


def test_changeset_stage_names_where_a_changeset_is():
    assert [data.changeset_stage(r) for r in (
        _row("x", publication="draft"), _row("x"), _row("x", publication="unpublished"),
        _row("x", publication="draft", state="closed"), _row("x", state="merged"))] == [
        "draft", "open", "unpublished", "closed", "merged"]


# ----------------------------------------------------------------------------------------- a real shard database
def _store_at(db: str, day: dt.date, hour: int = 12) -> ShardStore:
    """A store of ``db`` whose clock says ``hour``:00 UTC of ``day``: what it records happened then."""
    when = dt.datetime(day.year, day.month, day.day, hour)
    return ShardStore.open(db, clock=lambda: when)


def _changeset(repository: str, number: int, *, forge: str = "github", publication: str = "published",
               state: str = "open", **extra) -> dict:
    url = (f"https://github.com/{repository}/pull/{number}" if forge == "github"
           else f"https://gitlab.example/{repository}/-/merge_requests/{number}")
    return {"forge": forge, "repository": repository, "head": f"worktree/fix-{number}", "base": "main",
            "number": number, "url": url, "title": f"Fix lint findings ({number})", "publication": publication,
            "external_state": state, "review": "pending", "checks": "pending", "head_sha": f"{number:040d}",
            "action": "created", **extra}


LONG_TITLE = ("Replace the deprecated datetime.utcnow() calls across the scheduler, the triggerer and the worker "
              "packages with timezone-aware ones (no behaviour change)")
ERROR = 'GitHub answered 502 <Bad Gateway> & "<img src=x onerror=window.__xss=1>": retry later'


def seed_changesets(db: str, today: dt.date) -> dict[str, dict]:
    """Two runs with shard costs, five changesets on three repositories and two forges created over the last six
    days: a draft (acme/api#11), an open one with two failed syncs (acme/api#12), one merged two days ago
    (acme/web#21), a draft closed yesterday (acme/web#22) and a merge request of no run (group/lib!3); the days
    count back from ``today``."""
    store = ShardStore.open(db)
    store.register_shards("pub_run_1", ["a", "b"])
    store.complete(store.assign_shard("pub_run_1", "w:1", "a"), input_tokens=10, output_tokens=5, cost_usd=0.0123)
    store.complete(store.assign_shard("pub_run_1", "w:1", "b"), input_tokens=10, output_tokens=5, cost_usd=0.0177)
    store.register_shards("pub_run_2", ["c"])
    store.complete(store.assign_shard("pub_run_2", "w:2", "c"), input_tokens=0, output_tokens=9, cost_usd=0.0076,
                   summary={"offline": True})
    _store_at(db, _day(6, today)).record_changeset(_changeset("acme/api", 11, publication="draft"), run_id="pub_run_1")
    _store_at(db, _day(5, today)).record_changeset(_changeset("acme/api", 12, review="approved", checks="passing"),
                                            run_id="pub_run_1")
    _store_at(db, _day(4, today), 9).record_changeset(_changeset("acme/web", 21), run_id="pub_run_1")
    _store_at(db, _day(2, today)).record_changeset(_changeset("acme/web", 21, state="merged", review="approved",
                                                       checks="passing", action="updated"))
    _store_at(db, _day(4, today)).record_changeset(_changeset("acme/web", 22, publication="draft"), run_id="pub_run_2")
    _store_at(db, _day(1, today)).record_changeset(_changeset("acme/web", 22, publication="draft", state="closed",
                                                       action="closed"))
    _store_at(db, _day(3, today)).record_changeset(_changeset("group/lib", 3, forge="gitlab", checks="failing",
                                                       title=LONG_TITLE))
    for _ in range(2):
        _store_at(db, _day(1, today)).record_changeset_failure("github", "acme/api", "worktree/fix-12", ERROR)
    return {f"{c['repository']}#{c['number']}": c for c in store.changesets()}


def expected(today: dt.date) -> dict[dt.date, tuple[int, int, int, int]]:
    """What the burndown must say at the end of three known days (draft, open, merged, closed)."""
    return {_day(3, today): (2, 3, 0, 0), _day(2, today): (2, 2, 1, 0), _day(0, today): (1, 2, 1, 1)}


def test_changesets_view_reads_states_failures_and_the_publishing_runs_cost(tmp_path):
    db = str(tmp_path / "shard_status.db")
    today = _today()
    seed_changesets(db, today)
    store = ShardStore.open(db, read_only=True)
    view = data.changesets_view(store)
    rows = {f"{c['repository']}#{c['number']}": c for c in view["changesets"]}
    assert list(rows) == ["acme/api#11", "acme/api#12", "acme/web#21", "acme/web#22", "group/lib#3"]
    assert {k: c["stage"] for k, c in rows.items()} == {"acme/api#11": "draft", "acme/api#12": "open",
                                                        "acme/web#21": "merged", "acme/web#22": "closed",
                                                        "group/lib#3": "open"}
    assert view["counts"] == {"draft": 1, "open": 2, "merged": 1, "closed": 1, "unpublished": 0}
    assert rows["acme/api#12"]["failures"] == 2 and rows["acme/api#12"]["last_error"] == ERROR
    # the run that last published it: a sync records no run, so acme/web#21 keeps pub_run_1's cost
    assert [rows[k]["cost_text"] for k in rows] == ["$0.0300", "$0.0300", "$0.0300", "$0.0076", ""]
    assert rows["acme/web#22"]["cost_title"] == "$0.0076 (offline test double, not billed)"
    assert [rows[k]["offline"] for k in rows] == [False, False, False, True, False]
    assert rows["acme/web#21"]["run_id"] == "pub_run_1" and rows["group/lib#3"]["cost_usd"] is None
    assert [c["number"] for c in data.changesets_view(store, state="merged")["changesets"]] == [21]
    assert [c["number"] for c in data.changesets_view(store, repository="acme/api")["changesets"]] == [11, 12]
    assert [c["number"] for c in data.changesets_view(store, run_id="pub_run_2")["changesets"]] == [22]
    days = {d["date"]: (d["draft"], d["open"], d["merged"], d["closed"])
            for d in data.burndown(view["changesets"], today=today)["days"]}
    assert len(days) == 7 and all(days[d.isoformat()] == want for d, want in expected(today).items())
    empty = data.changesets_view(ShardStore.open(str(tmp_path / "empty.db")))
    assert empty["changesets"] == [] and empty["message"] == data.NO_CHANGESETS


# ----------------------------------------------------------------------------------------- the page, in Airflow
_SKIP = uihelpers.skip_reason()
browser_test = pytest.mark.skipif(bool(_SKIP), reason=_SKIP or "")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    server = uihelpers.AirflowUI.start(tmp_path_factory.mktemp("ui"))
    yield server
    server.stop()


@pytest.fixture
def today():
    """UTC today, once per test: the days seeded and the days expected are counted from the same day."""
    return _today()


@pytest.fixture
def seeded(ui, tmp_path, today):
    db = str(tmp_path / "shard_status.db")
    recorded = seed_changesets(db, today)
    ui.set_connection("shard_status_default", conn_type="sqlite", host=db)
    return recorded


def _open(ui, browser, user, fragment="#/changesets", width=1400):
    page = ui.page(browser, user, width=width)
    page.goto(f"{ui.base_url}/worktree/{fragment}")
    page.wait_for_selector("body[data-loaded]")
    return page


def _overflow(page) -> dict:
    return page.evaluate("""() => { const d = document.documentElement, box = document.getElementById('changesets-box');
        return {page: d.scrollWidth - d.clientWidth, table: box ? box.scrollWidth - box.clientWidth : 0}; }""")


@browser_test
@pytest.mark.integration
def test_the_endpoints_need_read_access_and_filter(ui, seeded, today):
    for path in ("/worktree/api/changesets", "/worktree/api/changesets/burndown"):
        status, body = ui.request("GET", path)
        assert status == 401 and "acme" not in str(body), (path, body)
        status, body = ui.request("GET", path, user="nobody")
        assert status == 403 and "acme" not in str(body), (path, body)
    status, body = ui.request("GET", "/worktree/api/changesets", user="viewer")
    assert status == 200 and body["total"] == 5 and body["database"]
    assert body["repositories"] == ["acme/api", "acme/web", "group/lib"]
    for query, numbers in (("state=merged", [21]), ("state=open&repository=acme/api", [11, 12]),
                           ("run_id=pub_run_2", [22]), ("repository=nobody/none", [])):
        status, body = ui.request("GET", f"/worktree/api/changesets?{query}", user="viewer")
        assert status == 200 and [c["number"] for c in body["changesets"]] == numbers, (query, body)
    status, body = ui.request("GET", "/worktree/api/changesets?state=draft", user="viewer")
    assert status == 400 and "open, merged, closed" in body["detail"]  # draft is a publication, not a state
    status, body = ui.request("GET", "/worktree/api/changesets/burndown?days=3", user="viewer")
    assert status == 200 and [d["date"] for d in body["days"]] == [_day(n, today).isoformat() for n in (2, 1, 0)]
    assert body["days"][-1] == {"date": today.isoformat(), "draft": 1, "open": 2, "merged": 1, "closed": 1}
    status, body = ui.request("GET", "/worktree/api/changesets/burndown?repository=acme/web", user="viewer")
    assert status == 200 and body["total"] == 2 and body["days"][-1]["merged"] == 1
    status, body = ui.request("GET", "/worktree/api/changesets/burndown?days=91", user="viewer")
    assert status == 422


@browser_test
@pytest.mark.integration
def test_the_changesets_page_lists_filters_and_charts(ui, seeded, browser, tmp_path, today):
    page = _open(ui, browser, "viewer")
    try:
        assert page.locator('nav a[data-nav="changesets"]').get_attribute("class") == "active"
        rows = page.locator("tbody#changeset-rows tr")
        assert [r.get_attribute("data-changeset") for r in rows.all()] == [
            "acme/api#11", "acme/api#12", "acme/web#21", "acme/web#22", "group/lib#3"]
        links = page.get_by_test_id("changeset-link")
        assert links.count() == 5
        first = page.locator('tr[data-changeset="acme/api#11"]')
        link = first.get_by_test_id("changeset-link")
        assert link.inner_text() == "#11" and link.get_attribute("href") == "https://github.com/acme/api/pull/11"
        assert "noopener" in link.get_attribute("rel").split() and link.get_attribute("target") == "_blank"
        cells = first.locator("td").all_inner_texts()
        assert cells[0].startswith("acme/api") and "github" in cells[0]
        assert cells[2].startswith("Fix lint findings (11)") and "worktree/fix-11" in cells[2]
        assert cells[3:7] == ["draft", "draft", "pending", "pending"]
        assert cells[8] == "pub_run_1" and cells[9] == "$0.0300"
        merged = page.locator('tr[data-changeset="acme/web#21"] td').all_inner_texts()
        assert merged[3:7] == ["published", "merged", "approved", "passing"]
        gitlab = page.locator('tr[data-changeset="group/lib#3"]')
        assert gitlab.get_by_test_id("changeset-link").get_attribute("href").startswith("https://gitlab.example/")
        assert gitlab.locator("td").all_inner_texts()[8:10] == ["-", ""]
        assert gitlab.locator("td.title").inner_text().startswith(LONG_TITLE)
        offline = page.locator('tr[data-changeset="acme/web#22"] td[data-figure="cost"]')
        assert offline.inner_text() == "$0.0076 offline"
        assert offline.get_attribute("title") == "$0.0076 (offline test double, not billed)"
        # the failures: a count, the last error (escaped, never run) as a tooltip and behind a click
        failed = page.locator('tr[data-changeset="acme/api#12"] td.failures')
        assert failed.get_attribute("data-failures") == "2"
        assert failed.locator("details").get_attribute("title") == ERROR
        assert not failed.get_by_test_id("last-error").is_visible()
        failed.locator("summary").click()
        assert failed.get_by_test_id("last-error").inner_text() == ERROR
        assert page.evaluate("() => window.__xss === undefined && !document.querySelector('td.failures img')")
        # the chart: four stacked series, the counts of known days, a title, a legend and axis labels
        chart = page.get_by_test_id("burndown-chart")
        assert chart.get_attribute("role") == "img"
        assert chart.locator("title").first.text_content().startswith("Changesets per day")
        assert chart.get_attribute("data-from") == _day(6, today).isoformat()
        assert chart.get_attribute("data-to") == today.isoformat()
        series = {p.get_attribute("data-series"): p.get_attribute("data-last")
                  for p in chart.locator("path.area").all()}
        assert series == {"draft": "1", "open": "2", "merged": "1", "closed": "1"}
        assert chart.locator("rect.day").count() == 7
        for day, (draft, open_, merged_n, closed) in expected(today).items():
            col = chart.locator(f'rect.day[data-day="{day.isoformat()}"]')
            got = tuple(int(col.get_attribute(f"data-{s}")) for s in ("draft", "open", "merged", "closed"))
            assert got == (draft, open_, merged_n, closed), day
            assert col.locator("title").text_content() == (
                f"{day.isoformat()}: draft {draft}, open {open_}, merged {merged_n}, closed {closed}")
        labels = chart.locator("text.label").all_text_contents()
        assert labels[0].startswith("Day (UTC") and labels[1] == "Changesets"
        legend = page.get_by_test_id("burndown-legend").inner_text()
        assert all(word in legend for word in ("draft 1", "open 2", "merged 1", "closed 1"))
        page.screenshot(path=str(tmp_path / "changesets-1400.png"), full_page=True)
        # filtering by stage, then by repository
        page.locator('button[data-stage="merged"]').click()
        assert [r.get_attribute("data-changeset") for r in rows.all()] == ["acme/web#21"]
        page.locator('button[data-stage="open"]').click()
        assert [r.get_attribute("data-changeset") for r in rows.all()] == ["acme/api#12", "group/lib#3"]
        assert page.locator('button[data-stage="open"]').get_attribute("class") == "active"
        page.get_by_test_id("changeset-repo").select_option("acme/api")
        assert [r.get_attribute("data-changeset") for r in rows.all()] == ["acme/api#12"]
        page.locator('button[data-stage="closed"]').click()
        assert page.get_by_test_id("no-match").is_visible()
        page.locator('button[data-stage="all"]').click()
        assert [r.get_attribute("data-changeset") for r in rows.all()] == ["acme/api#11", "acme/api#12"]
        # the run link leads to the run's page
        page.get_by_test_id("changeset-repo").select_option("")
        page.locator('tr[data-changeset="acme/web#22"] a[href^="#/run/"]').click()
        page.wait_for_selector('tr[data-shard="c"]')
    finally:
        page.context.close()


@browser_test
@pytest.mark.integration
@pytest.mark.parametrize("width", [1280, 1440])
def test_no_horizontal_overflow(ui, seeded, browser, tmp_path, width):
    page = _open(ui, browser, "viewer", width=width)
    try:
        page.locator('tr[data-changeset="acme/api#12"] summary').click()  # the longest cell, open
        overflow = _overflow(page)
        assert overflow["page"] <= 0 and overflow["table"] <= 0, overflow
        box = page.get_by_test_id("burndown-chart").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
        page.screenshot(path=str(tmp_path / f"changesets-{width}.png"), full_page=True)
    finally:
        page.context.close()


@browser_test
@pytest.mark.integration
def test_no_changeset_yet_says_how_to_publish(ui, browser, tmp_path):
    db = tmp_path / "shard_status.db"
    ShardStore.open(str(db)).register_shards("run_without_publish", ["s1"])
    ui.set_connection("shard_status_default", conn_type="sqlite", host=str(db))
    status, body = ui.request("GET", f"/worktree/api/changesets?run_id={quote('run_without_publish')}",
                              user="viewer")
    assert status == 200 and body["changesets"] == [] and body["message"] == data.NO_CHANGESETS
    page = _open(ui, browser, "viewer")
    try:
        empty = page.get_by_test_id("empty")
        assert empty.inner_text() == "No run published a pull request yet: set the publish Param to draft."
        assert page.get_by_test_id("burndown-chart").count() == 0
        page.screenshot(path=str(tmp_path / "changesets-empty.png"))
    finally:
        page.context.close()


def seed_campaign(db: str) -> None:
    """One campaign run over two repositories (each repository's shards prefixed, as the campaign DAG does):
    acme/api's pull request merged, acme/web's open; and one changeset of no campaign."""
    from airflow_provider_worktree.core.campaigns.run import repo_prefix

    store = ShardStore.open(db)
    api, web = repo_prefix("acme/api"), repo_prefix("acme/web")
    store.register_shards("camp_run", [api + "a", api + "b", web + "a"])
    for shard, cost in ((api + "a", 0.01), (api + "b", 0.02), (web + "a", 0.5)):
        store.complete(store.assign_shard("camp_run", "w:1", shard), input_tokens=1, output_tokens=1, cost_usd=cost)
    store.record_changeset(_changeset("acme/api", 7, head="campaign/sweep", state="merged"), run_id="camp_run")
    store.record_changeset(_changeset("acme/web", 8, head="campaign/sweep"), run_id="camp_run")
    store.record_changeset(_changeset("acme/web", 9), run_id="camp_run")


def test_changesets_group_by_campaign_with_each_repositorys_own_cost(tmp_path):
    db = str(tmp_path / "shard_status.db")
    seed_campaign(db)
    view = data.changesets_view(ShardStore.open(db))
    by = {(c["repository"], c["number"]): c for c in view["changesets"]}
    assert by[("acme/api", 7)]["campaign"] == "sweep" and by[("acme/web", 9)]["campaign"] is None
    assert by[("acme/api", 7)]["cost_usd"] == pytest.approx(0.03), "only acme/api's shards of the campaign run"
    assert by[("acme/web", 8)]["cost_usd"] == pytest.approx(0.5)
    assert by[("acme/web", 9)]["cost_usd"] == pytest.approx(0.53), "not a campaign: the run's whole cost"
    (group,) = view["campaigns"]
    assert (group["campaign"], group["total"], group["counts"]["merged"], group["counts"]["open"]) == ("sweep", 2, 1, 1)
    assert group["cost_usd"] == pytest.approx(0.53) and group["cost_per_merged_usd"] == pytest.approx(0.53)


@browser_test
@pytest.mark.integration
def test_the_page_groups_a_campaigns_pull_requests(ui, browser, tmp_path):
    db = str(tmp_path / "shard_status.db")
    seed_campaign(db)
    ui.set_connection("shard_status_default", conn_type="sqlite", host=db)
    page = _open(ui, browser, "viewer")
    try:
        row = page.locator('table[data-testid="campaigns"] tr[data-campaign="sweep"]')
        assert row.get_by_test_id("cost-per-merged").inner_text() == "$0.5300"
        row.locator("button").click()  # picks the campaign filter
        shown = [r.get_attribute("data-changeset") for r in page.locator("tbody#changeset-rows tr").all()]
        assert shown == ["acme/api#7", "acme/web#8"], shown
        assert page.get_by_test_id("changeset-campaign").input_value() == "sweep"
        page.screenshot(path=str(tmp_path / "changesets-campaign.png"), full_page=True)
    finally:
        page.close()
