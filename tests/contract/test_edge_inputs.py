"""Inputs that used to reach the database (and fail there, 500) or be read too leniently, on
both backends: each is now a documented 4xx problem (or accepted, where it is valid)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.conftest import Service

PROBLEM = "application/problem+json"
CE = {"content-type": "application/cloudevents+json"}
TASK = {"description": "Write a fibonacci function", "project_id": "proj-edge"}
UNKNOWN = str(uuid.uuid4())


def event(event_id: str = "ev-1", **data: Any) -> str:
    envelope = {"specversion": "1.0", "type": "dats.task.output.created", "source": "/edge", "id": event_id}
    return json.dumps({**envelope, "data": {"task_id": UNKNOWN, "worker_id": "w", **data}})


# (method, url, request keyword arguments, expected status)
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # NUL characters: PostgreSQL refuses them in text (and JSONB)
    ("POST", "/api/v1/tasks", {"json": {**TASK, "description": "a\x00b"}}, 422),
    ("POST", "/api/v1/tasks", {"json": TASK, "headers": {"Idempotency-Key": "k\x00"}}, 422),
    ("GET", "/api/v1/tasks?project_id=a%00b", {}, 422),
    ("GET", "/api/v1/projects/a%00b/status", {}, 422),
    ("GET", "/api/v1/provenance?project_id=a%00b", {}, 422),
    ("GET", "/api/v1/provenance?task_id=a%00b", {}, 422),
    ("POST", f"/api/v1/tasks/{UNKNOWN}/cancel", {"json": {"reason": "x\x00"}}, 422),
    ("POST", "/api/v1/events", {"content": event(worker_id="w\x00"), "headers": CE}, 422),
    ("POST", "/api/v1/events", {"content": event(output={"k": "\x00"}), "headers": CE}, 422),
    # A lone surrogate is valid JSON text but no database encoding takes it
    ("POST", "/api/v1/tasks", {"content": '{"description": "\\ud800", "project_id": "p"}'}, 422),
    # Date-times: only RFC 3339, and only what stays in range once converted to UTC
    ("GET", "/api/v1/tasks?created_after=0001-01-01T00:00:00%2B01:00", {}, 422),
    ("GET", "/api/v1/tasks?created_before=9999-12-31T23:59:59-01:00", {}, 422),
    ("GET", "/api/v1/tasks?created_after=0.5", {}, 422),
    ("GET", "/api/v1/tasks?created_after=2026-11-24", {}, 422),
    ("GET", "/api/v1/tasks?created_after=2026-11-24T08:37:50Z", {}, 200),
    ("GET", "/api/v1/tasks?created_after=2026-11-24T08:37:50", {}, 200),
    ("GET", "/api/v1/tasks?created_before=2026-11-24T08:37:50.5%2B05:30", {}, 200),
    # JSON's true/false and integers only, as documented
    ("POST", "/api/v1/tasks", {"json": {**TASK, "options": {"decompose": 0}}}, 422),
    ("POST", "/api/v1/tasks", {"json": {**TASK, "options": {"timeout_seconds": "60"}}}, 422),
    ("POST", "/api/v1/tasks", {"json": {**TASK, "options": {"max_attempts": True}}}, 422),
    # Odd ids are unknown ids
    ("GET", "/api/v1/tasks/%D9%A1%D9%A2%D9%A3", {}, 404),
    ("GET", "/api/v1/projects/%F0%9F%A6%80-proj/status", {}, 404),
    # Deep offsets are bounded (a cursor pages further): the trust-boundary issue, defect 12
    ("GET", "/api/v1/tasks?offset=10000", {}, 200),
    ("GET", "/api/v1/tasks?offset=10000000", {}, 422),
]


async def test_edge_inputs_are_answered_as_documented(service: Service) -> None:
    wrong = []
    for method, url, kwargs, expected in CASES:
        r = await service.client.request(method, url, **kwargs)
        if r.status_code != expected:
            wrong.append(f"{method} {url} {kwargs}: {r.status_code} {r.text[:200]}")
        elif expected >= 400 and not r.headers["content-type"].startswith(PROBLEM):
            wrong.append(f"{method} {url}: {r.headers['content-type']}")
    assert not wrong, "\n".join(wrong)
    # Nothing of the refused submissions was stored.
    assert (await service.client.get("/api/v1/tasks")).json()["total"] == 0


async def test_a_nul_in_a_batch_is_refused_for_that_event_only(service: Service) -> None:
    batch = "[" + event("ev-1", worker_id="w\x00") + ", " + event("ev-2") + "]"
    r = await service.client.post(
        "/api/v1/events", content=batch, headers={"content-type": "application/cloudevents-batch+json"}
    )
    assert r.status_code == 200, r.text
    statuses = [item["status"] for item in r.json()["results"]]
    assert statuses == [422, 422], r.json()  # the second: a valid event about an unknown task
    assert r.json()["results"][0]["field"] == "data.worker_id"
