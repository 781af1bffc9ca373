"""Events over HTTP on both databases: the CloudEvents ingress (structured, binary, batch),
the durable SSE feed (order, filters, resume, out-of-order commits, retention) and the
task stream."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from orchestration_service.db.tables import outbox, processed_events
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.services.lifecycle import emit
from tests.asgi_stream import AsgiStream
from tests.conftest import Service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import all_published, eventually

CE = {"content-type": "application/cloudevents+json"}
CE_BATCH = {"content-type": "application/cloudevents-batch+json"}


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            fields["data"] = orjson.loads(fields["data"])
            events.append(fields)
    return events


async def post_event(svc: Service, envelope: dict[str, Any]) -> Any:
    return await svc.client.post("/api/v1/events", content=orjson.dumps(envelope), headers=CE)


async def post_batch(svc: Service, batch: list[Any]) -> Any:
    return await svc.client.post("/api/v1/events", content=orjson.dumps(batch), headers=CE_BATCH)


async def running(svc: Service, **body: Any) -> str:
    task = await submit(svc, **body)
    await wait_for_status(svc, task["task_id"], "running")
    return str(task["task_id"])


async def stored_counts(svc: Service) -> tuple[int, int]:
    async with svc.container.db.read() as conn:
        processed = (
            await conn.execute(sa.select(sa.func.count()).select_from(processed_events))
        ).scalar_one()
        events = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
    return int(processed), int(events)


async def test_a_task_completes_over_http_alone(service: Service) -> None:
    tid = await running(service)
    r = await post_event(service, output_event(tid))
    assert r.status_code == 202, r.text
    assert r.json()["outcome"] == "processed"
    validated = cloud_event("task.validated", {"task_id": tid, "confidence": 0.8}, source="/qa-service")
    r = await post_event(service, validated)
    assert r.status_code == 202
    doc = await wait_for_status(service, tid, "completed")
    assert doc["provenance_id"]
    again = await post_event(service, validated)
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"


async def test_binary_mode(service: Service) -> None:
    tid = await running(service)
    env = output_event(tid)
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": env["type"],
        "ce-source": env["source"],
        "ce-id": env["id"],
        "ce-subject": tid,
    }
    r = await service.client.post("/api/v1/events", content=orjson.dumps(env["data"]), headers=headers)
    assert r.status_code == 202, r.text
    await wait_for_status(service, tid, "validating")
    missing = {k: v for k, v in headers.items() if k != "ce-id"}
    r = await service.client.post("/api/v1/events", content=orjson.dumps(env["data"]), headers=missing)
    assert r.status_code == 400
    assert r.json()["field"] == "ce-id"


async def test_batch_answers_per_event(service: Service) -> None:
    tid = await running(service)
    good = output_event(tid)
    batch = [good, good, cloud_event("task.output.created", {"task_id": tid}), {"not": "an event"}]
    r = await post_batch(service, batch)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [202, 200, 422, 400]
    assert [x["outcome"] for x in results] == ["processed", "duplicate", "rejected", "rejected"]
    assert results[2]["field"] == "data.artifacts"


async def test_rejected_events_store_nothing(service: Service) -> None:
    tid = await running(service)
    await wait_for_log(service, 4)  # all the submission wrote: created, pending, ready, running
    before = await stored_counts(service)
    history = (await service.client.get(f"/api/v1/tasks/{tid}/history")).json()
    cases = [
        (b"{nope", CE, 400, None),
        (
            orjson.dumps({"specversion": "1.0", "type": "dats.task.output.created"}),
            CE,
            400,
            "envelope.source",
        ),
        (
            orjson.dumps(cloud_event("task.output.created", {"task_id": tid, "artifacts": [{"id": "a"}]})),
            CE,
            422,
            "data.artifacts.0.type",
        ),
        (orjson.dumps(cloud_event("task.unheard.of", {"task_id": tid})), CE, 422, "type"),
        (orjson.dumps(output_event(str(uuid.uuid4()))), CE, 422, "data.task_id"),
        (orjson.dumps(output_event(tid)), {"content-type": "text/plain"}, 415, None),
    ]
    for body, headers, status, field in cases:
        r = await service.client.post("/api/v1/events", content=body, headers=headers)
        assert r.status_code == status, (body[:60], r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert r.json()["field"] == field
    assert await stored_counts(service) == before
    assert (await service.client.get(f"/api/v1/tasks/{tid}/history")).json() == history


async def read_feed(svc: Service, **params: Any) -> list[dict[str, Any]]:
    headers = {}
    if "last_event_id" in params:
        headers["Last-Event-ID"] = str(params.pop("last_event_id"))
    r = await svc.client.get("/api/v1/events", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


async def wait_for_log(svc: Service, count: int) -> None:
    for _ in range(200):
        if await svc.container.event_log.head() >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("events were not sequenced")


async def test_feed_replays_in_order_with_filters(service: Service) -> None:
    a = await running(service, project_id="feed-a")
    b = await running(service, project_id="feed-b")
    await wait_for_log(service, 8)
    everything = await read_feed(service, after=0, limit=8)
    ids = [int(e["id"]) for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == 8
    assert all(e["event"] == e["data"]["type"].removeprefix("dats.") for e in everything)
    ready = await read_feed(service, after=0, limit=2, type="task.ready.*")
    assert {e["data"]["subject"] for e in ready} == {a, b}
    only_b = await read_feed(service, after=0, limit=4, project_id="feed-b")
    assert {e["data"]["subject"] for e in only_b} == {b}
    by_subject = await read_feed(service, after=0, limit=1, subject=a, type=["task.created"])
    assert by_subject[0]["data"]["data"]["task_id"] == a
    resumed = await read_feed(service, last_event_id=ids[3], limit=4)
    assert [int(e["id"]) for e in resumed] == ids[4:]
    assert await read_feed(service, after=ids[3], limit=4) == resumed


async def test_resume_sees_events_of_transactions_that_commit_out_of_order(service: Service) -> None:
    db = service.container.db
    start = await service.container.event_log.head()
    first_inserted = asyncio.Event()
    release_first = asyncio.Event()

    async def slow_writer() -> None:
        async with service.container.storage.transaction() as uow:
            await emit(uow, [OutgoingEvent("test.slow", {"n": 1}, subject="slow", project_id="ooo")])
            first_inserted.set()
            await release_first.wait()

    async def fast_writer(n: int) -> None:
        async with service.container.storage.transaction() as uow:
            await emit(uow, [OutgoingEvent("test.fast", {"n": n}, subject="fast", project_id="ooo")])

    if db.is_postgres:
        slow = asyncio.create_task(slow_writer())
        await first_inserted.wait()
        await asyncio.gather(*(fast_writer(n) for n in range(3)))  # commit while `slow` is open
        await wait_for_log(service, start + 3)
        early = await read_feed(service, after=start, limit=3, project_id="ooo")
        assert [e["event"] for e in early] == ["test.fast"] * 3
        release_first.set()
        await slow
        later = await read_feed(service, last_event_id=early[-1]["id"], limit=1, project_id="ooo")
        assert [e["event"] for e in later] == ["test.slow"]
        seen = early + later
    else:
        # SQLite serialises writers, so commits cannot interleave; order is insert order.
        await asyncio.gather(*(fast_writer(n) for n in range(4)))
        await wait_for_log(service, start + 4)
        seen = await read_feed(service, after=start, limit=4, project_id="ooo")
    assert len({e["id"] for e in seen}) == len(seen) == 4


async def test_live_tail_starts_at_the_newest_event(service: Service) -> None:
    await running(service, project_id="tail")
    await wait_for_log(service, 4)

    params = {"limit": 1, "project_id": "tail-later"}
    async with AsgiStream(service.app, "/api/v1/events", params=params) as feed:
        assert feed.status == 200
        await feed.wait_for(b": event feed\n")  # the tail is open: submit now
        await submit(service, project_id="tail-later")
        events = parse_sse(await feed.read_to_end(5))
    assert events[0]["event"] == "task.created"


async def test_retention_removes_old_published_events(service: Service) -> None:
    await running(service, project_id="old")
    await wait_for_log(service, 4)
    # Only published events are purged: wait for the relay.
    await eventually(lambda: all_published(service), what="every event published")
    async with service.container.db.transaction() as tx:
        await tx.conn.execute(outbox.update().values(created_at=datetime.now(UTC) - timedelta(days=8)))
    newest = await service.container.event_log.head()
    await service.container.relay._purge()
    kept = await read_feed(service, after=0, limit=1)
    assert [int(e["id"]) for e in kept] == [newest], "only the newest event is kept"
    await submit(service, project_id="new")
    events = await read_feed(service, after=0, limit=2)
    assert int(events[1]["id"]) == newest + 1, "sequence numbers continue after a purge"
    assert events[1]["data"]["data"]["project_id"] == "new"


async def test_retention_forgets_old_consumed_event_ids(service: Service) -> None:
    """The de-duplication table is bounded too: ids older than
    ``events.processed_retention_days`` (14) are forgotten, newer ones kept."""
    events = [output_event(await running(service)) for _ in range(2)]
    for event in events:
        assert (await post_event(service, event)).status_code == 202
    async with service.container.db.transaction() as tx:
        await tx.conn.execute(
            processed_events.update()
            .where(processed_events.c.event_id == events[0]["id"])
            .values(processed_at=datetime.now(UTC) - timedelta(days=15))
        )
    before, _ = await stored_counts(service)
    await service.container.relay._purge()
    after, _ = await stored_counts(service)
    assert (before, after) == (2, 1)


async def sequenced(svc: Service, task_id: str, to: str) -> None:
    """Wait until the event log has numbered the task's transition to ``to`` (the relay
    numbers events after they commit, so a task can be running before its event has a
    position; a snapshot taken in between stands before it, and a resume replays it)."""

    async def found() -> bool:
        position = 0
        while batch := await svc.container.event_log.read(position, 500):
            for entry in batch:
                data = entry.envelope.get("data") or {}
                if data.get("task_id") == task_id and data.get("to") == to:
                    return True
            position = batch[-1].seq
        return False

    await eventually(found, what=f"the log to number {task_id}'s transition to {to}")


async def test_task_stream_follows_to_the_final_state(service: Service) -> None:
    tid = await running(service)
    await sequenced(service, tid, "running")  # else a resume after the snapshot replays it

    async with AsgiStream(service.app, f"/api/v1/tasks/{tid}/stream") as stream:
        assert stream.status == 200
        await stream.wait_for(b"event: snapshot\n")  # the stream is open: act now
        await post_event(service, output_event(tid))
        await post_event(service, cloud_event("task.validated", {"task_id": tid}, source="/qa-service"))
        events = parse_sse(await stream.read_to_end())
    assert events[0]["event"] == "snapshot" and events[0]["data"]["status"] == "running"
    statuses = [(e["data"]["from"], e["data"]["to"]) for e in events[1:]]
    assert statuses == [("running", "validating"), ("validating", "completed")]
    assert events[-1]["data"]["task"]["status"] == "completed"
    # Resuming after the snapshot replays both transitions and closes: the task is final.
    r = await service.client.get(f"/api/v1/tasks/{tid}/stream", headers={"Last-Event-ID": events[0]["id"]})
    replay = parse_sse(r.text)
    assert [e["data"]["to"] for e in replay[1:]] == ["validating", "completed"]
    assert (await service.client.get(f"/api/v1/tasks/{uuid.uuid4()}/stream")).status_code == 404
