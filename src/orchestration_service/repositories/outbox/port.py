"""What the use cases may ask of the outbox: events written with the state change,
published after commit, kept as the ordered event log (``seq``) that the feed reads.

Three ports. :class:`OutboxRepository` works inside a unit of work. The relay's
:class:`RelayCoordination` and the feed's :class:`LogFeed` are not per transaction: they
hold what one background loop needs across many (leadership, wake-ups, connections of
their own), and come from the storage (``Storage.relay_coordination()``, ``log_feed()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from orchestration_service.domain.events import OutgoingEvent


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One numbered event of the log, as the feeds read it."""

    seq: int
    event_type: str
    subject: str | None
    project_id: str | None
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnpublishedEvent:
    """A numbered event the relay has still to publish."""

    id: int
    seq: int
    event_type: str
    exchange: str
    envelope: dict[str, Any]


class OutboxRepository(Protocol):
    async def add(self, events: Sequence[OutgoingEvent]) -> None:
        """Write events in the caller's unit of work: they leave only once it commits."""
        ...

    async def assign_sequence(self, limit: int) -> int:
        """Give committed, unsequenced rows the next contiguous ``seq`` numbers, in ``id``
        order. Only the relay leader calls this (one at a time), so the numbers never skip
        and a reader that has seen ``seq = n`` has seen every row up to ``n``."""
        ...

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        """Numbered rows not yet published, in ``seq`` order."""
        ...

    async def mark_published(self, through_seq: int) -> None:
        """Every row up to ``through_seq`` was published (never moves back)."""
        ...

    async def read_log(self, after: int, limit: int) -> Sequence[LogEntry]:
        """Numbered rows after ``after``, in ``seq`` order."""
        ...

    async def last_seq(self) -> int: ...

    async def pending_stats(self) -> tuple[int, float]:
        """(events not yet published, age in seconds of the oldest of them)."""
        ...

    async def purge_published_before(self, retention: timedelta, limit: int = 10_000) -> int: ...


class RelayCoordination(Protocol):
    """One relay's hold on the database: at most one relay per database leads (numbers and
    publishes); the others follow and wake it. The leader's numbering and publishing run
    here, on what the leadership holds, never queueing behind request handlers.

    Used by one relay (one task at a time per method group); a new one per relay."""

    def on_local_commit(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` after every commit of this process that wrote outbox rows."""
        ...

    async def try_lead(
        self, on_wake: Callable[[], None], *, silent_after: float, timeout: float | None = None
    ) -> bool:
        """Become the leader unless another relay is. While leading, ``on_wake`` is called
        whenever a follower (perhaps in another process) announces committed rows.

        False while another leads; a leader that has shown no sign of life for longer than
        ``silent_after`` seconds (behind a half-open connection) is ended, so that a later
        try succeeds. ``timeout`` bounds the attempt's statements (TimeoutError), not the
        connecting, which has its own bound. Cancelled or failed, the attempt leaves
        nothing held."""
        ...

    @property
    def leading(self) -> bool:
        """Whether the leadership is still held (False once its hold was lost or given up)."""
        ...

    async def check(self) -> None:
        """Show the leadership still holds (raises when it does not answer); the caller
        bounds it in time and calls :meth:`abandon` when it fails."""
        ...

    def abandon(self) -> None:
        """Drop the leadership's hold at once, without waiting on the network (which may be
        what failed); :meth:`step_down` then tidies up."""
        ...

    async def step_down(self) -> None:
        """Give up the leadership (and everything held for it); a no-op for a follower."""
        ...

    async def wake_leader(self) -> None:
        """A follower's announcement that it committed outbox rows, to the leader."""
        ...

    async def assign_sequence(self, limit: int) -> int:
        """As :meth:`OutboxRepository.assign_sequence`, by the leader, in autocommit; when
        it numbered rows, every process's :class:`LogFeed` listeners are woken."""
        ...

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        """As :meth:`OutboxRepository.unpublished`, for the leader's publisher."""
        ...

    async def mark_published(self, through_seq: int) -> None:
        """As :meth:`OutboxRepository.mark_published`, for the leader's publisher."""
        ...

    async def close(self) -> None:
        """Step down and release whatever a follower held (its wake-up channel)."""
        ...


class LogFeed(Protocol):
    """How one process's event-log fan-out learns of, and reads, newly numbered entries."""

    async def listen(self, on_new: Callable[[], None]) -> None:
        """From now on call ``on_new`` when a relay leader, in any process, numbers entries.
        Idempotent: called again after :meth:`close` (a failure), it listens anew."""
        ...

    async def read(self, after: int, limit: int) -> Sequence[LogEntry]:
        """As :meth:`OutboxRepository.read_log`, bounded in time, never queueing behind
        request handlers where the backend allows."""
        ...

    async def close(self) -> None: ...
