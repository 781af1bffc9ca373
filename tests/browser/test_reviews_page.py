"""The Reviews pages in Chromium against a real server: the open queue (oldest first), a
review's output, artifacts and QA's reason, and each decision confirmed in the dialog, by
mouse and by keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS, Api, UiServer
from tests.browser.test_dashboard import _A11Y_CHECK, ready, ui

pytestmark = pytest.mark.browser


def to_review(api: Api, description: str, reason: str) -> str:
    tid = api.submit(description, project="review-ui")
    api.wait_status(tid, "running")
    api.event(
        "task.output.created",
        {
            "task_id": tid,
            "artifacts": [{"id": f"art-{tid[-6:]}", "type": "code", "path": "fib.py"}],
            "output": {"content": "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)"},
        },
    )
    api.event("review.requested", {"task_id": tid, "reason": reason, "checklist": ["handles n = 0"]})
    api.wait_status(tid, "awaiting_review")
    return tid


def open_reviews(api: Api) -> list[dict[str, Any]]:
    r = api.http.get("/api/v1/reviews", params={"status": "open", "project_id": "review-ui"})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_the_queue_and_each_decision(server: UiServer, api: Api, open_page: Any, tmp_path: Path) -> None:
    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    first = to_review(api, "Write a fibonacci function", "confidence 0.41")
    second = to_review(api, "Write a factorial function", "the security profile wants a person")
    third = to_review(api, "Write a parser", "ambiguous requirements")

    # The queue, oldest first, at both sizes, accessible and without sideways scrolling.
    for viewport in (DESKTOP, PHONE):
        page, rec = open_page(server.url, viewport)
        page.goto(ui(server, "/reviews"))
        ready(page)
        rows = page.locator("#reviews-table tbody tr")
        assert rows.count() == 3
        assert "confidence 0.41" in rows.nth(0).inner_text()
        assert "ambiguous requirements" in rows.nth(2).inner_text()
        assert page.evaluate(_A11Y_CHECK) == []
        assert not page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        rec.assert_clean()
        page.screenshot(path=str(shots / f"reviews-{viewport['width']}x{viewport['height']}.png"))
        page.context.close()

    page, rec = open_page(server.url)
    page.goto(ui(server, "/reviews"))
    ready(page)
    # A review shows the worker's output, its artifacts and QA's reason and checklist.
    page.locator("#reviews-table tbody tr").nth(0).locator("a").first.click()
    page.wait_for_selector("#review-actions button")
    assert "return n if n < 2" in page.locator("#review-output").inner_text()
    assert f"art-{first[-6:]}" in page.inner_text("main")
    assert page.inner_text("#review-reason") == "confidence 0.41"
    assert page.inner_text("#review-checklist") == "handles n = 0"
    assert page.evaluate(_A11Y_CHECK) == []
    page.screenshot(path=str(shots / "review-1280x800.png"), full_page=True)

    # Request changes: Escape changes nothing; the feedback is required; then confirmed.
    page.click("#review-request-changes")
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert api.task(first)["status"] == "awaiting_review"
    page.click("#review-request-changes")
    dialog.wait_for()
    page.click("#confirm-ok")  # empty: the browser refuses the form, the dialog stays
    assert dialog.is_visible()
    page.fill("#confirm-f0", "handle negative n")
    page.click("#confirm-ok")
    page.wait_for_selector("#review-state [data-status=decided]")
    assert "changes requested by anonymous" in page.inner_text("#review-decision")
    assert page.locator("#review-actions button").count() == 0
    after = api.wait_status(first, "running")
    assert after["attempt"] == 2

    # Approve by keyboard, with a comment.
    rid = next(r["review_id"] for r in open_reviews(api) if r["task_id"] == second)
    page.goto(ui(server, f"/reviews/{rid}"))
    page.wait_for_selector("#review-approve")
    page.focus("#review-approve")
    page.keyboard.press("Enter")
    dialog.wait_for()
    page.keyboard.type("looks right")
    page.focus("#confirm-ok")
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-task-status [data-status=completed]")
    assert api.task(second)["status"] == "completed"

    # Reject.
    rid = next(r["review_id"] for r in open_reviews(api) if r["task_id"] == third)
    page.goto(ui(server, f"/reviews/{rid}"))
    page.click("#review-reject")
    dialog.wait_for()
    page.fill("#confirm-f0", "not what was asked")
    page.click("#confirm-ok")
    page.wait_for_selector("#review-task-status [data-status=failed]")
    assert api.task(third)["status"] == "failed"

    # The queue is empty now; the decided view lists all three, oldest first.
    page.goto(ui(server, "/reviews"))
    page.wait_for_selector("text=the queue is empty")
    page.select_option("#review-status", "decided")
    page.locator("#reviews-table tbody tr").nth(2).wait_for()
    assert page.locator("#reviews-table tbody tr").count() == 3
    text = page.inner_text("#reviews-table")
    assert text.index("changes requested") < text.index("approved") < text.index("rejected")
    rec.assert_clean()
