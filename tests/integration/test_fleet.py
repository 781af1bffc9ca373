"""The fleet routes through the in-process bus and the HTTP ingress, on SQLite and
PostgreSQL: workers appearing and going stale, queues per tier, failures, and dead letters
stored, replayed once their cause is fixed, still poison, or discarded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from orchestration_service.domain.ids import uuid7
from tests.conftest import Service, make_settings, start_service
from tests.integration.repositories.tasks_data import task as task_row
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually

CE = {"content-type": "application/cloudevents+json"}


@pytest.fixture
async def fleet(clean_db: str) -> AsyncIterator[Harness]:
    # A worker is stale after 1 s here, so the test can watch it go stale.
    settings = make_settings(clean_db, fleet={"worker_stale_seconds": 1.0, "seen_interval_seconds": 0})
    svc, lifespan = await start_service(settings)
    try:
        yield Harness(svc)
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def workers(svc: Service) -> dict[str, dict[str, Any]]:
    r = await svc.client.get("/api/v1/workers")
    assert r.status_code == 200, r.text
    return {w["worker_id"]: w for w in r.json()["items"]}


async def test_workers_appear_with_their_counts_and_go_stale(fleet: Harness) -> None:
    h = fleet
    first = await h.running_task()
    await h.send(output_event(first))  # worker-7 through the broker door
    await wait_for_status(h.svc, first, "validating")
    seen = (await workers(h.svc))["worker-7"]
    assert (seen["in_flight"], seen["completed"], seen["tiers"], seen["models"]) == (
        1,
        0,
        ["tiny"],
        ["gemma3:12b"],
    )
    assert seen["stale"] is False
    await h.send(
        cloud_event("task.validated", {"task_id": first}, source="/qa"), "task.validated", "qa.events"
    )
    await wait_for_status(h.svc, first, "completed")

    second = await h.running_task()  # through the HTTP ingress, another worker, rejected by QA
    r = await h.svc.client.post(
        "/api/v1/events", content=orjson.dumps(output_event(second, worker_id="worker-9")), headers=CE
    )
    assert r.status_code == 202, r.text
    r = await h.svc.client.post(
        "/api/v1/events",
        content=orjson.dumps(cloud_event("task.rejected", {"task_id": second, "reason": "no tests"})),
        headers=CE,
    )
    assert r.status_code == 202, r.text
    third = await h.running_task()
    await h.send(
        cloud_event("task.failed", {"task_id": third, "worker_id": "worker-7", "error": "oom"}), "task.failed"
    )
    await wait_for_status(h.svc, third, "failed")

    got = await workers(h.svc)
    assert (got["worker-7"]["completed"], got["worker-7"]["failed"], got["worker-7"]["in_flight"]) == (
        1,
        1,
        0,
    )
    assert (got["worker-9"]["rejected"], got["worker-9"]["in_flight"]) == (1, 0)
    assert got["worker-7"]["first_seen"] <= got["worker-7"]["last_seen"]

    async def all_stale() -> bool:
        return all(w["stale"] for w in (await workers(h.svc)).values())

    await eventually(all_stale, timeout=10, what="both workers reported stale")
    # Seen again: no longer stale.
    fourth = await h.running_task()
    await h.send(output_event(fourth))
    await wait_for_status(h.svc, fourth, "validating")
    assert (await workers(h.svc))["worker-7"]["stale"] is False


async def test_queues_count_tasks_per_tier_and_say_the_broker_figures_do_not_apply(service: Service) -> None:
    h = Harness(service)
    running = await h.running_task()
    r = await service.client.get("/api/v1/queues")
    assert r.status_code == 200, r.text
    body = r.json()
    tiers = {q["tier"]: q for q in body["items"]}
    assert set(tiers) >= {"tiny", "small", "large", "frontier", "unrouted"}
    assert tiers["tiny"]["running"] == 1 and tiers["tiny"]["pending"] == 0
    assert tiers["tiny"]["broker"] is None
    assert body["broker"] == {"source": "not-applicable", "error": None}
    await h.send(output_event(running))
    await wait_for_status(service, running, "validating")
    tiers = {q["tier"]: q for q in (await service.client.get("/api/v1/queues")).json()["items"]}
    assert (tiers["tiny"]["running"], tiers["tiny"]["validating"]) == (0, 1)


async def test_queues_age_of_the_oldest_waiting_task(clean_db: str) -> None:
    # A project limited to one task in flight: the second waits, pending.
    settings = make_settings(clean_db, task_management={"max_concurrent_per_project": 1})
    svc, lifespan = await start_service(settings)
    try:
        h = Harness(svc)
        await h.running_task()
        await submit(svc)

        async def pending_tiny() -> dict[str, Any] | None:
            body = (await svc.client.get("/api/v1/queues")).json()
            tiny = next(q for q in body["items"] if q["tier"] == "tiny")
            return tiny if tiny["pending"] == 1 else None

        tiny = await eventually(pending_tiny, what="the second task routed and waiting")
        assert tiny["running"] == 1 and tiny["oldest_waiting_seconds"] >= 0
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_failures_are_listed_newest_first_and_filtered(service: Service) -> None:
    h = Harness(service)
    ids = []
    for project, error in (("alpha", "oom"), ("beta", "disk full")):
        tid = await h.running_task(project_id=project)
        await h.send(cloud_event("task.failed", {"task_id": tid, "error": error}), "task.failed")
        await wait_for_status(service, tid, "failed")
        ids.append(tid)
    rejected = await h.running_task(project_id="alpha", options={"max_attempts": 1})
    await h.send(output_event(rejected))
    await h.send(
        cloud_event("task.rejected", {"task_id": rejected, "reason": "wrong"}, source="/qa"),
        "task.rejected",
        "qa.events",
    )
    await wait_for_status(service, rejected, "failed")

    async def failures(**params: Any) -> list[str]:
        r = await service.client.get("/api/v1/failures", params=params)
        assert r.status_code == 200, r.text
        return [f["task_id"] for f in r.json()["items"]]

    assert await failures() == [rejected, ids[1], ids[0]]
    assert await failures(project_id="alpha") == [rejected, ids[0]]
    assert await failures(reason="rejected") == [rejected]
    assert await failures(tier="tiny", reason="worker failed") == [ids[1], ids[0]]
    assert await failures(tier="large") == []
    page = (await service.client.get("/api/v1/failures", params={"limit": 2})).json()
    assert page["total"] == 3 and page["next_cursor"]
    rest = (
        await service.client.get("/api/v1/failures", params={"limit": 2, "cursor": page["next_cursor"]})
    ).json()
    assert [f["task_id"] for f in rest["items"]] == [ids[0]]
    one = page["items"][0]
    assert one["reason"].startswith("rejected") and one["failed_at"]
    bad = await service.client.get("/api/v1/failures", params={"tier": "huge"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


async def dead_letters(svc: Service, **params: Any) -> list[dict[str, Any]]:
    r = await svc.client.get("/api/v1/dead-letters", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_dead_letter_is_replayed_once_its_task_exists(service: Service) -> None:
    h = Harness(service)
    task_id = uuid7()
    event = output_event(str(task_id))
    await h.send(event)  # its task does not exist (yet): dead-lettered
    (letter,) = await dead_letters(service)
    assert (letter["source"], letter["kind"], letter["event_id"]) == ("broker", "unknown-task", event["id"])
    assert letter["project_id"] is None and orjson.loads(letter["payload"]) == event
    assert len(h.bus.dead_letters) == 1  # the broker side dead-lettered it too

    # The cause is fixed: the task now exists (as if another replica had just created it).
    async with service.container.storage.transaction() as uow:
        await uow.tasks.insert_many(
            [task_row(id=task_id, project_id="late", status="running", attempt=1, tier="small")]
        )
    r = await service.client.post(f"/api/v1/dead-letters/{letter['id']}/replay")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "processed"
    await wait_for_status(service, str(task_id), "validating")
    assert await dead_letters(service) == []
    assert (await service.client.post(f"/api/v1/dead-letters/{letter['id']}/replay")).status_code == 404
    assert (await workers(service))["worker-7"]["in_flight"] == 1


async def test_a_still_poison_replay_stays_dead_lettered_and_a_discard_removes_it(service: Service) -> None:
    h = Harness(service)
    tid = await h.running_task()
    bad = cloud_event("task.output.created", {"task_id": tid})  # no artifacts: a schema failure
    r = await service.client.post("/api/v1/events", content=orjson.dumps(bad), headers=CE)
    assert r.status_code == 422
    (letter,) = await dead_letters(service)
    assert (letter["source"], letter["kind"], letter["project_id"]) == ("ingress", "schema", "proj-1")
    assert await dead_letters(service, source="broker") == []
    assert len(await dead_letters(service, project_id="proj-1")) == 1

    r = await service.client.post(f"/api/v1/dead-letters/{letter['id']}/replay")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "dead_lettered" and r.json()["kind"] == "schema"
    (again,) = await dead_letters(service)
    assert again["replays"] == 1 and again["last_replayed_at"] and again["id"] == letter["id"]
    assert (await service.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "running"

    assert (await service.client.delete(f"/api/v1/dead-letters/{letter['id']}")).status_code == 200
    assert await dead_letters(service) == []
    assert (await service.client.delete(f"/api/v1/dead-letters/{letter['id']}")).status_code == 404
    assert (await service.client.get(f"/api/v1/dead-letters/{uuid.uuid4()}")).status_code == 404
    assert (await service.client.get("/api/v1/dead-letters/not-an-id")).status_code == 404


async def test_a_large_dead_letter_is_cut_and_cannot_be_replayed(clean_db: str) -> None:
    settings = make_settings(clean_db, fleet={"dead_letter_max_payload_bytes": 1024})
    svc, lifespan = await start_service(settings)
    try:
        h = Harness(svc)
        await h.send(output_event(str(uuid7()), note="é" * 2000))
        (letter,) = await dead_letters(svc)
        assert letter["payload_truncated"] is True and len(letter["payload"].encode()) <= 1024
        r = await svc.client.post(f"/api/v1/dead-letters/{letter['id']}/replay")
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
        await h.send(b"\x00not json")
        assert (await dead_letters(svc))[0]["kind"] == "malformed"
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_a_workers_row_is_written_at_most_once_per_interval_per_process(service: Service) -> None:
    from datetime import timedelta

    from orchestration_service.services.fleet import FleetService
    from tests.integration.repositories.tasks_data import T0

    storage = service.container.storage
    t = task_row(status="running", attempt=1, tier="small")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([t])
    for interval, worker in ((60.0, "debounced"), (0.0, "every-time")):
        fleet = FleetService(
            storage, make_settings(clean_url(service), fleet={"seen_interval_seconds": interval})
        )
        for seconds in (0, 10):
            async with storage.transaction() as uow:
                await fleet.worker_seen(uow, t, worker, at=T0 + timedelta(seconds=seconds))
    async with storage.read() as uow:
        page = await uow.workers.page(None, limit=10)
    seen = {w.worker_id: w.last_seen for w in page.rows}
    # The attempt's row always moves (it is the last writer here: every-time).
    assert seen == {"debounced": T0, "every-time": T0 + timedelta(seconds=10)}


def clean_url(service: Service) -> str:
    return service.container.settings.storage.database_url


async def test_a_worker_seen_only_through_progress_is_listed(fleet: Harness) -> None:
    h = fleet
    first = await h.running_task()  # through the broker door
    report = {"task_id": first, "attempt": 1, "progress": 0.1, "worker_id": "beat-1"}
    await h.send(cloud_event("task.progress", report), "task.progress")
    second = await h.running_task()  # through the HTTP ingress
    beat = cloud_event("task.progress", {"task_id": second, "progress": 0.2, "worker_id": "beat-2"})
    r = await h.svc.client.post("/api/v1/events", content=orjson.dumps(beat), headers=CE)
    assert r.status_code == 202, r.text
    got = await workers(h.svc)
    for worker in ("beat-1", "beat-2"):
        assert (got[worker]["in_flight"], got[worker]["tiers"], got[worker]["stale"]) == (1, ["tiny"], False)
    # A report that is not kept (the task is no longer running) names no worker.
    await h.svc.client.post(f"/api/v1/tasks/{first}/cancel")
    await wait_for_status(h.svc, first, "cancelled")
    late = cloud_event("task.progress", {"task_id": first, "progress": 0.3, "worker_id": "beat-3"})
    await h.send(late, "task.progress")
    assert "beat-3" not in await workers(h.svc)


async def test_a_batch_of_heartbeats_records_its_attempts_and_workers_together(service: Service) -> None:
    """``progress_reported`` of a batch: each current attempt once (of two workers on one
    attempt, the later report's), a report of another attempt or of no task names no attempt,
    and each worker is touched once."""
    from orchestration_service.services.fleet import FleetService

    storage = service.container.storage
    a = task_row(1, status="running", attempt=1, tier="small")
    b = task_row(2, status="running", attempt=2, tier="large")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b])
    fleet = FleetService(storage, make_settings(clean_url(service)))
    await fleet.progress_reported(
        [
            (a["id"], 1, "early"),
            (b["id"], 1, "stale"),  # attempt 1 of b is over
            (b["id"], None, "current"),
            (uuid.uuid4(), None, "nobody"),  # no such task
            (a["id"], 1, "late"),  # takes a's attempt over from "early"
            (b["id"], None, "current"),
        ]
    )
    async with storage.read() as uow:
        page = await uow.workers.page(None, limit=10)
    got = {w.worker_id: (w.in_flight, w.tiers) for w in page.rows}
    assert got == {
        "early": (0, ()),
        "late": (1, ("small",)),
        "stale": (0, ()),
        "current": (1, ("large",)),
        "nobody": (0, ()),
    }
