"""Projects as objects, on SQLite and PostgreSQL: create, read, change, archive; their
settings effective on the submit and dispatch paths."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Service, make_settings, start_service
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually


async def create(svc: Service, project_id: str = "alpha", **body: Any) -> dict[str, Any]:
    r = await svc.client.post("/api/v1/projects", json={"project_id": project_id, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def statuses(svc: Service, project_id: str) -> dict[str, int]:
    doc = (await svc.client.get(f"/api/v1/projects/{project_id}")).json()
    return dict(doc["status"]["counts"])


async def test_create_get_and_409_when_it_exists(service: Service) -> None:
    doc = await create(
        service,
        name="Alpha",
        description="the first",
        settings={"max_concurrent": 2, "default_priority": "high"},
    )
    assert doc["project_id"] == "alpha" and doc["name"] == "Alpha" and doc["archived_at"] is None
    assert doc["settings"]["max_concurrent"] == 2 and doc["settings"]["timeout_default_seconds"] is None
    eff = doc["effective_settings"]
    assert eff["max_concurrent"] == {"value": 2, "source": "project"}
    assert eff["default_priority"] == {"value": "high", "source": "project"}
    assert eff["timeout_default_seconds"] == {"value": 600, "source": "configuration"}
    assert eff["default_qa_profile"] == {"value": None, "source": "routing"}
    assert doc["constitution"] is None and doc["status"]["total"] == 0
    again = await service.client.post("/api/v1/projects", json={"project_id": "alpha"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["type"].endswith(":project-exists")
    got = (await service.client.get("/api/v1/projects/alpha")).json()
    assert got["settings"] == doc["settings"] and got["name"] == "Alpha"
    missing = await service.client.get("/api/v1/projects/nope")
    assert missing.status_code == 404 and missing.json()["type"].endswith(":not-found")
    bad = await service.client.post(
        "/api/v1/projects", json={"project_id": "b", "settings": {"max_concurrent": 0}}
    )
    assert bad.status_code == 422


async def test_project_settings_apply_to_submissions(service: Service) -> None:
    await create(
        service,
        settings={
            "default_priority": "critical",
            "default_qa_profile": "security",
            "timeout_default_seconds": 77,
            "max_attempts_default": 5,
        },
    )
    task = await submit(service, project_id="alpha")
    doc = (await service.client.get(f"/api/v1/tasks/{task['task_id']}")).json()
    assert doc["priority"] == "critical" and doc["max_attempts"] == 5 and doc["timeout_seconds"] == 77
    assert doc["qa_profile"] == "security"
    # The submission's own values win over the project's.
    own = await submit(service, project_id="alpha", priority="low", options={"timeout_seconds": 9})
    doc = (await service.client.get(f"/api/v1/tasks/{own['task_id']}")).json()
    assert doc["priority"] == "low" and doc["timeout_seconds"] == 9
    # A PATCH is seen by the next submission on this process (its cache entry is dropped).
    r = await service.client.patch(
        "/api/v1/projects/alpha", json={"settings": {"timeout_default_seconds": None}}
    )
    assert r.status_code == 200
    assert r.json()["effective_settings"]["timeout_default_seconds"]["source"] == "configuration"
    later = await submit(service, project_id="alpha")
    doc = (await service.client.get(f"/api/v1/tasks/{later['task_id']}")).json()
    assert doc["timeout_seconds"] == 600 and doc["priority"] == "critical"


async def test_submitting_to_an_unknown_project_creates_it(service: Service) -> None:
    await submit(service, project_id="fresh")
    doc = (await service.client.get("/api/v1/projects/fresh")).json()
    assert doc["project_id"] == "fresh" and doc["status"]["total"] == 1
    assert doc["effective_settings"]["max_concurrent"]["source"] == "configuration"
    listed = (await service.client.get("/api/v1/projects")).json()["items"]
    assert [p["project_id"] for p in listed] == ["fresh"]


async def _service_with(clean_db: str, **sections: dict[str, Any]) -> AsyncIterator[Service]:
    svc, lifespan = await start_service(make_settings(clean_db, **sections))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def strict_service(clean_db: str) -> AsyncIterator[Service]:
    async for svc in _service_with(clean_db, projects={"auto_create": False}):
        yield svc


@pytest.fixture
async def slow_sweep(clean_db: str) -> AsyncIterator[Service]:
    """The sweep (the dispatcher's safety net) every minute: what starts, starts because the
    dispatcher was woken."""
    async for svc in _service_with(clean_db, task_management={"sweep_interval_seconds": 60}):
        yield svc


async def test_with_auto_create_off_an_unknown_project_is_404(strict_service: Service) -> None:
    r = await strict_service.client.post("/api/v1/tasks", json={"description": "x", "project_id": "ghost"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await strict_service.client.get("/api/v1/tasks")).json()["total"] == 0
    assert (await strict_service.client.get("/api/v1/projects/ghost")).status_code == 404
    await create(strict_service, "ghost")
    await submit(strict_service, project_id="ghost")


async def test_archive_rules(service: Service) -> None:
    h = Harness(service)
    await create(service)
    tid = await h.running_task(project_id="alpha")
    busy = await service.client.delete("/api/v1/projects/alpha")
    assert busy.status_code == 409 and busy.json()["type"].endswith(":project-busy")
    await h.send(output_event(tid))
    await h.send(
        cloud_event("task.validated", {"task_id": tid, "confidence": 0.9}, source="/qa-service"),
        "task.validated",
        "qa.events",
    )
    await wait_for_status(service, tid, "completed")
    r = await service.client.delete("/api/v1/projects/alpha")
    assert r.status_code == 200 and r.json()["archived_at"] is not None
    refused = await service.client.post("/api/v1/tasks", json={"description": "x", "project_id": "alpha"})
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith(":project-archived")
    assert (await service.client.get("/api/v1/projects")).json()["items"] == []
    listed = (await service.client.get("/api/v1/projects", params={"include_archived": "true"})).json()
    assert [(p["project_id"], p["archived"]) for p in listed["items"]] == [("alpha", True)]
    # Still readable, with its history.
    assert (await service.client.get("/api/v1/projects/alpha")).json()["status"]["total"] == 1


async def test_raising_the_limit_dispatches_at_once_and_lowering_lets_work_finish(
    slow_sweep: Service,
) -> None:
    service = slow_sweep
    h = Harness(service)
    await create(service, settings={"max_concurrent": 1})
    ids = [(await submit(service, project_id="alpha"))["task_id"] for _ in range(4)]
    await eventually(lambda: _counts_are(service, "alpha", running=1, pending=3), what="1 running")
    r = await service.client.patch("/api/v1/projects/alpha", json={"settings": {"max_concurrent": 3}})
    assert r.status_code == 200 and r.json()["effective_settings"]["max_concurrent"]["value"] == 3
    # The PATCH wakes the dispatcher: no wait for the sweep.
    await eventually(lambda: _counts_are(service, "alpha", running=3, pending=1), timeout=3, what="3 running")
    r = await service.client.patch("/api/v1/projects/alpha", json={"settings": {"max_concurrent": 1}})
    assert r.status_code == 200
    running = [
        t for t in ids if (await service.client.get(f"/api/v1/tasks/{t}")).json()["status"] == "running"
    ]
    assert len(running) == 3  # in-flight work is not stopped
    # Finishing two of three leaves one in flight: still at the limit, nothing new starts.
    for tid in running[:2]:
        await h.send(
            cloud_event("task.failed", {"task_id": tid, "error": "x", "retryable": False}), "task.failed"
        )
        await wait_for_status(service, tid, "failed")
    await service.container.sweeper.tick()
    assert await _counts_are(service, "alpha", running=1, pending=1)
    await h.send(
        cloud_event("task.failed", {"task_id": running[2], "error": "x", "retryable": False}), "task.failed"
    )
    await eventually(lambda: _counts_are(service, "alpha", running=1, pending=0), what="the last one started")


async def _counts_are(svc: Service, project_id: str, **expected: int) -> bool:
    counts = await statuses(svc, project_id)
    return all(counts[k] == v for k, v in expected.items())


async def test_constitution_versions_are_kept_and_read_by_number(service: Service) -> None:
    doc = await create(service, constitution="# Rules\n\nUse type hints.")
    first = doc["constitution"]
    assert first["version"] == 1
    assert first["sha256"] == hashlib.sha256(b"# Rules\n\nUse type hints.").hexdigest()
    r = await service.client.patch("/api/v1/projects/alpha", json={"constitution": "# Rules v2"})
    assert r.json()["constitution"]["version"] == 2
    current = (await service.client.get("/api/v1/projects/alpha/constitution")).json()
    assert current["version"] == 2 and current["text"] == "# Rules v2"
    old = (await service.client.get("/api/v1/projects/alpha/constitution", params={"version": 1})).json()
    assert old["text"] == "# Rules\n\nUse type hints." and old["sha256"] == first["sha256"]
    assert (
        await service.client.get("/api/v1/projects/alpha/constitution", params={"version": 3})
    ).status_code == 404
    # 64 KiB of UTF-8 at most: 30,000 three-byte characters are 90,000 bytes.
    big = await service.client.patch("/api/v1/projects/alpha", json={"constitution": "€" * 30_000})
    assert big.status_code == 422 and big.headers["content-type"].startswith("application/problem+json")
    assert (await service.client.get("/api/v1/projects/alpha")).json()["constitution"]["version"] == 2
    await create(service, "bare")
    assert (await service.client.get("/api/v1/projects/bare/constitution")).status_code == 404


async def test_the_constitution_reaches_the_worker_and_the_override_reaches_provenance(
    service: Service,
) -> None:
    h = Harness(service)
    await create(service, constitution="# House rules")
    tid = await h.running_task(project_id="alpha")
    ready = (await h.published("task.ready.tiny", tid))[0]["data"]
    sha = hashlib.sha256(b"# House rules").hexdigest()
    assert ready["constitution"] == {
        "source": "project",
        "version": 1,
        "sha256": sha,
        "text": "# House rules",
    }
    own = await h.running_task(project_id="alpha", options={"constitution_override": "# Just this once"})
    ready = (await h.published("task.ready.tiny", own))[0]["data"]
    assert (
        ready["constitution"]["source"] == "override" and ready["constitution"]["text"] == "# Just this once"
    )
    assert ready["constitution"]["version"] is None
    for task_id in (tid, own):
        await h.send(output_event(task_id, art=f"art-{task_id}"))
        await h.send(
            cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}, source="/qa-service"),
            "task.validated",
            "qa.events",
        )
    records = {}
    for task_id in (tid, own):
        doc = await wait_for_status(service, task_id, "completed")
        records[task_id] = (await service.client.get(f"/api/v1/provenance/{doc['provenance_id']}")).json()
    assert records[tid]["execution"]["constitution"] == {"source": "project", "version": 1, "sha256": sha}
    used = records[own]["execution"]["constitution"]
    assert used["source"] == "override" and used["text"] == "# Just this once"
    assert used["sha256"] == hashlib.sha256(b"# Just this once").hexdigest()
    # A project without a constitution: task.ready says so with null.
    plain = await h.running_task(project_id="plain")
    assert (await h.published("task.ready.tiny", plain))[0]["data"]["constitution"] is None


async def test_another_process_sees_a_change_within_the_cache_interval(clean_db: str) -> None:
    """Two apps on one database (two replicas): an archive on one is refused by the other
    once its cache interval has passed."""
    settings = make_settings(clean_db, projects={"cache_seconds": 0.2})
    one, one_life = await start_service(settings)
    two, two_life = await start_service(settings)
    try:
        await create(one)
        await submit(two, project_id="alpha")  # two caches the project
        tid = (await two.client.get("/api/v1/tasks")).json()["items"][0]["task_id"]
        await two.client.post(f"/api/v1/tasks/{tid}/cancel", json={})
        assert (await one.client.delete("/api/v1/projects/alpha")).status_code == 200

        async def refused() -> bool:
            r = await two.client.post("/api/v1/tasks", json={"description": "x", "project_id": "alpha"})
            return r.status_code == 409

        await eventually(refused, timeout=5, what="the other process refusing the archived project")
    finally:
        for svc, life in ((one, one_life), (two, two_life)):
            await svc.client.aclose()
            await life.__aexit__(None, None, None)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_on_postgresql_another_process_hears_a_change_at_once(clean_db: str) -> None:
    """Two apps on one PostgreSQL database whose caches would keep a project for five
    minutes: the change's announcement makes the other refuse an archived project and use a
    new default priority now, not at its next check."""
    settings = make_settings(clean_db, projects={"cache_seconds": 300})
    one, one_life = await start_service(settings)
    two, two_life = await start_service(settings)
    try:
        await create(one)
        await create(one, "beta")
        await submit(two, project_id="alpha")  # two caches both projects
        await submit(two, project_id="beta")
        assert two.container.projects.directory._cache.keys() >= {"alpha", "beta"}
        tid = (await two.client.get("/api/v1/tasks", params={"project_id": "alpha"})).json()["items"][0]
        await two.client.post(f"/api/v1/tasks/{tid['task_id']}/cancel", json={})
        assert (await one.client.delete("/api/v1/projects/alpha")).status_code == 200
        r = await one.client.patch("/api/v1/projects/beta", json={"settings": {"default_priority": "high"}})
        assert r.status_code == 200, r.text

        def forgotten() -> bool:
            return not (two.container.projects.directory._cache.keys() & {"alpha", "beta"})

        await eventually(forgotten, timeout=5, what="the other process forgetting both projects")
        r = await two.client.post("/api/v1/tasks", json={"description": "x", "project_id": "alpha"})
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await two.client.post("/api/v1/tasks", json={"description": "x", "project_id": "beta"})
        assert r.status_code == 201, r.text
        assert (await two.client.get(f"/api/v1/tasks/{r.json()['task_id']}")).json()["priority"] == "high"
    finally:
        for svc, life in ((one, one_life), (two, two_life)):
            await svc.client.aclose()
            await life.__aexit__(None, None, None)
