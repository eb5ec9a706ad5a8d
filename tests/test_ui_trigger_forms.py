"""The example DAGs' trigger forms in the real Airflow UI: worktree_health triggers with its defaults;
parallel_maintenance_poc needs a repository (issue 22: "fail in the form, not at run time"), so its Trigger button
stays disabled until ``repo`` is filled, and the run then carries it. One api-server for the module, headless
Chromium."""

from __future__ import annotations

import time

import pytest

import uihelpers

pytestmark = pytest.mark.integration

_SKIP = uihelpers.skip_reason()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    server = uihelpers.AirflowUI.start(tmp_path_factory.mktemp("ui-trigger"))
    yield server
    server.stop()


def _runs(ui, dag_id: str) -> list[dict]:
    status, body = ui.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", user="admin")
    assert status == 200, body
    return body["dag_runs"]


def _open_form(ui, browser, dag_id: str):
    page = ui.page(browser, "admin")
    page.goto(f"{ui.base_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    submit = dialog.get_by_role("button", name="Trigger")
    submit.wait_for()
    page.wait_for_timeout(500)  # the form validates its Params after rendering them
    return page, dialog, submit


def test_the_poc_form_refuses_a_missing_repository_and_triggers_with_one(ui, browser):
    dag_id = "parallel_maintenance_poc"
    before = len(_runs(ui, dag_id))
    page, dialog, submit = _open_form(ui, browser, dag_id)
    try:
        uihelpers.screenshot(page, "trigger-form-poc-no-repo")
        assert not submit.is_enabled(), "the Trigger button is enabled without a repository"
        field = dialog.locator("#element_repo")
        field.fill("/srv/some/repo")
        page.wait_for_timeout(500)
        assert submit.is_enabled(), "the Trigger button stays disabled with a repository"
        field.fill("")
        page.wait_for_timeout(500)
        assert not submit.is_enabled(), "clearing the repository enables the Trigger button"
        field.fill("/srv/some/repo")
        page.wait_for_timeout(500)
        submit.click()
        deadline = time.monotonic() + 60
        while len(runs := _runs(ui, dag_id)) == before and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        uihelpers.screenshot(page, "trigger-form-poc-after")
    finally:
        page.context.close()
    assert len(runs) == before + 1, runs
    assert runs[-1]["conf"].get("repo") == "/srv/some/repo", runs[-1]
    assert len(_runs(ui, dag_id)) == before + 1  # nothing was created while the form refused


@pytest.mark.parametrize("dag_id", ["worktree_health"])
def test_trigger_form_is_enabled_with_the_defaults_and_creates_a_run(ui, browser, dag_id):
    before = len(_runs(ui, dag_id))
    page = ui.page(browser, "admin")
    try:
        page.goto(f"{ui.base_url}/dags/{dag_id}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        submit = dialog.get_by_role("button", name="Trigger")
        submit.wait_for()
        page.wait_for_timeout(500)  # the form validates its Params after rendering them
        uihelpers.screenshot(page, f"trigger-form-{dag_id}")
        assert submit.is_enabled(), "the Trigger button is disabled with the DAG's default Params"
        submit.click()
        deadline = time.monotonic() + 60
        while len(runs := _runs(ui, dag_id)) == before and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        uihelpers.screenshot(page, f"trigger-form-{dag_id}-after")
    finally:
        page.context.close()
    assert len(runs) == before + 1, runs
    assert runs[-1]["run_type"] == "manual" and runs[-1]["triggering_user_name"] == "admin", runs[-1]
