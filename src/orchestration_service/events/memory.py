"""In-process event bus for the embedded default (memory://).

Topic semantics match RabbitMQ's (`*` one word, `#` zero or more), delivery is
asynchronous through a queue, and poison messages are kept in a dead-letter list.
Nothing survives a restart here, which is why the outbox, not the bus, is the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from orchestration_service.background import cancel_and_wait
from orchestration_service.domain.events import CONSUMED_BINDINGS
from orchestration_service.domain.topics import topic_matches
from orchestration_service.events.bus import (
    BatchHandler,
    Disposition,
    Handler,
    InboundMessage,
    OutboundMessage,
)

log = logging.getLogger(__name__)


class MemoryBus:
    name = "memory"

    def __init__(self, *, keep: int = 10_000) -> None:
        self.published: deque[OutboundMessage] = deque(maxlen=keep)
        self.dead_letters: deque[tuple[InboundMessage, str | None]] = deque(maxlen=keep)
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self._handler: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._bindings = list(CONSUMED_BINDINGS)
        self._listeners: list[asyncio.Queue[OutboundMessage]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.stop_consuming()

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        for msg in messages:
            self.published.append(msg)
            for q in self._listeners:
                q.put_nowait(msg)
            if self._handler is not None and any(
                ex == msg.exchange and topic_matches(pattern, msg.routing_key)
                for ex, pattern in self._bindings
            ):
                await self._queue.put(
                    InboundMessage(
                        body=orjson.dumps(msg.envelope), routing_key=msg.routing_key, exchange=msg.exchange
                    )
                )

    async def inject(self, exchange: str, routing_key: str, envelope: dict[str, Any] | bytes) -> None:
        """Deliver a message as if another service had published it (tests, examples)."""
        body = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
        await self._queue.put(InboundMessage(body=body, routing_key=routing_key, exchange=exchange))

    def listen(self) -> asyncio.Queue[OutboundMessage]:
        q: asyncio.Queue[OutboundMessage] = asyncio.Queue()
        self._listeners.append(q)
        return q

    async def consume(self, handler: Handler, heartbeats: BatchHandler | None = None) -> None:
        # One queue in process: heartbeats take ``handler`` with the rest.
        self._handler = handler
        self._task = asyncio.create_task(self._run(), name="memory-bus-consumer")

    async def _run(self) -> None:
        assert self._handler is not None
        while True:
            msg = await self._queue.get()
            delay = 0.05
            while True:
                try:
                    result = await self._handler(msg)
                except Exception:  # a handler bug must not kill the consumer
                    log.exception("event handler crashed; message dead-lettered")
                    self.dead_letters.append((msg, "handler crashed"))
                    break
                if result.disposition is Disposition.RETRY:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if result.disposition is Disposition.DEAD_LETTER:
                    self.dead_letters.append((msg, result.reason))
                break
            self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every delivered message has been handled (tests)."""
        await self._queue.join()

    async def stop_consuming(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task, "in-process bus consumer")
            self._task = None

    def health(self) -> str:
        return "connected"

    @property
    def consuming(self) -> bool:
        return self._task is not None and not self._task.done()
