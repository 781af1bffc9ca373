"""The consumer of ``<queue>.heartbeats``: deliveries taken in batches.

A delivery callback only queues the message; one loop takes what has arrived (up to
``max_batch``, waiting up to ``BATCH_WINDOW`` for more when fewer are there), hands it to the
``BatchHandler`` and settles it: dead letters one by one (with their reason), the rest with a
single ``ack(multiple=True)``, which is sound because this loop alone settles the deliveries
of its channel, in the order they came. A transient failure (database away) keeps the
deliveries and tries them again, backing off, as the main consumer does; a stop hands the
unsettled ones back to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from orchestration_service.events.bus import BatchHandler, Disposition, HandlerResult, InboundMessage

log = logging.getLogger(__name__)

# Seconds a batch waits for more deliveries when fewer than max_batch are there. Most of a
# batch's cost is per batch (a statement, a transaction for the workers, a span, an ack, the
# loop's wake-ups), so a longer window makes a heartbeat cheaper: at 1,000 reports/s through
# RabbitMQ the service spent ~200 µs of CPU per report with 5 ms, ~150 with 50 ms, ~135 with
# 100 ms (bench: ``python -m bench.events progress --broker amqp``). A report is kept at most
# this much later; heartbeat timeouts are seconds long. Nothing is acked before it is written.
BATCH_WINDOW = 0.1
RETRY_INITIAL = 0.2
RETRY_MAX = 10.0

DeadLetter = Callable[[AbstractIncomingMessage, InboundMessage, "str | None"], Awaitable[None]]
Settle = Callable[[Awaitable[object], str], Awaitable[None]]


class HeartbeatConsumer:
    def __init__(
        self,
        handler: BatchHandler,
        *,
        inbound: Callable[[AbstractIncomingMessage], InboundMessage],
        dead_letter: DeadLetter,
        settle: Settle,
        max_batch: int,
    ) -> None:
        self.handler = handler
        self.inbound = inbound
        self.dead_letter = dead_letter
        self.settle = settle
        self.max_batch = max(1, max_batch)
        self._buffer: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()  # max_batch deliveries in hand (or stopping): no more waiting
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="heartbeat-consumer")

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._buffer.append(message)
        self._arrived.set()
        if len(self._buffer) >= self.max_batch:
            self._full.set()

    async def stop(self, grace: float) -> None:
        """Finish the batch in hand (within ``grace``), hand the waiting deliveries back."""
        self._stopping.set()
        self._arrived.set()
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            _done, pending = await asyncio.wait({task}, timeout=grace)
            if pending:
                log.warning("event bus: heartbeats still being handled after %.0fs", grace)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        waiting, self._buffer = self._buffer, []
        for message in waiting:
            await self.settle(message.nack(requeue=True), "nack")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._arrived.wait()
            if self._stopping.is_set():
                return
            if len(self._buffer) < self.max_batch:
                # A full batch goes at once: the prefetch is max_batch, so no more would come.
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), BATCH_WINDOW)
            batch = self._buffer[: self.max_batch]
            del self._buffer[: self.max_batch]
            if not self._buffer:
                self._arrived.clear()
            if batch:
                try:
                    await self._handle(batch)
                except Exception:  # never let one batch end the loop
                    log.exception("event bus: heartbeat batch handling failed")

    async def _handle(self, batch: list[AbstractIncomingMessage]) -> None:
        inbound = [self.inbound(m) for m in batch]
        todo = list(range(len(batch)))
        acked: list[int] = []
        delay = RETRY_INITIAL
        while todo:
            try:
                results = await self.handler([inbound[i] for i in todo])
            except Exception as exc:
                log.exception("heartbeat handler crashed; the batch is dead-lettered")
                why = f"handler crashed: {type(exc).__name__}: {exc}"
                results = [HandlerResult(Disposition.DEAD_LETTER, "dead_lettered", why)] * len(todo)
            retry: list[int] = []
            for i, result in zip(todo, results, strict=True):
                if result.disposition is Disposition.RETRY:
                    retry.append(i)
                elif result.disposition is Disposition.DEAD_LETTER:
                    await self.dead_letter(batch[i], inbound[i], result.reason)
                else:
                    acked.append(i)
            todo = retry
            if todo:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    for i in todo:
                        await self.settle(batch[i].nack(requeue=True), "nack")
                    break
                delay = min(delay * 2, RETRY_MAX)
        if acked:
            # Every earlier delivery of this channel is settled by now: one ack for them all.
            await self.settle(batch[max(acked)].ack(multiple=True), "ack")
