"""The RabbitMQ adapter of the event bus against a real broker (no mocks).

Every test uses its own ``name_prefix`` (``t<hex>.``) and deletes its exchanges and queues
afterwards, so runs (and other users of the broker) do not see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from orchestration_service.config import EventsSettings
from orchestration_service.domain.events import now_rfc3339
from orchestration_service.events.bus import (
    BusUnavailable,
    Disposition,
    HandlerResult,
    InboundMessage,
    OutboundMessage,
)
from orchestration_service.events.rabbitmq import RabbitMQBus
from tests.conftest import AMQP_URL, make_settings, missing_service, start_service

pytestmark = pytest.mark.rabbitmq

ACK = HandlerResult(Disposition.ACK, "processed")


# -- helpers ---------------------------------------------------------------------------------
def events_settings(prefix: str, **extra: Any) -> EventsSettings:
    return EventsSettings(broker_url=AMQP_URL, name_prefix=prefix, **extra)


def cloud_event(ce_type: str, data: dict[str, Any], subject: str | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "specversion": "1.0",
        "type": ce_type,
        "source": "/worker-service",
        "id": str(uuid.uuid4()),
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
    }
    if subject is not None:
        env["subject"] = subject
    env["data"] = data
    return env


async def delete_topology(prefix: str, extra_queues: tuple[str, ...] = ()) -> None:
    conn = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        queues = (
            f"{prefix}orchestration-events",
            f"{prefix}orchestration-events.dlq",
            f"{prefix}orchestration-events.heartbeats",
            *extra_queues,
        )
        exchanges = ("task.events", "qa.events", "cascade.events", "orchestration.dlx")
        for q in queues:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(q)
            with contextlib.suppress(Exception):
                await ch.close()
        for ex in exchanges:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(prefix + ex)
            with contextlib.suppress(Exception):
                await ch.close()
    finally:
        await conn.close()


async def drain_queue(queue: AbstractQueue, *, settle: float = 0.3) -> list[AbstractIncomingMessage]:
    """Get every message from ``queue``; wait ``settle`` seconds of silence before stopping."""
    out: list[AbstractIncomingMessage] = []
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        msg = await queue.get(fail=False, no_ack=True)
        if msg is None:
            await asyncio.sleep(0.05)
            continue
        out.append(msg)
        deadline = time.monotonic() + settle
    return out


async def wait_until(cond: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Recorder:
    """A handler that records deliveries; ``decide`` picks the result (default: ack)."""

    def __init__(self, decide: Callable[[InboundMessage], Awaitable[HandlerResult]] | None = None) -> None:
        self.seen: list[InboundMessage] = []
        self.decide = decide
        self.acked: asyncio.Queue[InboundMessage] = asyncio.Queue()

    async def __call__(self, msg: InboundMessage) -> HandlerResult:
        self.seen.append(msg)
        result = await self.decide(msg) if self.decide is not None else ACK
        if result.disposition is Disposition.ACK:
            self.acked.put_nowait(msg)
        return result

    async def next_acked(self, within: float = 10.0) -> InboundMessage:
        return await asyncio.wait_for(self.acked.get(), within)


def ce_id(msg: InboundMessage) -> str:
    return str(orjson.loads(msg.body)["id"])


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture
async def admin() -> AsyncIterator[AbstractChannel]:
    """A plain connection of the test's own, for inspecting the broker."""
    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        missing_service("RabbitMQ", exc)
        raise
    try:
        yield await conn.channel()
    finally:
        await conn.close()


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}."


@pytest.fixture
async def bus(prefix: str, admin: AbstractChannel) -> AsyncIterator[RabbitMQBus]:
    b = RabbitMQBus(events_settings(prefix))
    await b.start()
    try:
        yield b
    finally:
        await b.close()
        await delete_topology(prefix)


async def tap(admin: AbstractChannel, prefix: str, exchange: str = "task.events") -> AbstractQueue:
    """A private queue seeing everything published to ``exchange``."""
    q = await admin.declare_queue(exclusive=True, auto_delete=True)
    await q.bind(prefix + exchange, routing_key="#")
    return q


# -- topology --------------------------------------------------------------------------------
async def test_topology_is_declared_at_start(bus: RabbitMQBus, admin: AbstractChannel, prefix: str) -> None:
    assert bus.health() == "connected"
    assert bus.queue_type == "quorum"
    assert not bus.consuming

    # The main queue is a quorum queue: redeclaring it as classic is refused by the broker.
    conn = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        ch = await conn.channel()
        args = {"x-dead-letter-exchange": f"{prefix}orchestration.dlx"}
        await ch.declare_queue(
            f"{prefix}orchestration-events", durable=True, arguments={**args, "x-queue-type": "quorum"}
        )
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await ch.declare_queue(
                f"{prefix}orchestration-events", durable=True, arguments={**args, "x-queue-type": "classic"}
            )
    finally:
        await conn.close()

    # Bindings: QA's events from both exchanges, rollbacks from cascade.events, and
    # nothing for an event nobody here consumes.
    pub = admin  # publisher confirms are on by default
    for exchange, key in [
        ("task.events", "task.validated"),
        ("qa.events", "task.validated"),
        ("cascade.events", "rollback.requested"),
        ("task.events", "task.ready.small"),
        ("qa.events", "task.ready.small"),
    ]:
        ex = await pub.get_exchange(prefix + exchange, ensure=True)
        await ex.publish(aio_pika.Message(f"{exchange}/{key}".encode()), routing_key=key, mandatory=False)
    queue = await admin.declare_queue(f"{prefix}orchestration-events", passive=True)
    got = sorted(m.body.decode() for m in await drain_queue(queue))
    assert got == [
        "cascade.events/rollback.requested",
        "qa.events/task.validated",
        "task.events/task.validated",
    ]

    # The dead-letter queue exists and is fed by the dead-letter exchange.
    dlx = await pub.get_exchange(f"{prefix}orchestration.dlx", ensure=True)
    await dlx.publish(aio_pika.Message(b"dead"), routing_key="anything", mandatory=False)
    dlq = await admin.declare_queue(f"{prefix}orchestration-events.dlq", passive=True)
    assert [m.body for m in await drain_queue(dlq)] == [b"dead"]


async def test_falls_back_to_a_classic_queue_when_quorum_is_refused(
    prefix: str, admin: AbstractChannel
) -> None:
    # A classic queue of that name already exists, so the quorum declaration is refused
    # (PRECONDITION_FAILED closes the channel); the bus retries on a fresh one as classic.
    await admin.declare_queue(
        f"{prefix}orchestration-events",
        durable=True,
        arguments={"x-dead-letter-exchange": f"{prefix}orchestration.dlx"},
    )
    b = RabbitMQBus(events_settings(prefix))
    try:
        await b.start()
        assert b.queue_type == "classic"
        rec = Recorder()
        await b.consume(rec)
        env = cloud_event("dats.task.validated", {"task_id": "t-c"})
        await b.publish([OutboundMessage("qa.events", "task.validated", env)])
        assert ce_id(await rec.next_acked()) == env["id"]
    finally:
        await b.close()
        await delete_topology(prefix)


async def test_start_fails_fast_when_the_broker_is_unreachable(prefix: str) -> None:
    b = RabbitMQBus(EventsSettings(broker_url="amqp://guest:guest@127.0.0.1:1/", name_prefix=prefix))
    started = time.monotonic()
    with pytest.raises(BusUnavailable):
        await b.start()
    assert time.monotonic() - started < 7
    assert b.health() == "disconnected"
    assert b.last_error
    await b.close()


# -- publish / consume -----------------------------------------------------------------------
async def test_publish_then_consume_round_trip(bus: RabbitMQBus, admin: AbstractChannel, prefix: str) -> None:
    spy = await tap(admin, prefix)
    rec = Recorder()
    await bus.consume(rec)
    assert bus.consuming

    env = cloud_event("dats.task.output.created", {"task_id": "t-1", "artifacts": []}, subject="t-1")
    unroutable = cloud_event("dats.task.ready.small", {"task_id": "t-1"})
    # task.ready.small has no queue bound (no worker): not an error.
    await bus.publish(
        [
            OutboundMessage("task.events", "task.ready.small", unroutable),
            OutboundMessage("task.events", "task.output.created", env),
        ]
    )
    msg = await rec.next_acked()
    assert orjson.loads(msg.body) == env
    assert msg.routing_key == "task.output.created"
    assert msg.exchange == "task.events"  # the logical name, without the prefix
    assert not msg.redelivered

    wire = {m.routing_key: m for m in await drain_queue(spy)}
    assert set(wire) == {"task.ready.small", "task.output.created"}
    sent = wire["task.output.created"]
    assert sent.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert sent.content_type == "application/cloudevents+json"
    assert sent.message_id == env["id"]
    assert orjson.loads(sent.body) == env

    # Nothing is left unacknowledged on the main queue.
    await bus.stop_consuming()
    assert not bus.consuming
    queue = await admin.declare_queue(f"{prefix}orchestration-events", passive=True)
    assert await drain_queue(queue, settle=0.1) == []


async def test_publish_a_batch_concurrently(bus: RabbitMQBus) -> None:
    rec = Recorder()
    await bus.consume(rec)
    envs = [cloud_event("dats.task.validated", {"task_id": f"t-{i}"}) for i in range(200)]
    await bus.publish([OutboundMessage("qa.events", "task.validated", e) for e in envs])
    got = {ce_id(await rec.next_acked()) for _ in envs}
    assert got == {e["id"] for e in envs}


async def test_dead_letter_carries_the_reason_and_the_consumer_carries_on(
    bus: RabbitMQBus, admin: AbstractChannel, prefix: str
) -> None:
    poison = cloud_event("dats.task.validated", {"nonsense": True})
    crashing = cloud_event("dats.task.rejected", {"task_id": "boom"})
    good = cloud_event("dats.task.validated", {"task_id": "t-2"})

    async def decide(msg: InboundMessage) -> HandlerResult:
        if ce_id(msg) == poison["id"]:
            return HandlerResult(Disposition.DEAD_LETTER, "dead_lettered", "schema: data.task_id: missing")
        if ce_id(msg) == crashing["id"]:
            raise RuntimeError("handler bug")
        return ACK

    rec = Recorder(decide)
    await bus.consume(rec)
    await bus.publish(
        [
            OutboundMessage("task.events", "task.validated", poison),
            OutboundMessage("task.events", "task.rejected", crashing),
        ]
    )
    await wait_until(lambda: len(rec.seen) >= 2, what="both poison messages handled")
    await bus.publish([OutboundMessage("qa.events", "task.validated", good)])
    assert ce_id(await rec.next_acked()) == good["id"]
    assert bus.consuming

    dlq = await admin.declare_queue(f"{prefix}orchestration-events.dlq", passive=True)
    dead = {str(m.message_id): m for m in await drain_queue(dlq)}
    assert set(dead) == {poison["id"], crashing["id"]}
    p = dead[poison["id"]]
    assert orjson.loads(p.body) == poison
    assert p.headers["x-death-reason"] == "schema: data.task_id: missing"
    assert p.headers["x-original-routing-key"] == "task.validated"
    assert p.headers["x-original-exchange"] == "task.events"
    assert p.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    c = dead[crashing["id"]]
    assert str(c.headers["x-death-reason"]).startswith("handler crashed: RuntimeError: handler bug")
    assert c.headers["x-original-routing-key"] == "task.rejected"

    # Dead-lettered messages are acked: nothing is redelivered on the main queue.
    await bus.stop_consuming()
    queue = await admin.declare_queue(f"{prefix}orchestration-events", passive=True)
    assert await drain_queue(queue, settle=0.1) == []
    assert [ce_id(m) for m in rec.seen].count(poison["id"]) == 1


async def test_retry_keeps_the_delivery_until_the_handler_acks(bus: RabbitMQBus) -> None:
    attempts: dict[str, int] = {}

    async def decide(msg: InboundMessage) -> HandlerResult:
        n = attempts[ce_id(msg)] = attempts.get(ce_id(msg), 0) + 1
        if n < 4:
            return HandlerResult(Disposition.RETRY, "retry", "database is down")
        return ACK

    rec = Recorder(decide)
    await bus.consume(rec)
    env = cloud_event("dats.rollback.requested", {"record_id": "r-1"})
    started = time.monotonic()
    await bus.publish([OutboundMessage("cascade.events", "rollback.requested", env)])
    done = await rec.next_acked(within=15)
    assert ce_id(done) == env["id"]
    assert attempts[env["id"]] == 4
    # Tried again in place, never handed back: a quorum queue's delivery limit (RabbitMQ 4)
    # counts only redeliveries, so a long outage cannot dead-letter the event.
    assert [m.redelivered for m in rec.seen] == [False, False, False, False]
    assert time.monotonic() - started >= 0.2 + 0.4 + 0.8  # backed off between attempts


async def test_a_stop_hands_back_a_delivery_that_is_being_retried(
    bus: RabbitMQBus, admin: AbstractChannel, prefix: str
) -> None:
    async def always_down(msg: InboundMessage) -> HandlerResult:
        return HandlerResult(Disposition.RETRY, "retry", "database is down")

    rec = Recorder(always_down)
    await bus.consume(rec)
    env = cloud_event("dats.task.validated", {"task_id": "t-retry"})
    await bus.publish([OutboundMessage("task.events", "task.validated", env)])
    await wait_until(lambda: len(rec.seen) >= 2, what="a second attempt")
    started = time.monotonic()
    await bus.stop_consuming()
    assert time.monotonic() - started < 2  # the backoff does not hold up the stop
    queue = await admin.declare_queue(f"{prefix}orchestration-events", passive=True)
    assert [orjson.loads(m.body)["id"] for m in await drain_queue(queue, settle=0.5)] == [env["id"]]


async def test_stop_consuming_waits_for_in_flight_handlers(bus: RabbitMQBus) -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def decide(msg: InboundMessage) -> HandlerResult:
        await release.wait()
        finished.append(ce_id(msg))
        return ACK

    rec = Recorder(decide)
    await bus.consume(rec)
    env = cloud_event("dats.task.validated", {"task_id": "t-3"})
    await bus.publish([OutboundMessage("task.events", "task.validated", env)])
    await wait_until(lambda: len(rec.seen) == 1, what="delivery")
    stopping = asyncio.create_task(bus.stop_consuming())
    await wait_until(lambda: not bus.consuming, what="the stop to begin")
    await asyncio.sleep(0.2)  # a stop that did not wait would finish in this window
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [env["id"]]
    assert not bus.consuming


async def test_publish_without_a_connection_raises_bus_unavailable(
    prefix: str, admin: AbstractChannel
) -> None:
    msg = OutboundMessage("task.events", "task.created", cloud_event("dats.task.created", {}))
    never_started = RabbitMQBus(events_settings(prefix))
    with pytest.raises(BusUnavailable):
        await never_started.publish([msg])

    b = RabbitMQBus(events_settings(prefix))
    await b.start()
    try:
        await b.publish([msg])
        await b.close()
        assert b.health() == "disconnected"
        with pytest.raises(BusUnavailable):
            await b.publish([msg])
        with pytest.raises(BusUnavailable):
            await b.consume(Recorder())
    finally:
        await b.close()
        await delete_topology(prefix)


# -- reconnection ----------------------------------------------------------------------------
async def rabbitmqctl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode()}")
    return out.decode()


async def broker_side_pids(connection_name: str) -> list[str]:
    """The broker's process ids of the connections whose client_properties carry ``connection_name``
    (the id is what ``rabbitmqctl close_connection`` takes)."""
    out = await rabbitmqctl("list_connections", "-q", "pid", "client_properties")
    marker = f'{{"connection_name","{connection_name}"}}'
    return [line.split("\t", 1)[0] for line in out.splitlines() if marker in line]


async def broker_side_pids_or_skip(bus: RabbitMQBus) -> list[str]:
    """``broker_side_pids`` of the bus's connection; the test is skipped without rabbitmqctl."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not available to close the connection from the broker side")
    try:
        return await broker_side_pids(bus.connection_name)
    except Exception as exc:
        pytest.skip(f"rabbitmqctl cannot list connections: {exc}")


async def test_reconnects_and_consumes_again_after_the_broker_drops_the_connection(
    bus: RabbitMQBus, admin: AbstractChannel
) -> None:
    before = await broker_side_pids_or_skip(bus)
    assert len(before) == 1  # the prefix makes the name unique to this test

    rec = Recorder()
    await bus.consume(rec)
    first = cloud_event("dats.task.validated", {"task_id": "before"})
    await bus.publish([OutboundMessage("task.events", "task.validated", first)])
    assert ce_id(await rec.next_acked()) == first["id"]

    await rabbitmqctl("close_connection", before[0], "test: forced close of the test's own connection")
    await wait_until(lambda: bus.health() == "disconnected" or bus.last_error is not None, 10, "disconnect")

    # The relay keeps retrying while the bus is away; here: retry until a publish is confirmed.
    second = cloud_event("dats.task.validated", {"task_id": "after"})
    deadline = time.monotonic() + 30
    while True:
        try:
            await bus.publish([OutboundMessage("qa.events", "task.validated", second)])
            break
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    # Topology and consumer are back: the message is routed to our queue and handled.
    assert ce_id(await rec.next_acked(within=30)) == second["id"]
    assert bus.health() == "connected"
    assert bus.consuming
    after = await broker_side_pids(bus.connection_name)
    assert len(after) == 1
    assert after != before  # a new connection


async def test_a_delivery_retried_when_its_channel_closes_is_handled_once_by_the_redelivery(
    bus: RabbitMQBus, admin: AbstractChannel
) -> None:
    before = await broker_side_pids_or_skip(bus)
    database_down = True

    async def decide(msg: InboundMessage) -> HandlerResult:
        return HandlerResult(Disposition.RETRY, "retry", "database is down") if database_down else ACK

    rec = Recorder(decide)
    await bus.consume(rec)
    env = cloud_event("dats.task.validated", {"task_id": "t-channel"})
    await bus.publish([OutboundMessage("task.events", "task.validated", env)])
    await wait_until(lambda: len(rec.seen) >= 2, what="a retry in place")
    await rabbitmqctl("close_connection", before[0], "test: the channel closes under a retried delivery")
    await wait_until(lambda: any(m.redelivered for m in rec.seen), 30, "the redelivery")
    database_down = False
    acked = await rec.next_acked(within=15)
    assert acked.redelivered and ce_id(acked) == env["id"]
    # The first delivery's retries ended with its channel (its handling is cancelled): the
    # event is handled to the end once, by the redelivery, not also by a stale retry loop.
    await asyncio.sleep(3)  # a window for a second ack (a check that one does NOT come)
    assert rec.acked.empty()


# -- heartbeats --------------------------------------------------------------------------------
async def test_heartbeats_have_a_bounded_queue_of_their_own(admin: AbstractChannel, prefix: str) -> None:
    from orchestration_service.config import RabbitMQSettings

    b = RabbitMQBus(events_settings(prefix, rabbitmq=RabbitMQSettings(heartbeat_queue_max_length=3)))
    await b.start()
    try:
        ex = await admin.get_exchange(prefix + "task.events", ensure=True)
        for i in range(5):
            await ex.publish(aio_pika.Message(f"progress {i}".encode()), routing_key="task.progress")
        await ex.publish(aio_pika.Message(b"validated"), routing_key="task.validated")
        # Full, the oldest reports went; none reached the queue of the events that move tasks.
        beats = await admin.declare_queue(f"{prefix}orchestration-events.heartbeats", passive=True)
        assert [m.body.decode() for m in await drain_queue(beats)] == [
            "progress 2",
            "progress 3",
            "progress 4",
        ]
        main = await admin.declare_queue(f"{prefix}orchestration-events", passive=True)
        assert [m.body.decode() for m in await drain_queue(main)] == ["validated"]
        dlq = await admin.declare_queue(f"{prefix}orchestration-events.dlq", passive=True)
        assert await drain_queue(dlq, settle=0.1) == []  # dropped, not dead-lettered

        # Both queues are consumed, by the same handler.
        seen: list[str] = []

        async def handler(msg: InboundMessage) -> HandlerResult:
            seen.append(msg.routing_key)
            return HandlerResult(Disposition.ACK, "processed", "")

        await ex.publish(aio_pika.Message(b"again"), routing_key="task.progress")
        await ex.publish(aio_pika.Message(b"again"), routing_key="task.rejected")
        await b.consume(handler)
        await wait_until(lambda: sorted(seen) == ["task.progress", "task.rejected"], 10, "both deliveries")
    finally:
        await b.close()
        await delete_topology(prefix)


# -- the service end to end on RabbitMQ ------------------------------------------------------
async def test_service_runs_on_rabbitmq(clean_db: str, admin: AbstractChannel, prefix: str) -> None:
    settings = make_settings(clean_db, events={"broker_url": AMQP_URL, "name_prefix": prefix})
    svc, lifespan = await start_service(settings)
    try:
        await wait_until(lambda: svc.container.bus.consuming, 15, "the service's consumer")
        spy = await tap(admin, prefix)

        r = await svc.client.post(
            "/api/v1/tasks", json={"description": "Write a fibonacci function", "project_id": "proj-1"}
        )
        assert r.status_code == 201, r.text
        task_id = r.json()["task_id"]

        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 15
        while not ("task.created" in seen and any(k.startswith("task.ready.") for k in seen)):
            assert time.monotonic() < deadline, f"events seen: {sorted(seen)}"
            m = await spy.get(fail=False, no_ack=True)
            if m is None:
                await asyncio.sleep(0.05)
                continue
            assert m.content_type == "application/cloudevents+json"
            assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            body = orjson.loads(m.body)
            if body.get("subject") == task_id:
                seen[str(m.routing_key)] = body
        created = seen["task.created"]
        assert created["type"] == "dats.task.created"
        assert created["source"] == "/orchestration-service"
        assert created["subject"] == task_id
        assert created["specversion"] == "1.0"
        ready = next(v for k, v in seen.items() if k.startswith("task.ready."))
        assert ready["type"].startswith("dats.task.ready.")
        assert ready["subject"] == task_id

        await wait_for_status(svc.client, task_id, "running")
        output = cloud_event(
            "dats.task.output.created",
            {"task_id": task_id, "artifacts": [{"id": "art-1", "type": "code", "path": "fib.py"}]},
            subject=task_id,
        )
        pub = admin  # publisher confirms are on by default
        ex = await pub.get_exchange(prefix + "task.events", ensure=True)
        await ex.publish(
            aio_pika.Message(
                orjson.dumps(output),
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=output["id"],
            ),
            routing_key="task.output.created",
            mandatory=False,
        )
        await wait_for_status(svc.client, task_id, "validating")

        health = (await svc.client.get("/api/v1/health/detailed")).json()
        assert health["dependencies"]["broker"] == "connected"
        assert (await svc.client.get("/api/v1/health/ready")).status_code == 200
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await delete_topology(prefix)


async def wait_for_status(client: Any, task_id: str, status: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        doc = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        if doc["status"] == status:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {doc['status']}, expected {status}")
        await asyncio.sleep(0.05)
