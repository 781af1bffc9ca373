"""The RabbitMQ adapter's heartbeat consumer (``events/rabbitmq_heartbeats.py``) against a real
broker: what has arrived is handled in one batch, a transient failure retries the batch in
place (no redelivery), a dead letter carries its reason, and nothing is left unacked."""

# The fixtures shared with another module are imported by name; pytest passes them as arguments.
# ruff: noqa: F811
from __future__ import annotations

from collections.abc import Sequence

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from orchestration_service.events.bus import Disposition, HandlerResult, InboundMessage
from orchestration_service.events.rabbitmq import RabbitMQBus
from tests.integration.test_rabbitmq_bus import (  # noqa: F401
    ACK,
    Recorder,
    admin,
    delete_topology,
    drain_queue,
    events_settings,
    prefix,
    wait_until,
)

pytestmark = pytest.mark.rabbitmq


async def test_heartbeats_are_handled_in_batches_retried_in_place_and_acked_at_once(
    admin: AbstractChannel, prefix: str
) -> None:
    b = RabbitMQBus(events_settings(prefix))
    await b.start()
    try:
        ex = await admin.get_exchange(prefix + "task.events", ensure=True)
        for i in range(40):
            await ex.publish(aio_pika.Message(f"beat {i}".encode()), routing_key="task.progress")
        batches: list[list[InboundMessage]] = []

        async def heartbeats(messages: Sequence[InboundMessage]) -> list[HandlerResult]:
            batches.append(list(messages))
            if len(batches) == 1:  # the database is away once: the batch is kept and tried again
                return [HandlerResult(Disposition.RETRY, "retry", "database is down")] * len(messages)
            return [
                HandlerResult(Disposition.DEAD_LETTER, "dead_lettered", "schema: bad beat")
                if m.body == b"beat 7"
                else ACK
                for m in messages
            ]

        await b.consume(Recorder(), heartbeats)
        handled = lambda: sorted(m.body for batch in batches[1:] for m in batch)  # noqa: E731
        await wait_until(lambda: len(handled()) >= 40, 15, "every heartbeat handled after the retry")
        assert len(batches[0]) > 1  # what had arrived went together
        assert [m.body for m in batches[1]][: len(batches[0])] == [m.body for m in batches[0]]
        assert not any(m.redelivered for batch in batches for m in batch)
        dlq = await admin.declare_queue(f"{prefix}orchestration-events.dlq", passive=True)
        dead = await drain_queue(dlq)
        assert [(m.body, m.headers["x-death-reason"]) for m in dead] == [(b"beat 7", "schema: bad beat")]
        # Every delivery was settled: closing the connection hands none back.
        await b.close()
        beats = await admin.declare_queue(f"{prefix}orchestration-events.heartbeats", passive=True)
        assert beats.declaration_result.message_count == 0
        assert len(handled()) == 40
    finally:
        await b.close()
        await delete_topology(prefix)


async def test_a_full_batch_does_not_wait_for_the_window(
    admin: AbstractChannel, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window is for a batch that is not full: as many deliveries as the prefetch go at
    once (else a busy queue is held to one batch a window, whatever the CPU left)."""
    from orchestration_service.events import rabbitmq_heartbeats

    monkeypatch.setattr(rabbitmq_heartbeats, "BATCH_WINDOW", 3600.0)
    b = RabbitMQBus(events_settings(prefix, rabbitmq={"heartbeat_prefetch": 8}))
    await b.start()
    try:
        ex = await admin.get_exchange(prefix + "task.events", ensure=True)
        for i in range(24):
            await ex.publish(aio_pika.Message(f"beat {i}".encode()), routing_key="task.progress")
        batches: list[int] = []

        async def heartbeats(messages: Sequence[InboundMessage]) -> list[HandlerResult]:
            batches.append(len(messages))
            return [ACK] * len(messages)

        await b.consume(Recorder(), heartbeats)
        await wait_until(lambda: sum(batches) >= 24, 15, "three full batches handled")
        assert batches == [8, 8, 8]
    finally:
        await b.close()
        await delete_topology(prefix)
