"""The task REST API on both backends: submit, read, list, cancel, history, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.conftest import Service

PROBLEM = "application/problem+json"


async def submit(svc: Service, **body: Any) -> dict[str, Any]:
    payload = {"description": "Write a fibonacci function", "project_id": "proj-1", **body}
    r = await svc.client.post("/api/v1/tasks", json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def wait_for_status(svc: Service, task_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        doc = (await svc.client.get(f"/api/v1/tasks/{task_id}")).json()
        if doc["status"] == status:
            return dict(doc)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} is {doc['status']}, expected {status}")
        await asyncio.sleep(0.02)


async def test_submit_returns_the_seed_shape(service: Service) -> None:
    r = await service.client.post(
        "/api/v1/tasks",
        json={
            "description": "Create a Python function that calculates fibonacci numbers",
            "project_id": "proj-123",
            "priority": "normal",
            "options": {"decompose": True, "qa_profile": "consensus"},
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"task_id", "project_id", "status", "created_at", "estimated_completion"}
    assert body["project_id"] == "proj-123"
    assert body["status"] == "pending"
    assert body["estimated_completion"] > body["created_at"]
    assert r.headers["location"] == f"/api/v1/tasks/{body['task_id']}"


async def test_submitted_task_is_routed_and_dispatched(service: Service) -> None:
    task = await submit(service, description="Fix the crash in the login form parser")
    doc = await wait_for_status(service, task["task_id"], "running")
    assert doc["mode"] == "fix_bug"
    assert doc["domain"] == "code-general"
    assert doc["attempt"] == 1
    assert doc["routing"]["analyzer"] == "builtin"
    assert doc["started_at"] is not None


async def test_get_unknown_task_is_404_problem(service: Service) -> None:
    for tid in (str(uuid.uuid4()), "not-a-uuid"):
        r = await service.client.get(f"/api/v1/tasks/{tid}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert body["type"].endswith(":not-found")
        assert body["status"] == 404
        assert set(body) >= {"type", "title", "status", "detail"}


async def test_cancel_then_cancel_again_is_409(service: Service) -> None:
    task = await submit(service)
    r = await service.client.post(
        f"/api/v1/tasks/{task['task_id']}/cancel", json={"reason": "changed my mind"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    again = await service.client.post(f"/api/v1/tasks/{task['task_id']}/cancel")
    assert again.status_code == 409
    assert again.json()["type"].endswith(":invalid-transition")
    history = (await service.client.get(f"/api/v1/tasks/{task['task_id']}/history")).json()["items"]
    assert history[0]["from"] is None and history[0]["to"] == "pending"
    assert history[-1]["to"] == "cancelled"
    assert history[-1]["reason"] == "changed my mind"


async def test_list_filters_and_paginates_newest_first(service: Service) -> None:
    ids = [(await submit(service, project_id="p-list", priority="high"))["task_id"] for _ in range(5)]
    await submit(service, project_id="p-other")
    page = (await service.client.get("/api/v1/tasks", params={"project_id": "p-list", "limit": 2})).json()
    assert page["total"] == 5
    assert [t["task_id"] for t in page["items"]] == list(reversed(ids))[:2]
    page2 = (
        await service.client.get("/api/v1/tasks", params={"project_id": "p-list", "limit": 2, "offset": 2})
    ).json()
    assert [t["task_id"] for t in page2["items"]] == list(reversed(ids))[2:4]
    await service.client.post(f"/api/v1/tasks/{ids[0]}/cancel")
    cancelled = (
        await service.client.get("/api/v1/tasks", params=[("status", "cancelled"), ("project_id", "p-list")])
    ).json()
    assert [t["task_id"] for t in cancelled["items"]] == [ids[0]]
    by_priority = (await service.client.get("/api/v1/tasks", params={"priority": "high"})).json()
    assert by_priority["total"] == 5


async def test_idempotency_key_returns_the_same_task(service: Service) -> None:
    body = {"description": "Document the API", "project_id": "proj-idem"}
    headers = {"Idempotency-Key": "abc-123"}
    first = await service.client.post("/api/v1/tasks", json=body, headers=headers)
    second = await service.client.post("/api/v1/tasks", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["task_id"] == second.json()["task_id"]
    assert second.headers.get("idempotency-replayed") == "true"
    conflict = await service.client.post(
        "/api/v1/tasks", json={**body, "description": "something else"}, headers=headers
    )
    assert conflict.status_code == 409
    assert conflict.json()["type"].endswith(":idempotency-key-reused")
    listing = (await service.client.get("/api/v1/tasks", params={"project_id": "proj-idem"})).json()
    assert listing["total"] == 1


async def test_idempotency_key_race_makes_one_task(service: Service) -> None:
    body = {"description": "Race me", "project_id": "proj-race"}
    results = await asyncio.gather(
        *[service.client.post("/api/v1/tasks", json=body, headers={"Idempotency-Key": "k"}) for _ in range(8)]
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["task_id"] for r in results}) == 1
    listing = (await service.client.get("/api/v1/tasks", params={"project_id": "proj-race"})).json()
    assert listing["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project_id": "p"}, "description"),
        ({"description": "", "project_id": "p"}, "description"),
        ({"description": "x" * 65_537, "project_id": "p"}, "description"),
        ({"description": "x", "project_id": "bad id!"}, "project_id"),
        ({"description": "x", "project_id": "p" * 256}, "project_id"),
        ({"description": "x", "project_id": "p", "priority": "urgent"}, "priority"),
        ({"description": "x", "project_id": "p", "surprise": 1}, "surprise"),
        ({"description": "x", "project_id": "p", "options": {"tier": "huge"}}, "options.tier"),
        ({"description": "x", "project_id": "p", "options": {"domain": "cooking"}}, "options.domain"),
    ],
)
async def test_bad_submissions_are_422_and_store_nothing(
    service: Service, body: dict[str, Any], field: str
) -> None:
    r = await service.client.post("/api/v1/tasks", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"].endswith(":validation-error")
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert (await service.client.get("/api/v1/tasks")).json()["total"] == 0


async def test_malformed_json_is_400(service: Service) -> None:
    r = await service.client.post(
        "/api/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["type"].endswith(":bad-request")


async def test_body_over_the_limit_is_413(service: Service) -> None:
    big = b'{"description": "' + b"x" * (1_048_576 + 10) + b'", "project_id": "p"}'
    r = await service.client.post("/api/v1/tasks", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["type"].endswith(":payload-too-large")
    assert (await service.client.get("/api/v1/tasks")).json()["total"] == 0


async def test_project_status_counts_and_limits(service: Service) -> None:
    for _ in range(3):
        await submit(service, project_id="proj-s")
    status = (await service.client.get("/api/v1/projects/proj-s/status")).json()
    assert status["total"] == 3
    assert status["max_concurrent"] == 10
    assert sum(status["counts"].values()) == 3
    projects = (await service.client.get("/api/v1/projects")).json()["items"]
    assert [p["project_id"] for p in projects] == ["proj-s"]
    missing = await service.client.get("/api/v1/projects/nope/status")
    assert missing.status_code == 404


async def test_health_detailed_reports_dependencies(service: Service) -> None:
    r = await service.client.get("/api/v1/health/detailed")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["dependencies"]["database"] == "connected"
    assert body["dependencies"]["broker"] == "connected"
    assert body["dependencies"]["agent_service"] == "unconfigured"
    assert (await service.client.get("/api/v1/health")).json()["status"] == "healthy"


async def test_provenance_unknown_is_404(service: Service) -> None:
    assert (await service.client.get(f"/api/v1/provenance/{uuid.uuid4()}")).status_code == 404
    page = (await service.client.get("/api/v1/provenance")).json()
    assert (page["items"], page["total"], page["limit"], page["offset"]) == ([], 0, 50, 0)
