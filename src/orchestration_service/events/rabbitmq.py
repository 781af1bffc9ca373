"""RabbitMQ adapter of the event bus (aio-pika, robust connection).

Topology (every name carries ``settings.name_prefix``):

* durable topic exchanges ``task.events``, ``qa.events``, ``cascade.events``;
* durable quorum queue ``orchestration-events`` (classic durable if the broker refuses
  quorum), bound to every ``CONSUMED_BINDINGS`` pair, with ``x-dead-letter-exchange``
  pointing at the dead-letter exchange as a safety net;
* fanout exchange ``orchestration.dlx`` and queue ``orchestration-events.dlq``;
* queue ``orchestration-events.heartbeats`` for ``HEARTBEAT_EVENTS`` (``task.progress``):
  bounded (``x-max-length``, the oldest dropped when full, not dead-lettered: only a task's
  latest report matters), with a consumer and prefetch of its own, so heartbeats never wait in
  front of the events that move tasks, nor those behind them. It is consumed in batches
  (``rabbitmq_heartbeats``): what has arrived is handled together and acked at once.

Publishing waits for publisher confirms; anything short of an ack for every message of a
batch raises :class:`BusUnavailable`, so the outbox rows stay unpublished and are retried.
A poison message is republished to the dead-letter exchange with its reason in the
``x-death-reason`` header (then acked), so the reason travels with it.

The connection is aio-pika's robust connection: when the broker goes away it reconnects by
itself and re-declares the exchanges, queues, bindings and the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Sequence
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from yarl import URL

from orchestration_service.config import EventsSettings
from orchestration_service.domain.events import CONSUMED_BINDINGS, CONTENT_TYPE, EXCHANGES, HEARTBEAT_EVENTS
from orchestration_service.events.bus import (
    BatchHandler,
    BusUnavailable,
    Disposition,
    Handler,
    HandlerResult,
    InboundMessage,
    OutboundMessage,
)
from orchestration_service.events.rabbitmq_heartbeats import HeartbeatConsumer
from orchestration_service.redaction import error_text, reason

log = logging.getLogger(__name__)

DLX_NAME = "orchestration.dlx"
DLQ_SUFFIX = ".dlq"
HEARTBEATS_SUFFIX = ".heartbeats"
DEFAULT_QUEUE = "orchestration-events"

CONNECT_TIMEOUT = 5.0  # seconds; start() fails fast, Container._connect_bus retries
RECONNECT_INTERVAL = 2.0  # seconds between the robust connection's reconnect attempts
PUBLISH_TIMEOUT = 10.0  # a batch not confirmed within this is BusUnavailable
STOP_GRACE = 10.0  # stop_consuming() waits this long for in-flight handlers
RETRY_INITIAL = 0.2
RETRY_MAX = 10.0
MAX_REASON_CHARS = 2_000


class RabbitMQBus:
    name = "rabbitmq"

    def __init__(self, settings: EventsSettings) -> None:
        self.settings = settings
        self.prefix = settings.name_prefix
        queues = settings.rabbitmq.queues
        self.queue_name = self.prefix + (queues[0] if queues else DEFAULT_QUEUE)
        self.dlq_name = self.queue_name + DLQ_SUFFIX
        self.heartbeat_queue_name = self.queue_name + HEARTBEATS_SUFFIX
        self.dlx_name = self.prefix + DLX_NAME
        # The design's three exchanges plus any configured extra.
        self.exchange_names: tuple[str, ...] = tuple(
            dict.fromkeys([*EXCHANGES, *settings.rabbitmq.exchanges])
        )
        label = f"[{self.prefix}]" if self.prefix else ""
        self.connection_name = f"orchestration-service{label}@{socket.gethostname()}:{os.getpid()}"
        self.queue_type: str | None = None  # quorum | classic, once declared
        self.last_error: str | None = None

        self._connection: AbstractRobustConnection | None = None
        self._consume_channel: AbstractRobustChannel | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._queue: AbstractRobustQueue | None = None
        self._heartbeats: AbstractRobustQueue | None = None
        self._heartbeat_channel: AbstractRobustChannel | None = None
        self._heartbeat_tag: str | None = None
        self._beats: HeartbeatConsumer | None = None
        self._exchanges: dict[str, AbstractExchange] = {}  # logical name -> exchange on the publish channel
        self._dlx: AbstractExchange | None = None
        self._handler: Handler | None = None
        self._consumer_tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()

    # -- names ---------------------------------------------------------------------------
    def _p(self, name: str) -> str:
        return self.prefix + name

    def _unprefix(self, name: str) -> str:
        if self.prefix and name.startswith(self.prefix):
            return name[len(self.prefix) :]
        return name

    def _inbound(self, message: AbstractIncomingMessage) -> InboundMessage:
        return InboundMessage(
            body=message.body,
            routing_key=message.routing_key or "",
            exchange=self._unprefix(message.exchange or ""),
            headers=dict(message.headers or {}),
            redelivered=bool(message.redelivered),
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and declare the topology. Raises BusUnavailable when the broker is not there."""
        await self.close()
        # What aio_pika.connect_robust does, but keeping hold of the connection so that a
        # failed or cancelled first attempt does not leave its reconnect loop running.
        connection = aio_pika.RobustConnection(
            URL(self.settings.broker_url),
            client_properties={"connection_name": self.connection_name},
            reconnect_interval=RECONNECT_INTERVAL,
        )
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            if not isinstance(exc, Exception):
                raise
            # Classified (it shows in /health/detailed); the log gets the redacted text.
            self.last_error = reason(exc)
            raise BusUnavailable(f"cannot connect to the broker: {error_text(exc)}") from exc
        self._connection = connection
        connection.close_callbacks.add(self._on_connection_closed)
        connection.reconnect_callbacks.add(self._on_reconnected)
        try:
            await self._declare_topology(connection)
        except Exception as exc:
            self.last_error = reason(exc)
            await self.close()
            raise BusUnavailable(f"cannot declare the topology: {error_text(exc)}") from exc
        self.last_error = None
        log.info(
            "event bus connected to RabbitMQ (queue %s, %s)",
            self.queue_name,
            self.queue_type,
            extra={"connection_name": self.connection_name},
        )

    async def _declare_topology(self, connection: AbstractRobustConnection) -> None:
        queue_type, type_args = await self._choose_queue_type(connection)
        self.queue_type = queue_type

        # Everything is declared on the consumer channel (robust): on reconnect the channel
        # re-declares exchanges first, then the queues with their bindings and consumer.
        channel = await connection.channel(publisher_confirms=False)
        self._consume_channel = channel
        for name in self.exchange_names:
            await channel.declare_exchange(self._p(name), aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_exchange(self.dlx_name, aio_pika.ExchangeType.FANOUT, durable=True)
        dlq = await channel.declare_queue(self.dlq_name, durable=True, arguments=dict(type_args))
        await dlq.bind(self.dlx_name, routing_key="")
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments=self._queue_arguments(type_args)
        )
        # Its own (robust) channel: prefetch is per channel here, and heartbeats get their own
        # window. The exchanges are durable and declared above, so its bindings find them.
        self._heartbeat_channel = await connection.channel(publisher_confirms=False)
        heartbeats = await self._heartbeat_channel.declare_queue(
            self.heartbeat_queue_name,
            durable=True,
            arguments={
                **type_args,
                "x-max-length": self.settings.rabbitmq.heartbeat_queue_max_length,
                "x-overflow": "drop-head",
            },
        )
        for exchange, routing_key in CONSUMED_BINDINGS:
            target = heartbeats if routing_key in HEARTBEAT_EVENTS else queue
            await target.bind(self._p(exchange), routing_key=routing_key)
        self._queue = queue
        self._heartbeats = heartbeats

        publish = await connection.channel(publisher_confirms=True)
        self._publish_channel = publish
        self._exchanges = {
            name: await publish.get_exchange(self._p(name), ensure=False) for name in self.exchange_names
        }
        self._dlx = await publish.get_exchange(self.dlx_name, ensure=False)

    def _queue_arguments(self, type_args: dict[str, Any]) -> dict[str, Any]:
        return {**type_args, "x-dead-letter-exchange": self.dlx_name}

    async def _choose_queue_type(self, connection: AbstractRobustConnection) -> tuple[str, dict[str, Any]]:
        """Declare the main queue as quorum; fall back to classic if the broker refuses.

        A refused declaration closes its channel, so each attempt uses a fresh plain
        (non-robust) channel that is thrown away afterwards."""
        transport = connection.transport
        if transport is None:
            raise BusUnavailable("connection has no transport")
        attempts: tuple[tuple[str, dict[str, Any]], ...] = (
            ("quorum", {"x-queue-type": "quorum"}),
            ("classic", {}),
        )
        for queue_type, type_args in attempts:
            probe = await transport.connection.channel(publisher_confirms=False)
            try:
                await probe.queue_declare(
                    self.queue_name, durable=True, arguments=self._queue_arguments(type_args)
                )
                return queue_type, type_args
            except aiormq.exceptions.ChannelClosed as exc:
                if queue_type == "classic":
                    raise
                log.warning("broker refused a quorum queue (%s); using a classic durable queue", exc)
            finally:
                if not probe.is_closed:
                    with contextlib.suppress(Exception):
                        await probe.close()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.stop_consuming()
        connection = self._connection
        self._connection = None
        self._consume_channel = self._publish_channel = self._heartbeat_channel = None
        self._queue = self._heartbeats = None
        self._dlx = None
        self._exchanges = {}
        if connection is not None:
            connection.close_callbacks.discard(self._on_connection_closed)
            connection.reconnect_callbacks.discard(self._on_reconnected)
            with contextlib.suppress(Exception):
                await connection.close()

    def _on_connection_closed(self, _sender: Any, exc: BaseException | None = None) -> None:
        if exc is None or isinstance(exc, asyncio.CancelledError):
            return
        self.last_error = f"connection lost: {reason(exc)}"
        log.warning("event bus: connection lost: %s; reconnecting", error_text(exc))

    def _on_reconnected(self, _sender: Any) -> None:
        self.last_error = None
        log.info("event bus: reconnected to RabbitMQ")

    def _is_open(self) -> bool:
        c = self._connection
        return c is not None and not c.is_closed and c.connected.is_set()

    def health(self) -> str:
        return "connected" if self._is_open() else "disconnected"

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None and self._is_open()

    async def queue_stats(self, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
        """Messages ready and consumers of each queue, the broker's answer to a passive
        declare; None for a queue that does not exist. Raises BusUnavailable when not connected."""
        connection = self._connection
        transport = connection.transport if connection is not None else None
        if transport is None or not self._is_open():
            raise BusUnavailable("not connected to the broker")
        out: dict[str, tuple[int, int] | None] = {}
        channel = None
        try:
            for name in names:
                # A passive declare of a missing queue closes its channel: a plain (not
                # robust) channel, opened again for the next name.
                if channel is None or channel.is_closed:
                    channel = await transport.connection.channel(publisher_confirms=False)
                try:
                    ok = await channel.queue_declare(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    out[name] = None
                    continue
                out[name] = (int(ok.message_count or 0), int(ok.consumer_count or 0))
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        return out

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        if self._publish_channel is None or not self._is_open():
            why = f": {self.last_error}" if self.last_error else ""
            raise BusUnavailable(f"not connected to the broker{why}")
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self._publish_outbound(m) for m in messages), return_exceptions=True),
                PUBLISH_TIMEOUT,
            )
        except TimeoutError as exc:
            raise BusUnavailable(f"the broker did not confirm {len(messages)} messages in time") from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            raise BusUnavailable(
                f"{len(failures)} of {len(messages)} messages not confirmed: {type(first).__name__}: {first}"
            ) from first

    async def _publish_outbound(self, msg: OutboundMessage) -> None:
        exchange = self._exchanges.get(msg.exchange)
        if exchange is None:
            channel = self._publish_channel
            if channel is None:
                raise BusUnavailable("not connected to the broker")
            exchange = await channel.get_exchange(self._p(msg.exchange), ensure=False)
            self._exchanges[msg.exchange] = exchange
        envelope_id = msg.envelope.get("id")
        message = aio_pika.Message(
            body=orjson.dumps(msg.envelope),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope_id) if envelope_id is not None else None,
        )
        await self._publish_confirmed(exchange, message, msg.routing_key)

    @staticmethod
    async def _publish_confirmed(
        exchange: AbstractExchange, message: aio_pika.Message, routing_key: str
    ) -> None:
        # mandatory=False: an unroutable message (no worker bound yet) is not an error.
        confirmation = await exchange.publish(message, routing_key=routing_key, mandatory=False)
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise BusUnavailable(f"publish not confirmed: {confirmation!r}")

    # -- consuming -------------------------------------------------------------------------
    async def consume(self, handler: Handler, heartbeats: BatchHandler | None = None) -> None:
        if self._queue is None or self._consume_channel is None or not self._is_open():
            raise BusUnavailable("not connected to the broker; call start() first")
        if self._consumer_tag is not None:
            await self.stop_consuming()
        self._handler = handler
        self._stopping.clear()
        await self._consume_channel.set_qos(prefetch_count=self.settings.rabbitmq.prefetch)
        self._consumer_tag = await self._queue.consume(self._on_message)
        if self._heartbeats is not None and self._heartbeat_channel is not None:
            prefetch = self.settings.rabbitmq.heartbeat_prefetch
            await self._heartbeat_channel.set_qos(prefetch_count=prefetch)
            self._beats = HeartbeatConsumer(
                heartbeats or _one_by_one(handler),
                inbound=self._inbound,
                dead_letter=self._dead_letter,
                settle=self._settle,
                max_batch=prefetch,
            )
            self._beats.start()
            self._heartbeat_tag = await self._heartbeats.consume(self._beats.on_message)
        log.info("event bus: consuming %s and %s", self.queue_name, self.heartbeat_queue_name)

    async def stop_consuming(self) -> None:
        self._stopping.set()  # wakes handlers sleeping before a retry
        for queue, tag in ((self._queue, self._consumer_tag), (self._heartbeats, self._heartbeat_tag)):
            if queue is not None and tag is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(queue.cancel(tag), 5.0)
        self._consumer_tag = self._heartbeat_tag = None
        beats, self._beats = self._beats, None
        if beats is not None:
            await beats.stop(STOP_GRACE)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=STOP_GRACE)
            if pending:
                log.warning("event bus: %d handlers still running after %.0fs", len(pending), STOP_GRACE)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._deliver(message)
        except Exception:  # never let a delivery kill the channel's task machinery
            log.exception("event bus: delivery handling failed")
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        handler = self._handler
        if handler is None:  # pragma: no cover - consume() sets it before attaching
            await message.nack(requeue=True)
            return
        inbound = self._inbound(message)
        delay = RETRY_INITIAL
        while True:
            try:
                result = await handler(inbound)
            except Exception as exc:
                log.exception("event handler crashed; message dead-lettered")
                result = HandlerResult(
                    Disposition.DEAD_LETTER, "dead_lettered", f"handler crashed: {type(exc).__name__}: {exc}"
                )
            if result.disposition is not Disposition.RETRY:
                break
            # A transient failure (the database is away): keep the delivery and try again
            # here, backing off. Handing it back (nack) would count a redelivery, and quorum
            # queues dead-letter a message past their delivery limit (20 by default since
            # RabbitMQ 4.0): a long outage would dead-letter valid events. Only a stop hands
            # it back, for another consumer or the next start.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                await self._settle(message.nack(requeue=True), "nack")
                return
            delay = min(delay * 2, RETRY_MAX)
        if result.disposition is Disposition.DEAD_LETTER:
            await self._dead_letter(message, inbound, result.reason)
        else:
            await self._settle(message.ack(), "ack")

    async def _dead_letter(
        self, message: AbstractIncomingMessage, inbound: InboundMessage, reason: str | None
    ) -> None:
        why = (reason or "dead-lettered")[:MAX_REASON_CHARS]
        log.warning(
            "event dead-lettered (%s from %s, id %s): %s",
            inbound.routing_key,
            inbound.exchange,
            message.message_id,
            why,
        )
        headers: dict[str, Any] = {
            **inbound.headers,
            "x-death-reason": why,
            "x-original-routing-key": inbound.routing_key,
            "x-original-exchange": inbound.exchange,
        }
        dead = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
        )
        try:
            if self._dlx is None:
                raise BusUnavailable("not connected to the broker")
            await asyncio.wait_for(
                self._publish_confirmed(self._dlx, dead, inbound.routing_key), PUBLISH_TIMEOUT
            )
        except Exception as exc:
            # Let the broker dead-letter it through the queue's x-dead-letter-exchange
            # (reason lost, x-death kept); if the channel is gone it is redelivered anyway.
            log.error("could not publish to the dead-letter exchange (%s); rejecting instead", exc)
            await self._settle(message.reject(requeue=False), "reject")
            return
        await self._settle(message.ack(), "ack")

    @staticmethod
    async def _settle(op: Awaitable[object], what: str) -> None:
        try:
            await op
        except Exception as exc:  # channel gone: the broker redelivers the message
            log.warning("event bus: could not %s a delivery (%s); it will be redelivered", what, exc)


def _one_by_one(handler: Handler) -> BatchHandler:
    """A batch handler made of a one-message one (the deliveries handled together)."""

    async def one(message: InboundMessage) -> HandlerResult:
        try:
            return await handler(message)
        except Exception as exc:
            log.exception("event handler crashed; message dead-lettered")
            return HandlerResult(Disposition.DEAD_LETTER, "dead_lettered", f"handler crashed: {exc!r}")

    async def handle(messages: Sequence[InboundMessage]) -> list[HandlerResult]:
        return list(await asyncio.gather(*(one(m) for m in messages)))

    return handle
