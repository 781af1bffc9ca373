"""Human review through HTTP only (the event ingress and the review routes), on SQLite and
PostgreSQL: the loop, scoping by API key, and bad input answered as problem+json."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from orchestration_service.domain.access import Scope
from tests.conftest import Service, make_settings, start_service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.integration.test_reviews import PROBLEM, review_completed, review_requested
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually

CE = {"content-type": "application/cloudevents+json"}


async def post_event(svc: Service, envelope: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return await svc.client.post(
        "/api/v1/events", content=orjson.dumps(envelope), headers={**CE, **(headers or {})}
    )


async def reaches(svc: Service, task_id: str, status: str, headers: dict[str, str] | None) -> None:
    async def now() -> bool:
        doc = (await svc.client.get(f"/api/v1/tasks/{task_id}", headers=headers or {})).json()
        return bool(doc["status"] == status)

    await eventually(now, what=f"task {task_id} {status}")


async def to_review(svc: Service, headers: dict[str, str] | None = None, **body: Any) -> tuple[str, str]:
    """A task sent to review through the ingress: (task id, review id)."""
    r = await svc.client.post(
        "/api/v1/tasks",
        json={"description": "Write a fibonacci function", "project_id": "proj-1", **body},
        headers=headers or {},
    )
    assert r.status_code == 201, r.text
    tid = r.json()["task_id"]
    await reaches(svc, tid, "running", headers)
    assert (await post_event(svc, output_event(tid), headers)).json()["outcome"] == "processed"
    got = await post_event(svc, review_requested(tid), headers)
    assert got.status_code == 202 and got.json()["outcome"] == "processed", got.text
    await reaches(svc, tid, "awaiting_review", headers)
    items = (await svc.client.get("/api/v1/reviews", params={"status": "open"}, headers=headers or {})).json()
    (rid,) = [i["review_id"] for i in items["items"] if i["task_id"] == tid]
    return tid, rid


async def test_the_review_loop_over_the_ingress_and_the_routes(service: Service) -> None:
    tid, rid = await to_review(service)
    # Another team's UI asks for changes through the ingress.
    r = await post_event(service, review_completed(tid, "changes_requested", feedback="add a docstring"))
    assert r.json()["outcome"] == "processed", r.text
    doc = await wait_for_status(service, tid, "running")
    assert doc["attempt"] == 2
    # A second decision of that review through the ingress: recorded, ignored.
    again = await post_event(service, review_completed(tid, "approved", review_id=rid))
    assert again.status_code == 202 and again.json()["outcome"] == "ignored"
    assert (await service.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "running"
    # The next attempt is reviewed and approved over HTTP.
    await post_event(service, output_event(tid, art="art-2"))
    await post_event(service, review_requested(tid, review_id="qa-rev-2"))
    await wait_for_status(service, tid, "awaiting_review")
    page = (await service.client.get("/api/v1/reviews", params={"status": "open"})).json()
    (second,) = [i["review_id"] for i in page["items"]]
    r = await service.client.post(f"/api/v1/reviews/{second}/approve", json={"comment": "good"})
    assert r.status_code == 200, r.text
    assert r.json()["reviewer"] == "anonymous" and r.json()["task"]["status"] == "completed"
    twice = await service.client.post(f"/api/v1/reviews/{second}/reject", json={"reason": "changed my mind"})
    assert twice.status_code == 409 and twice.headers["content-type"].startswith(PROBLEM)
    assert twice.json()["type"] == "urn:dats:orchestration:problem:review-already-decided"
    everything = (await service.client.get("/api/v1/reviews")).json()
    assert [i["review_id"] for i in everything["items"]] == [rid, second]
    assert everything["total"] == 2


async def test_review_requested_for_a_task_not_validating_is_ignored(service: Service) -> None:
    task = await submit(service)
    tid = task["task_id"]
    await wait_for_status(service, tid, "running")
    r = await post_event(service, review_requested(tid))
    assert r.status_code == 202 and r.json()["outcome"] == "ignored"
    assert (await service.client.get("/api/v1/reviews")).json()["items"] == []


async def test_paging_the_open_queue_with_a_cursor(service: Service) -> None:
    made = [await to_review(service) for _ in range(3)]
    first = (await service.client.get("/api/v1/reviews", params={"status": "open", "limit": 2})).json()
    assert first["total"] == 3 and first["next_cursor"]
    rest = (
        await service.client.get(
            "/api/v1/reviews", params={"status": "open", "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert rest["next_cursor"] is None
    assert [i["review_id"] for i in first["items"] + rest["items"]] == [rid for _t, rid in made]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/reject", {}, 422),
        ("post", "/reject", {"reason": ""}, 422),
        ("post", "/request-changes", {"feedback": None}, 422),
        ("post", "/approve", {"comment": "ok", "extra": 1}, 422),
        ("post", "/approve", {"comment": "a\u0000b"}, 422),
        ("get", "", None, 404),
    ],
)
async def test_bad_decisions_are_problems(
    service: Service, method: str, path: str, body: Any, status: int
) -> None:
    _tid, rid = await to_review(service)
    target = f"/api/v1/reviews/{rid}{path}" if status == 422 else "/api/v1/reviews/not-a-review"
    r = await service.client.request(method.upper(), target, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    if status == 422:
        assert r.json()["type"].endswith(":validation-error")
        # Nothing was decided.
        assert (await service.client.get(f"/api/v1/reviews/{rid}")).json()["status"] == "open"


async def test_bad_list_filters_and_bad_events_are_problems(service: Service) -> None:
    r = await service.client.get("/api/v1/reviews", params={"status": "pending"})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    missing = await service.client.post(
        "/api/v1/reviews/0196f1f0-0000-7000-8000-000000000000/approve", json={}
    )
    assert missing.status_code == 404 and missing.json()["type"].endswith(":not-found")
    poison = await post_event(service, cloud_event("review.requested", {"reason": "x"}, source="/qa-service"))
    assert poison.status_code == 422 and poison.headers["content-type"].startswith(PROBLEM)
    bad = await post_event(service, review_completed("t", "maybe"))
    assert bad.status_code == 422


# -- scoping by API key ----------------------------------------------------------------------
@pytest.fixture
async def secured(clean_db: str) -> AsyncIterator[Service]:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def key(svc: Service, name: str, scope: Scope, projects: list[str] | None) -> dict[str, str]:
    raw, _ = await svc.container.keys.create(name=name, scope=scope, projects=projects)
    return {"Authorization": f"Bearer {raw}"}


async def test_a_decision_needs_write_scope_in_the_tasks_project(secured: Service) -> None:
    admin = await key(secured, "qa-bridge", Scope.ADMIN, None)
    tid, rid = await to_review(secured, admin)
    outsider = await key(secured, "bob", Scope.ADMIN, ["proj-2"])
    reader = await key(secured, "rita", Scope.READ, ["proj-1"])
    writer = await key(secured, "alice", Scope.WRITE, ["proj-1"])
    c = secured.client

    # Another project's key sees nothing of it: the same answers as for a review that does not exist.
    listed = (await c.get("/api/v1/reviews", headers=outsider)).json()
    assert listed["items"] == [] and listed["total"] == 0
    assert (await c.get("/api/v1/reviews", params={"project_id": "proj-1"}, headers=outsider)).json()[
        "items"
    ] == []
    for r in (
        await c.get(f"/api/v1/reviews/{rid}", headers=outsider),
        await c.post(f"/api/v1/reviews/{rid}/approve", json={}, headers=outsider),
    ):
        assert r.status_code == 404 and r.json()["detail"] == f"review {rid} does not exist"
    # Reading is not deciding.
    assert (await c.get(f"/api/v1/reviews/{rid}", headers=reader)).status_code == 200
    denied = await c.post(f"/api/v1/reviews/{rid}/reject", json={"reason": "no"}, headers=reader)
    assert denied.status_code == 403 and denied.headers["content-type"].startswith(PROBLEM)
    assert (await c.get(f"/api/v1/reviews/{rid}", headers=reader)).json()["status"] == "open"
    # A write key of the project decides; the reviewer is the key's name.
    ok = await c.post(f"/api/v1/reviews/{rid}/approve", json={"comment": "fine"}, headers=writer)
    assert ok.status_code == 200, ok.text
    assert ok.json()["reviewer"] == "alice"
    done = await current(secured, tid, "completed", writer)
    record = (await c.get(f"/api/v1/provenance/{done['provenance_id']}", headers=writer)).json()
    assert record["verification"]["verified_by"] == "alice"


async def current(svc: Service, task_id: str, status: str, headers: dict[str, str]) -> Any:
    doc = (await svc.client.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
    assert doc["status"] == status, doc  # the decision's transaction moved the task: no wait
    return doc


async def test_two_decisions_at_once_one_wins(service: Service) -> None:
    tid, rid = await to_review(service)
    answers = await asyncio.gather(
        service.client.post(f"/api/v1/reviews/{rid}/approve", json={"comment": "yes"}),
        service.client.post(f"/api/v1/reviews/{rid}/reject", json={"reason": "no"}),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = next(a for a in answers if a.status_code == 200).json()
    final = (await service.client.get(f"/api/v1/tasks/{tid}")).json()["status"]
    assert final == {"approved": "completed", "rejected": "failed"}[winner["decision"]]
    history = (await service.client.get(f"/api/v1/tasks/{tid}/history")).json()["items"]
    assert [e["from"] for e in history].count("awaiting_review") == 1  # one decision moved it


async def test_a_worker_failure_during_review_closes_the_review(service: Service) -> None:
    tid, rid = await to_review(service)
    failed = cloud_event("task.failed", {"task_id": tid, "error": "worker lost the sandbox"})
    assert (await post_event(service, failed)).json()["outcome"] == "processed"
    assert (await service.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "failed"
    review = (await service.client.get(f"/api/v1/reviews/{rid}")).json()
    assert review["status"] == "closed" and review["decision"] is None
    late = await service.client.post(f"/api/v1/reviews/{rid}/approve", json={})
    assert late.status_code == 409 and "closed without a decision" in late.json()["detail"]
