"""Retry by hand, on SQLite and PostgreSQL through the in-process bus: a failed or cancelled
task runs again (past max_attempts too), a failed parent re-runs only its failed and
cancelled subtasks, other states answer 409, and another project's key sees nothing."""

# The fixtures shared with other modules are imported by name; pytest passes them as arguments.
# ruff: noqa: F811
from __future__ import annotations

from typing import Any

import pytest

from orchestration_service.domain.access import Scope
from orchestration_service.services.auth import ApiKeyService
from tests.conftest import make_settings, start_service
from tests.integration.fake_services import FakeService
from tests.integration.test_event_lifecycle import Harness, cloud_event, h, output_event  # noqa: F401
from tests.integration.test_routing import (  # noqa: F401  (the fake Agent Service fixtures)
    DIAMOND,
    PARENT,
    agent,
    agent_server,
    children,
    complete,
    planning_agent,
    serve,
)
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually


async def fail(h: Harness, task_id: str, error: str = "OOM") -> dict[str, Any]:
    await h.send(cloud_event("task.failed", {"task_id": task_id, "error": error}), "task.failed")
    return await wait_for_status(h.svc, task_id, "failed")


async def test_a_failed_task_runs_again_past_max_attempts(h: Harness) -> None:
    tid = await h.running_task(options={"max_attempts": 1})
    await fail(h, tid)
    r = await h.svc.client.post(f"/api/v1/tasks/{tid}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("pending", "running") and r.json()["error"] is None
    doc = await wait_for_status(h.svc, tid, "running")
    assert doc["attempt"] == 2 and doc["max_attempts"] == 1  # a person asked: the limit does not stop it
    # Workers hear of the new attempt as of any other; subscribers see it back in pending.
    readies = await h.published("task.ready.tiny", tid, where=lambda e: e["data"]["attempt"] == 2)
    assert readies[0]["data"]["attempt"] == 2
    back = await h.published("task.status.pending", tid, where=lambda e: e["data"]["from"] == "failed")
    assert back[0]["data"]["reason"] == "retry requested by anonymous"
    history = await h.history(tid)
    retry = next(e for e in history if e["from"] == "failed")
    assert retry["to"] == "pending" and retry["details"]["requested_by"] == "anonymous"
    assert retry["details"]["error"]["detail"] == "OOM"
    # The new attempt fails for good again: max_attempts is spent.
    await fail(h, tid, "again")
    assert (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()["attempt"] == 2


async def test_a_cancelled_task_runs_again_and_completes(h: Harness) -> None:
    tid = (await submit(h.svc))["task_id"]
    assert (await h.svc.client.post(f"/api/v1/tasks/{tid}/cancel")).status_code == 200
    assert (await h.svc.client.post(f"/api/v1/tasks/{tid}/retry")).status_code == 200
    await wait_for_status(h.svc, tid, "running")
    doc = await complete(h, tid, "art-retried")
    assert doc["provenance_id"] and doc["error"] is None


@pytest.mark.parametrize("state", ["pending", "running", "validating", "completed"])
async def test_retry_of_a_task_not_failed_or_cancelled_is_409(h: Harness, state: str) -> None:
    tid = (await submit(h.svc))["task_id"]
    if state != "pending":
        await wait_for_status(h.svc, tid, "running")
    if state in ("validating", "completed"):
        await h.send(output_event(tid))
        await wait_for_status(h.svc, tid, "validating")
    if state == "completed":
        await h.send(
            cloud_event("task.validated", {"task_id": tid}, source="/qa"), "task.validated", "qa.events"
        )
        await wait_for_status(h.svc, tid, "completed")
    r = await h.svc.client.post(f"/api/v1/tasks/{tid}/retry")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        r.json()["type"].endswith("invalid-transition") and "only a failed or cancelled" in r.json()["detail"]
    )
    # Nothing was written (a pending task may meanwhile have been dispatched, as usual).
    assert not any("retry" in e["reason"] for e in await h.history(tid))


async def test_retry_of_an_unknown_task_is_404(h: Harness) -> None:
    for tid in ("0190b7a0-0000-7000-8000-000000000000", "not-a-uuid"):
        r = await h.svc.client.post(f"/api/v1/tasks/{tid}/retry")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


async def test_retry_needs_write_scope_in_the_tasks_project(clean_db: str) -> None:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        keys: ApiKeyService = svc.container.keys
        admin, _ = await keys.create(name="root", scope=Scope.ADMIN, projects=None)
        mine, _ = await keys.create(name="alice", scope=Scope.WRITE, projects=["proj-1"])
        other, _ = await keys.create(name="bob", scope=Scope.WRITE, projects=["proj-2"])
        reader, _ = await keys.create(name="carol", scope=Scope.READ, projects=["proj-1"])
        h = Harness(svc)

        def auth(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        r = await svc.client.post(
            "/api/v1/tasks", json={"description": "x", "project_id": "proj-1"}, headers=auth(admin)
        )
        tid = r.json()["task_id"]
        await wait_for_status_as(h, tid, "running", auth(admin))
        await h.send(cloud_event("task.failed", {"task_id": tid, "error": "x"}), "task.failed")
        await wait_for_status_as(h, tid, "failed", auth(admin))
        assert (await svc.client.post(f"/api/v1/tasks/{tid}/retry", headers=auth(other))).status_code == 404
        assert (await svc.client.post(f"/api/v1/tasks/{tid}/retry", headers=auth(reader))).status_code == 403
        assert (await svc.client.post(f"/api/v1/tasks/{tid}/retry", headers=auth(mine))).status_code == 200
        history = (await svc.client.get(f"/api/v1/tasks/{tid}/history", headers=auth(mine))).json()["items"]
        assert next(e for e in history if e["from"] == "failed")["details"]["requested_by"] == "alice"
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def wait_for_status_as(h: Harness, tid: str, status: str, headers: dict[str, str]) -> None:
    async def reached() -> bool:
        doc = (await h.svc.client.get(f"/api/v1/tasks/{tid}", headers=headers)).json()
        return bool(doc["status"] == status)

    await eventually(reached)


async def test_retrying_a_failed_parent_reruns_only_its_failed_and_cancelled_subtasks(
    clean_db: str, agent: FakeService
) -> None:
    planning_agent(agent, DIAMOND)
    async with serve(clean_db, agent_service_url=agent.url, agent_timeout_seconds=2.0) as h:
        parent = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, parent, "decomposing")
        ids = {k: v["task_id"] for k, v in (await children(h, parent)).items()}
        a = await complete(h, ids["A"], "art-A")
        await wait_for_status(h.svc, ids["C"], "running")
        await fail(h, ids["B"])  # B fails: the parent fails, C (running) and D are cancelled
        await wait_for_status(h.svc, parent, "failed")
        for k in "CD":
            await wait_for_status(h.svc, ids[k], "cancelled")

        r = await h.svc.client.post(f"/api/v1/tasks/{parent}/retry")
        assert r.status_code == 200 and r.json()["status"] == "decomposing"
        # A's work is kept; B and C run again, D waits for them as the first time.
        for k in "BC":
            await wait_for_status(h.svc, ids[k], "running")
        assert (await h.svc.client.get(f"/api/v1/tasks/{ids['A']}")).json()["provenance_id"] == a[
            "provenance_id"
        ]
        assert (await h.svc.client.get(f"/api/v1/tasks/{ids['D']}")).json()["status"] == "pending"
        for k in "BC":
            await complete(h, ids[k], f"art-{k}")
        await complete(h, ids["D"], "art-D")
        done = await wait_for_status(h.svc, parent, "completed")
        assert sorted(x["id"] for x in done["artifacts"]) == ["art-A", "art-B", "art-C", "art-D"]
        # A ran once; the parent's history names who asked.
        a_history = await h.history(ids["A"])
        assert [e["to"] for e in a_history if e["from"] != e["to"]].count("running") == 1
        assert any(e["reason"] == "retry requested by anonymous" for e in await h.history(parent))
        assert any(e["from"] == "cancelled" and e["to"] == "pending" for e in await h.history(ids["D"]))
