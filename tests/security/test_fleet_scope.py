"""The fleet routes with API keys: a project-scoped key sees only what its projects' rows
tell (workers that worked on them, counted on them; its tasks in queues and failures; its
dead letters), never another project's; an all-projects key sees everything; replaying and
discarding need the admin scope."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from orchestration_service.domain.access import Scope
from tests.conftest import Service, make_settings, start_service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.security.test_ingress_scope import Tenant


@pytest.fixture
async def world(clean_db: str) -> AsyncIterator[tuple[Service, Tenant, Tenant, Tenant, Tenant]]:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    keys = svc.container.keys
    a_raw, _ = await keys.create(name="alpha-admin", scope=Scope.ADMIN, projects=["alpha"])
    b_raw, _ = await keys.create(name="beta-admin", scope=Scope.ADMIN, projects=["beta"])
    r_raw, _ = await keys.create(name="alpha-read", scope=Scope.READ, projects=["alpha"])
    root_raw, _ = await keys.create(name="root", scope=Scope.ADMIN, projects=None)
    a, b = Tenant(svc, "alpha", a_raw), Tenant(svc, "beta", b_raw)
    reader, root = Tenant(svc, "alpha", r_raw), Tenant(svc, "alpha", root_raw)
    try:
        yield svc, a, b, reader, root
    finally:
        for t in (a, b, reader, root):
            await t.client.aclose()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def get(client: httpx.AsyncClient, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


async def test_a_scoped_key_sees_only_its_projects_fleet(
    world: tuple[Service, Tenant, Tenant, Tenant, Tenant],
) -> None:
    _svc, a, b, reader, root = world
    for tenant, worker, model in (
        (a, "w-alpha", "m-alpha"),
        (b, "w-beta", "m-beta"),
        (b, "w-shared", "m-beta"),
    ):
        tid = await tenant.running_task()
        r = await tenant.post_event(output_event(tid, worker_id=worker, model_used=model))
        assert r.status_code == 202, r.text
    shared = await a.running_task()
    assert (
        await a.post_event(output_event(shared, worker_id="w-shared", model_used="m-alpha"))
    ).status_code == 202
    beta_failed = await b.running_task()
    assert (
        await b.post_event(cloud_event("task.failed", {"task_id": beta_failed, "error": "beta secret"}))
    ).status_code == 202
    await b.wait_for(beta_failed, "failed")
    # Dead letters: one of beta's task (attributed to beta), one naming no known task.
    assert (
        await b.post_event(cloud_event("task.output.created", {"task_id": beta_failed}))
    ).status_code == 422
    assert (await b.post_event(output_event(str(uuid.uuid4()), worker_id="w-beta"))).status_code == 422

    for tenant in (a, reader):
        workers = await get(tenant.client, "/api/v1/workers")
        assert {w["worker_id"] for w in workers["items"]} == {"w-alpha", "w-shared"}
        w_shared = next(w for w in workers["items"] if w["worker_id"] == "w-shared")
        assert w_shared["models"] == ["m-alpha"] and w_shared["in_flight"] == 1
        queues = await get(tenant.client, "/api/v1/queues")
        assert sum(q["running"] + q["validating"] + q["pending"] for q in queues["items"]) == 2
        assert (await get(tenant.client, "/api/v1/failures"))["items"] == []
        assert (await get(tenant.client, "/api/v1/failures", project_id="beta"))["items"] == []
        assert (await get(tenant.client, "/api/v1/dead-letters"))["items"] == []
        assert (await get(tenant.client, "/api/v1/dead-letters", project_id="beta"))["items"] == []
        everything = orjson.dumps([workers, queues]).decode()
        assert "beta" not in everything and "w-beta" not in everything

    beta_letters = (await get(b.client, "/api/v1/dead-letters"))["items"]
    assert [x["project_id"] for x in beta_letters] == ["beta"]  # the unattributed one is root's only
    all_letters = (await get(root.client, "/api/v1/dead-letters"))["items"]
    assert sorted(str(x["project_id"]) for x in all_letters) == ["None", "beta"]
    assert {w["worker_id"] for w in (await get(root.client, "/api/v1/workers"))["items"]} == {
        "w-alpha",
        "w-beta",
        "w-shared",
    }
    assert [f["task_id"] for f in (await get(root.client, "/api/v1/failures"))["items"]] == [beta_failed]

    letter = beta_letters[0]["id"]
    # Another project's admin: as if it did not exist. A read key: forbidden.
    assert (await a.client.get(f"/api/v1/dead-letters/{letter}")).status_code == 404
    assert (await a.client.post(f"/api/v1/dead-letters/{letter}/replay")).status_code == 404
    assert (await a.client.delete(f"/api/v1/dead-letters/{letter}")).status_code == 404
    assert (await reader.client.post(f"/api/v1/dead-letters/{letter}/replay")).status_code == 403
    assert (await reader.client.delete(f"/api/v1/dead-letters/{letter}")).status_code == 403
    unattributed = next(x["id"] for x in all_letters if x["project_id"] is None)
    assert (await b.client.post(f"/api/v1/dead-letters/{unattributed}/replay")).status_code == 404
    # Its own project's admin may replay it (still poison: its data lacks artifacts).
    r = await b.client.post(f"/api/v1/dead-letters/{letter}/replay")
    assert r.status_code == 200 and r.json()["outcome"] == "dead_lettered", r.text
    assert (await b.client.delete(f"/api/v1/dead-letters/{letter}")).status_code == 200
    # Without a key: 401 on every fleet route.
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=_svc.app), base_url="http://testserver")
    async with anonymous:
        for path in ("/api/v1/workers", "/api/v1/queues", "/api/v1/failures", "/api/v1/dead-letters"):
            assert (await anonymous.get(path)).status_code == 401
