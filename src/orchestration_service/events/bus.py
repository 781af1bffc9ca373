"""The event bus port. Two adapters implement it: in-process (memory://) and RabbitMQ."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    exchange: str
    routing_key: str  # the event name, e.g. task.ready.small
    envelope: dict[str, Any]  # the whole CloudEvent (structured mode)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    body: bytes
    routing_key: str
    exchange: str
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False


class Disposition(enum.Enum):
    ACK = "ack"  # processed, duplicate or ignored
    DEAD_LETTER = "dead_letter"  # poison: will never succeed
    RETRY = "retry"  # transient failure (database down): try again later


@dataclass(frozen=True, slots=True)
class HandlerResult:
    disposition: Disposition
    outcome: str  # processed | duplicate | ignored | dead_lettered | retry
    reason: str | None = None


Handler = Callable[[InboundMessage], Awaitable[HandlerResult]]
# Messages that arrived together (heartbeats), one result each, in order.
BatchHandler = Callable[[Sequence[InboundMessage]], Awaitable[list[HandlerResult]]]


class BusUnavailable(Exception):
    """The broker cannot be reached or did not confirm a publish."""


class EventBus(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish and wait for the broker's confirms; raise BusUnavailable if any failed."""
        ...

    async def consume(self, handler: Handler, heartbeats: BatchHandler | None = None) -> None:
        """Attach the service's consumer (queue `orchestration-events`); ``heartbeats``, where
        the adapter has a queue of them, takes its deliveries in batches (else ``handler``)."""
        ...

    async def stop_consuming(self) -> None: ...

    def health(self) -> str:
        """connected | degraded | disconnected"""
        ...

    @property
    def consuming(self) -> bool: ...
