"""What the use cases may ask of the outbox: events written with the state change,
published after commit, kept as the ordered event log (``seq``) that the feed reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from orchestration_service.domain.events import OutgoingEvent


class OutboxRepository(Protocol):
    async def add(self, events: Sequence[OutgoingEvent]) -> None:
        """Write events in the caller's unit of work: they leave only once it commits."""
        ...

    async def assign_sequence(self, limit: int) -> int:
        """Give committed, unsequenced rows the next contiguous ``seq`` numbers, in ``id``
        order. Only the relay leader calls this (one at a time), so the numbers never skip
        and a reader that has seen ``seq = n`` has seen every row up to ``n``."""
        ...

    async def unpublished(self, limit: int) -> Sequence[Mapping[str, Any]]:
        """Numbered rows not yet published, in ``seq`` order."""
        ...

    async def mark_published(self, through_seq: int) -> None:
        """Every row up to ``through_seq`` was published (never moves back)."""
        ...

    async def read_log(self, after: int, limit: int) -> Sequence[Mapping[str, Any]]: ...

    async def last_seq(self) -> int: ...

    async def pending_stats(self) -> tuple[int, float]:
        """(events not yet published, age in seconds of the oldest of them)."""
        ...

    async def purge_published_before(self, retention: timedelta, limit: int = 10_000) -> int: ...
