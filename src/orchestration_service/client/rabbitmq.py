"""The worker helper's RabbitMQ transport: announcements from a durable queue bound to
``task.ready.{tier}`` on the ``task.events`` exchange, outcomes published to it with
publisher confirms (routing key = event name, ``message_id`` = CloudEvent id).

A delivery is acked only after its outcome is published, so the tasks of a worker that
stops mid-task are delivered again (to it or another worker on the same queue): the stable
event ids make the second outcome a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson

from orchestration_service.client import cloudevents as ce
from orchestration_service.client.aio import AsyncClient
from orchestration_service.client.errors import NotFound

log = logging.getLogger(__name__)


class _Delivery:
    def __init__(self, envelope: dict[str, Any], message: Any) -> None:
        self.envelope = envelope
        self.message = message

    async def done(self) -> None:
        await self.message.ack()


class RabbitMQ:
    """``queue``: the workers' shared queue (one per pool of identical workers).
    ``prefix``: the service's ``events.name_prefix``. ``client``: checks that an announced
    attempt is still running (without one, every announcement is taken as current)."""

    def __init__(
        self,
        url: str,
        *,
        queue: str,
        prefix: str = "",
        exchange: str = "task.events",
        client: AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.queue_name = queue
        self.exchange_name = prefix + exchange
        self.client = client
        self._connection: Any = None
        self._exchange: Any = None

    async def _connect(self) -> Any:
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self.url)
            channel = await self._connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=1)  # one task at a time per worker
            self._exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            self._channel = channel
        return self._channel

    async def declare(self, tiers: tuple[str, ...]) -> Any:
        """The queue, declared and bound (announcements published before this are not in
        it: declare it before the first task is submitted, e.g. at deploy time)."""
        channel = await self._connect()
        queue = await channel.declare_queue(self.queue_name, durable=True)
        for tier in tiers:
            await queue.bind(self._exchange, routing_key=f"task.ready.{tier}")
        return queue

    async def announcements(self, tiers: tuple[str, ...]) -> AsyncIterator[_Delivery]:
        queue = await self.declare(tiers)
        async with queue.iterator() as messages:
            async for message in messages:
                try:
                    envelope = orjson.loads(message.body)
                    str(envelope["data"]["task_id"])  # the one field the worker needs
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    log.error("unreadable announcement dropped: %s", exc)
                    await message.reject(requeue=False)
                    continue
                yield _Delivery(envelope, message)

    async def post(self, envelope: dict[str, Any]) -> None:
        await self._connect()
        message = aio_pika.Message(
            orjson.dumps(envelope),
            content_type=ce.CONTENT_TYPE,
            message_id=str(envelope["id"]),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, routing_key=ce.event_name(envelope))

    async def still_current(self, task_id: str, attempt: int) -> bool:
        if self.client is None:
            return True
        try:
            task = await self.client.get_task(task_id)
        except NotFound:
            return False
        return task.status == "running" and task.attempt == attempt

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
