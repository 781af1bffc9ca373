"""The project page in Chromium against a real server: the settings in effect and where
each comes from, the constitution, and both edited from the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import Api, UiServer, start_server
from tests.browser.test_dashboard import _A11Y_CHECK, ready, ui

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    srv = start_server(tmp_path_factory.mktemp("project-ui"))
    try:
        yield srv
    finally:
        srv.kill()


def test_project_page_shows_and_edits_settings_and_constitution(server: UiServer, open_page: Any) -> None:
    api = Api(server.url)
    r = api.http.post(
        "/api/v1/projects",
        json={"project_id": "web", "settings": {"max_concurrent": 3}, "constitution": "# Web rules"},
    )
    assert r.status_code == 201, r.text
    page, rec = open_page(server.url)
    page.goto(ui(server, "/projects/web"))
    ready(page)
    page.wait_for_selector('[data-setting="max_concurrent"]')
    assert "3" in page.locator('[data-setting="max_concurrent"]').inner_text()
    assert "this project" in page.locator('[data-setting="max_concurrent"]').inner_text()
    assert "the configuration" in page.locator('[data-setting="timeout_default_seconds"]').inner_text()
    assert page.locator("#constitution-current").inner_text() == "# Web rules"
    assert page.evaluate(_A11Y_CHECK) == []
    page.fill("#ps-max_concurrent", "5")
    page.click("#project-settings-form button[type=submit]")
    page.wait_for_function(
        "() => (document.querySelector('[data-setting=max_concurrent]') || {}).textContent?.startsWith('5')"
    )
    assert api.http.get("/api/v1/projects/web").json()["settings"]["max_concurrent"] == 5
    page.fill("#constitution-text", "# Web rules v2")
    page.click("#constitution-form button[type=submit]")
    page.wait_for_function(
        "() => (document.getElementById('constitution-current') || {}).textContent === '# Web rules v2'"
    )
    doc = api.http.get("/api/v1/projects/web/constitution").json()
    assert doc["version"] == 2 and doc["text"] == "# Web rules v2"
    # A project without provenance records has no consistency report: that route's 404 (the
    # page says "unavailable") is the only error expected.
    rec.assert_clean(allow=("status of 404",))
    assert sum("/consistency" in u for u in rec.requests) >= 1
