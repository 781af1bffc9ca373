"""Issue 16, defect 12: ``GET /api/v1/tasks`` (and the provenance lists) stay cheap at a
million rows. The total is counted no further than a cap (``total_capped`` says when it
stopped), offsets are bounded (422 beyond), and the keyset ``cursor`` pages to any depth.
On both databases."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration_service.services import task_manager
from orchestration_service.services.provenance import queries as provenance_queries
from tests.conftest import Service
from tests.integration.test_provenance import Graph, Rec
from tests.integration.test_tasks_api import submit


async def page(svc: Service, **params: Any) -> dict[str, Any]:
    r = await svc.client.get("/api/v1/tasks", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_offsets_beyond_ten_thousand_are_refused(service: Service) -> None:
    assert (await page(service, offset=10_000))["items"] == []
    r = await service.client.get("/api/v1/tasks", params={"offset": 10_001})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "offset"


async def test_the_total_stops_counting_at_the_cap(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(7):
        await submit(service, description=f"task {i}", project_id="big" if i < 6 else "small")
    exact = await page(service, limit=2)
    assert (exact["total"], exact["total_capped"]) == (7, False)

    monkeypatch.setattr(task_manager, "LIST_TOTAL_CAP", 5)
    capped = await page(service, limit=2)
    assert (capped["total"], capped["total_capped"]) == (5, True)
    assert len(capped["items"]) == 2 and capped["next_cursor"]
    # Under the cap the count is exact, filters included.
    assert (await page(service, project_id="small"))["total"] == 1
    assert (await page(service, project_id="small"))["total_capped"] is False


async def test_the_cursor_pages_through_every_task_once_in_order(service: Service) -> None:
    ids = [str((await submit(service, description=f"task {i}"))["task_id"]) for i in range(7)]
    await submit(service, description="elsewhere", project_id="other")
    by_offset = [t["task_id"] for t in (await page(service, project_id="proj-1", limit=100))["items"]]
    assert sorted(by_offset) == sorted(ids)

    seen: list[str] = []
    params: dict[str, Any] = {"project_id": "proj-1", "limit": 3}
    while True:
        p = await page(service, **params)
        seen += [t["task_id"] for t in p["items"]]
        assert p["total"] == 7
        if p["next_cursor"] is None:
            break
        params["cursor"] = p["next_cursor"]
    assert seen == by_offset, "newest first, each task once, the same order as offsets give"
    # A page that ends exactly at the last task says so.
    assert (await page(service, project_id="proj-1", limit=7))["next_cursor"] is None


async def test_bad_cursors_are_refused(service: Service) -> None:
    await submit(service)
    first = await page(service, limit=1)
    for params in ({"cursor": "bm90LWEtY3Vyc29y"}, {"cursor": first["next_cursor"] or "x", "offset": 5}):
        r = await service.client.get("/api/v1/tasks", params=params)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_provenance_and_taint_trail_totals_stop_at_the_cap(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bound on the provenance list and the taint trail, which counted every
    matching row on every page."""
    g = Graph()
    await g.add(service.container.storage, [Rec(f"r{i}") for i in range(4)])
    for i in range(3):
        r = await service.client.post(f"/api/v1/provenance/{g.id(f'r{i}')}/taint", json={"reason": "bad"})
        assert r.status_code == 200, r.text
    exact = (await service.client.get("/api/v1/provenance", params={"limit": 1})).json()
    assert (exact["total"], exact["total_capped"]) == (4, False)
    trail = (await service.client.get("/api/v1/provenance/taint-events", params={"limit": 1})).json()
    assert (trail["total"], trail["total_capped"]) == (3, False)

    monkeypatch.setattr(provenance_queries, "LIST_TOTAL_CAP", 2)
    capped = (await service.client.get("/api/v1/provenance", params={"limit": 1})).json()
    assert (capped["total"], capped["total_capped"]) == (2, True)
    assert capped["next_cursor"]
    trail = (await service.client.get("/api/v1/provenance/taint-events", params={"limit": 1})).json()
    assert (trail["total"], trail["total_capped"]) == (2, True)
