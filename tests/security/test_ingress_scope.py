"""Defect 1 of the trust-boundary issue: the event ingress with a key for project A.

An event posted with a key may touch only that key's projects. One naming another project's
task, record, artifact or checkpoint answers exactly as one naming something that does not
exist (same status, same body but for the id), and changes nothing. Broker events stay
trusted (covered by the lifecycle tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from orchestration_service.domain.access import Scope
from tests.conftest import Service, make_settings, start_service
from tests.integration.test_event_lifecycle import cloud_event, output_event

CE = {"content-type": "application/cloudevents+json"}


class Tenant:
    def __init__(self, svc: Service, project: str, raw_key: str) -> None:
        self.project = project
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=svc.app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {raw_key}"},
        )

    async def post_event(self, envelope: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/api/v1/events", content=orjson.dumps(envelope), headers=CE)

    async def running_task(self) -> str:
        r = await self.client.post(
            "/api/v1/tasks", json={"description": "write it", "project_id": self.project}
        )
        assert r.status_code == 201, r.text
        task_id = str(r.json()["task_id"])
        await self.wait_for(task_id, "running")
        return task_id

    async def wait_for(self, task_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            doc: dict[str, Any] = (await self.client.get(f"/api/v1/tasks/{task_id}")).json()
            if doc.get("status") == status:
                return doc
            assert asyncio.get_running_loop().time() < deadline, f"{task_id} is {doc.get('status')}"
            await asyncio.sleep(0.02)  # poll interval of a wait with a deadline

    async def completed_task(self, artifact: str) -> dict[str, Any]:
        task_id = await self.running_task()
        assert (await self.post_event(output_event(task_id, art=artifact))).status_code == 202
        r = await self.post_event(cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}))
        assert r.status_code == 202, r.text
        return await self.wait_for(task_id, "completed")

    async def snapshot(self, task_id: str) -> tuple[Any, Any]:
        doc = (await self.client.get(f"/api/v1/tasks/{task_id}")).json()
        history = (await self.client.get(f"/api/v1/tasks/{task_id}/history")).json()
        return doc, history


@pytest.fixture
async def tenants(clean_db: str) -> AsyncIterator[tuple[Service, Tenant, Tenant]]:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    keys = svc.container.keys
    a_raw, _ = await keys.create(name="alpha-admin", scope=Scope.ADMIN, projects=["alpha"])
    b_raw, _ = await keys.create(name="beta-admin", scope=Scope.ADMIN, projects=["beta"])
    a, b = Tenant(svc, "alpha", a_raw), Tenant(svc, "beta", b_raw)
    try:
        yield svc, a, b
    finally:
        for t in (a, b):
            await t.client.aclose()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


def _same_answer(theirs: httpx.Response, unknown: httpx.Response, ids: tuple[str, str]) -> None:
    """The answer about another project's id equals the answer about an unknown id."""
    assert theirs.status_code == unknown.status_code
    assert theirs.headers["content-type"] == unknown.headers["content-type"]
    assert theirs.text.replace(ids[0], "ID") == unknown.text.replace(ids[1], "ID")


def _task_events(task_id: str) -> list[dict[str, Any]]:
    return [
        output_event(task_id),
        cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}),
        cloud_event("task.rejected", {"task_id": task_id, "reason": "no", "feedback": "again"}),
        cloud_event("task.failed", {"task_id": task_id, "error": "boom", "retryable": False}),
    ]


async def test_task_events_for_another_project_answer_as_unknown_and_change_nothing(
    tenants: tuple[Service, Tenant, Tenant],
) -> None:
    _, a, b = tenants
    theirs = await b.running_task()
    before = await b.snapshot(theirs)
    unknown = str(uuid.uuid4())
    for their_event, unknown_event in zip(_task_events(theirs), _task_events(unknown), strict=True):
        r_theirs = await a.post_event(their_event)
        r_unknown = await a.post_event(unknown_event)
        assert r_unknown.status_code == 422
        _same_answer(r_theirs, r_unknown, (theirs, unknown))
    assert await b.snapshot(theirs) == before
    # A's own task is still A's to drive.
    mine = await a.running_task()
    assert (await a.post_event(output_event(mine))).status_code == 202


async def test_a_duplicate_of_another_projects_event_tells_nothing(
    tenants: tuple[Service, Tenant, Tenant],
) -> None:
    """The duplicate check must not answer before the scope check (a 200 'duplicate' would
    confirm the id of B's event and that B's task exists)."""
    _, a, b = tenants
    theirs = await b.running_task()
    event = output_event(theirs)
    assert (await b.post_event(event)).status_code == 202
    replay = await a.post_event(event)
    unknown_event = {**output_event(str(uuid.uuid4())), "id": str(uuid.uuid4())}
    unknown = await a.post_event(unknown_event)
    assert replay.status_code == unknown.status_code == 422
    assert replay.json()["type"] == unknown.json()["type"]
    assert replay.json()["reason"] == "unknown-task"


async def test_rollbacks_of_another_projects_provenance_answer_as_unknown(
    tenants: tuple[Service, Tenant, Tenant],
) -> None:
    _, a, b = tenants
    done = await b.completed_task("art-beta")
    record = done["provenance_id"]
    r = await b.client.post("/api/v1/projects/beta/checkpoints", json={"description": "before"})
    assert r.status_code == 201, r.text
    checkpoint = r.json()["id"]
    unknown_record = str(uuid.uuid4())
    cases = [
        ({"provenance_id": record}, {"provenance_id": unknown_record}, (record, unknown_record)),
        ({"artifact_id": "art-beta"}, {"artifact_id": "art-nope"}, ("art-beta", "art-nope")),
        (
            {"project_id": "beta", "checkpoint_id": checkpoint},
            {"project_id": "beta", "checkpoint_id": "cp-nope"},
            (checkpoint, "cp-nope"),
        ),
    ]
    for theirs, unknown, ids in cases:
        r_theirs = await a.post_event(cloud_event("rollback.requested", {**theirs, "reason": "x"}))
        r_unknown = await a.post_event(cloud_event("rollback.requested", {**unknown, "reason": "x"}))
        assert r_unknown.status_code == 422, r_unknown.text
        _same_answer(r_theirs, r_unknown, ids)
    rec = (await b.client.get(f"/api/v1/provenance/{record}")).json()
    assert not rec["is_tainted"] and not rec["is_suspect"]
    assert (await b.client.get(f"/api/v1/tasks/{done['task_id']}")).json()["status"] == "completed"
    # B's own key may roll back B's record.
    r = await b.post_event(cloud_event("rollback.requested", {"provenance_id": record, "reason": "bad"}))
    assert r.status_code == 202, r.text
    assert (await b.client.get(f"/api/v1/provenance/{record}")).json()["is_tainted"]
