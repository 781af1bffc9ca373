"""The Fleet page in Chromium against a real server: workers, queues, failures and dead
letters shown; a replay and a discard, each asked first in the confirmation dialog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, Api, UiServer, start_server
from tests.browser.test_dashboard import _A11Y_CHECK, ready, ui

pytestmark = pytest.mark.browser

CE = {"content-type": "application/cloudevents+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    srv = start_server(tmp_path_factory.mktemp("fleet-ui"))
    try:
        yield srv
    finally:
        srv.kill()


def refused(api: Api, data: dict[str, Any]) -> None:
    envelope = {
        "specversion": "1.0",
        "type": "dats.task.output.created",
        "source": "/test",
        "id": str(uuid.uuid4()),
        "data": data,
    }
    r = api.http.post("/api/v1/events", json=envelope, headers=CE)
    assert r.status_code == 422, r.text


def letters(api: Api) -> list[dict[str, Any]]:
    return list(api.http.get("/api/v1/dead-letters").json()["items"])


def test_fleet_page_shows_the_fleet_and_replays_and_discards(
    server: UiServer, open_page: Any, tmp_path: Path
) -> None:
    api = Api(server.url)
    tid = api.submit("Write a fibonacci function", project="fleet")
    api.wait_status(tid, "running")
    api.event(
        "task.output.created",
        {
            "task_id": tid,
            "worker_id": "worker-7",
            "model_used": "gemma3:12b",
            "artifacts": [{"id": "a1", "type": "code", "path": "a.py"}],
        },
    )
    failing = api.submit("Write a parser", project="fleet")
    api.wait_status(failing, "running")
    api.event("task.failed", {"task_id": failing, "worker_id": "worker-8", "error": "oom"})
    refused(api, {"task_id": tid})  # no artifacts: still poison on replay
    refused(api, {"task_id": str(uuid.uuid4()), "artifacts": []})

    page, rec = open_page(server.url)
    page.goto(ui(server, "/fleet"))
    ready(page)
    assert page.locator('#fleet-workers [data-worker="worker-7"]').count() == 1
    workers_text = page.locator("#fleet-workers").inner_text()
    assert "gemma3:12b" in workers_text and "worker-8" in workers_text
    assert "not applicable" in page.locator("#broker-source").inner_text()
    assert failing[-8:] in page.locator("#fleet-failures").inner_text()
    assert page.locator("#fleet-dead-letters tbody tr").count() == 2
    assert page.evaluate(_A11Y_CHECK) == []
    assert page.locator("nav [data-nav=fleet][aria-current=page]").count() == 1

    poison = next(d for d in letters(api) if d["project_id"] == "fleet")
    # Replay, asked first: Escape changes nothing.
    page.click(f'[data-replay="{poison["id"]}"]')
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert next(d for d in letters(api) if d["id"] == poison["id"])["replays"] == 0
    page.click(f'[data-replay="{poison["id"]}"]')
    dialog.wait_for()
    page.click("#confirm-ok")
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent.startsWith('Still refused')"
    )
    assert next(d for d in letters(api) if d["id"] == poison["id"])["replays"] == 1
    # Discard it: the row goes.
    page.click(f'[data-discard="{poison["id"]}"]')
    dialog.wait_for()
    page.click("#confirm-ok")
    page.wait_for_function("() => document.querySelectorAll('#fleet-dead-letters tbody tr').length === 1")
    assert [d["id"] for d in letters(api)] != [poison["id"]] and len(letters(api)) == 1
    rec.assert_clean()

    phone, phone_rec = open_page(server.url, PHONE)
    phone.goto(ui(server, "/fleet"))
    ready(phone)
    assert not phone.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    phone.screenshot(path=str(tmp_path / "fleet-phone.png"))
    phone_rec.assert_clean()
