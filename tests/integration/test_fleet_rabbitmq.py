"""The fleet on RabbitMQ (both databases): GET /queues reports the broker's own figures
for the worker queues bound to task.ready.{tier}, and a delivery the service dead-letters
is stored and can be replayed once its cause is fixed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from orchestration_service.domain.ids import uuid7
from tests.conftest import Service, make_settings, start_service
from tests.integration.repositories.tasks_data import task as task_row
from tests.integration.test_event_lifecycle import output_event
from tests.integration.test_rabbitmq_bus import admin, delete_topology, prefix, wait_for_status  # noqa: F401
from tests.waiting import eventually

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def on_rabbitmq(clean_db: str, prefix: str, admin: AbstractChannel) -> AsyncIterator[Service]:  # noqa: F811
    from tests.conftest import AMQP_URL

    settings = make_settings(clean_db, events={"broker_url": AMQP_URL, "name_prefix": prefix})
    svc, lifespan = await start_service(settings)
    try:
        await eventually(lambda: svc.container.bus.consuming, timeout=15, what="the service's consumer")
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await delete_topology(prefix, (f"{prefix}task.ready.tiny",))


async def publish(admin: AbstractChannel, prefix: str, envelope: dict[str, Any], key: str) -> None:  # noqa: F811
    ex = await admin.get_exchange(prefix + "task.events", ensure=True)
    message = aio_pika.Message(orjson.dumps(envelope), content_type="application/cloudevents+json")
    await ex.publish(message, routing_key=key)


async def test_queue_depths_and_consumers_match_the_broker(
    on_rabbitmq: Service,
    admin: AbstractChannel,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    svc = on_rabbitmq
    # A worker's queue for the tiny tier, with nobody consuming yet.
    queue = await admin.declare_queue(f"{prefix}task.ready.tiny", durable=False, auto_delete=False)
    await queue.bind(prefix + "task.events", routing_key="task.ready.tiny")
    for _ in range(3):
        r = await svc.client.post(
            "/api/v1/tasks", json={"description": "Write a fibonacci function", "project_id": "q"}
        )
        assert r.status_code == 201

    async def tiny() -> dict[str, Any] | None:
        body = (await svc.client.get("/api/v1/queues")).json()
        assert body["broker"] == {"source": "passive-declare", "error": None}
        row = next(q for q in body["items"] if q["tier"] == "tiny")
        return row if row["broker"] and row["broker"]["messages"] == 3 else None

    row = await eventually(tiny, timeout=15, what="three task.ready.tiny in the worker queue")
    declared = await admin.declare_queue(f"{prefix}task.ready.tiny", passive=True)
    ok = declared.declaration_result
    assert (
        (row["broker"]["messages"], row["broker"]["consumers"])
        == (ok.message_count, ok.consumer_count)
        == (3, 0)
    )
    assert row["running"] == 3
    (q,) = row["broker"]["queues"]
    assert q == {"name": f"{prefix}task.ready.tiny", "exists": True, "messages": 3, "consumers": 0}
    small = next(x for x in (await svc.client.get("/api/v1/queues")).json()["items"] if x["tier"] == "small")
    assert small["broker"]["queues"][0]["exists"] is False  # nobody declared that one

    # A worker attaches: the broker counts its consumer (and the messages go to it).
    received: asyncio.Queue[Any] = asyncio.Queue()
    tag = await queue.consume(received.put)

    async def consumed() -> dict[str, Any] | None:
        body = (await svc.client.get("/api/v1/queues")).json()
        found = next(q for q in body["items"] if q["tier"] == "tiny")
        return found if found["broker"]["consumers"] == 1 else None

    row = await eventually(consumed, timeout=15, what="the worker's consumer counted")
    await queue.cancel(tag)
    assert row["broker"]["consumers"] == 1


async def test_a_broker_dead_letter_is_stored_and_replayed_after_the_fix(
    on_rabbitmq: Service,
    admin: AbstractChannel,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    svc = on_rabbitmq
    task_id = uuid7()
    event = output_event(str(task_id))
    await publish(admin, prefix, event, "task.output.created")

    async def stored() -> list[dict[str, Any]]:
        return list((await svc.client.get("/api/v1/dead-letters")).json()["items"])

    (letter,) = await eventually(stored, timeout=15, what="the dead letter stored")
    assert (letter["source"], letter["kind"], letter["event_id"]) == ("broker", "unknown-task", event["id"])
    # The broker's dead-letter queue has it too, with its reason.
    dlq = await admin.declare_queue(f"{prefix}orchestration-events.dlq", passive=True)
    got = await eventually(lambda: dlq.get(fail=False, no_ack=True), timeout=10, what="the DLQ message")
    assert got is not None and "unknown-task" in str(got.headers.get("x-death-reason"))

    async with svc.container.storage.transaction() as uow:
        await uow.tasks.insert_many(
            [task_row(id=task_id, project_id="late", status="running", attempt=1, tier="small")]
        )
    r = await svc.client.post(f"/api/v1/dead-letters/{letter['id']}/replay")
    assert r.status_code == 200 and r.json()["outcome"] == "processed", r.text
    await wait_for_status(svc.client, str(task_id), "validating")
    assert await stored() == []
