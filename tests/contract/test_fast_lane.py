"""The fast lane (middleware/fast_lane.py) answers exactly as the reference FastAPI routes do.

The same requests go to a service with the lane and to one without it, both on one
PostgreSQL database (each in its own project); the answers must agree in status, the
headers that matter, problem ``type`` and document. The lane must also really have answered the plain cases.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Service, make_settings, start_service, truncate_all

JSON = {"content-type": "application/json"}
CE = {"content-type": "application/cloudevents+json"}
PROGRESS = (
    b'{"specversion": "1.0", "type": "dats.task.progress", "source": "/worker", "id": "p-1",'
    b' "data": {"task_id": "{first}", "progress": 0.5, "worker_id": "w-1"}}'
)
BODY = b'{"description": "add a unit test", "project_id": "{project}"}'

# (method, path, body, headers): each is sent to both services, in order.
Request = tuple[str, str, bytes | None, dict[str, str]]
REQUESTS: list[Request] = [
    ("POST", "/api/v1/tasks", BODY, JSON),
    ("POST", "/api/v1/tasks", BODY, {**JSON, "Idempotency-Key": "k-1"}),
    ("POST", "/api/v1/tasks", BODY, {**JSON, "Idempotency-Key": "k-1"}),  # replay
    ("POST", "/api/v1/tasks", BODY.replace(b"add", b"fix"), {**JSON, "Idempotency-Key": "k-1"}),  # 409
    ("POST", "/api/v1/tasks", b'{"description": "x"}', JSON),  # missing project_id
    ("POST", "/api/v1/tasks", b'{"description": "x", "project_id": "{project}", "extra": 1}', JSON),
    (
        "POST",
        "/api/v1/tasks",
        b'{"description": "x", "project_id": "{project}", "options": {"tier": 1}}',
        JSON,
    ),
    ("POST", "/api/v1/tasks", b"{not json", JSON),
    ("POST", "/api/v1/tasks", b"[]", JSON),
    ("POST", "/api/v1/tasks", BODY, {"content-type": "text/plain"}),
    ("POST", "/api/v1/tasks", BODY, {**JSON, "Idempotency-Key": ""}),
    ("POST", "/api/v1/tasks", b'{"description": "a\\u0000b", "project_id": "{project}"}', JSON),
    ("GET", "/api/v1/tasks/{first}", None, {}),
    ("GET", f"/api/v1/tasks/{uuid.UUID(int=7)}", None, {}),  # unknown
    ("GET", "/api/v1/tasks/not-a-uuid-but-exactly-36-characters", None, {}),
    ("GET", "/api/v1/tasks/" + "0" * 36, None, {}),
    # Heartbeats: one task.progress in structured mode is the lane's; anything else is handed on.
    ("POST", "/api/v1/events", PROGRESS, CE),  # the task is not running: ignored (202)
    ("POST", "/api/v1/events", PROGRESS, {"content-type": "application/cloudevents+json; charset=utf-8"}),
    ("POST", "/api/v1/events", PROGRESS.replace(b'"progress": 0.5', b'"progress": 2'), CE),  # 422
    ("POST", "/api/v1/events", PROGRESS.replace(b"{first}", str(uuid.UUID(int=7)).encode()), CE),  # 422
    ("POST", "/api/v1/events", PROGRESS.replace(b"dats.task.progress", b"dats.task.unknown"), CE),
    ("POST", "/api/v1/events", b"{not json", CE),
    (
        "POST",
        "/api/v1/events",
        b"[" + PROGRESS + b"]",
        {"content-type": "application/cloudevents-batch+json"},
    ),
]
ANSWERED = 6  # the two plain submissions, the replay, the status read and two heartbeats

# Fields that differ between two runs by nature (ids, times, estimates).
VOLATILE = {
    "task_id",
    "project_id",
    "created_at",
    "updated_at",
    "estimated_completion",
    "started_at",
    "deadline_at",
}


@pytest.fixture
async def services(pg_url: str) -> AsyncIterator[tuple[Service, Service]]:
    # PostgreSQL, where the lane also uses its own statements (repositories/tasks_pg.py).
    await truncate_all(pg_url)
    lane, lane_life = await start_service(make_settings(pg_url, server={"fast_lane": True}))
    ref, ref_life = await start_service(make_settings(pg_url, server={"fast_lane": False}))
    for svc in (lane, ref):  # no dispatching: the documents read must not depend on timing
        await svc.container.dispatcher.stop()
        await svc.container.sweeper.stop()
    try:
        yield lane, ref
    finally:
        for svc, life in ((lane, lane_life), (ref, ref_life)):
            await svc.client.aclose()
            await life.__aexit__(None, None, None)


def shape(r: httpx.Response) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": r.status_code,
        "content-type": r.headers.get("content-type"),
        "replayed": r.headers.get("idempotency-replayed"),
        "location": (r.headers.get("location") or "").rsplit("/", 1)[0],
    }
    body = r.json()
    if isinstance(body, dict) and "type" in body and "status" in body:
        out["problem"] = (body["type"], body.get("field"), sorted(body))
    else:
        out["document"] = {k: (None if k in VOLATILE else v) for k, v in body.items()}
    return out


async def send(svc: Service, req: Request, first: str, project: str) -> httpx.Response:
    method, path, body, headers = req
    if body is not None:
        body = body.replace(b"{project}", project.encode()).replace(b"{first}", first.encode())
    return await svc.client.request(method, path.format(first=first), content=body, headers=headers)


async def test_the_lane_answers_as_the_reference_routes(services: tuple[Service, Service]) -> None:
    lane, ref = services
    firsts: dict[int, str] = {}
    for n, req in enumerate(REQUESTS):
        answers = []
        for i, svc in enumerate((lane, ref)):
            r = await send(svc, req, firsts.get(i, ""), f"lane-{i}")
            if n == 0:
                firsts[i] = r.json()["task_id"]
            answers.append(shape(r))
        assert answers[0] == answers[1], (req, answers)
    counts = lane.app.state.fast_lane
    assert counts.answered == ANSWERED, (counts.answered, counts.handed_on)
    assert counts.handed_on == len(REQUESTS) - ANSWERED
    assert not hasattr(ref.app.state, "fast_lane")
