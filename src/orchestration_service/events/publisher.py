"""The outbox relay: turns committed outbox rows into published events.

Exactly one relay per database is the leader (how it is chosen, and how relays wake one
another, is the storage's: ``RelayCoordination``, repositories/outbox). The leader

1. gives committed, unsequenced rows the next contiguous ``seq`` numbers (the event log
   order the SSE feed reads), then
2. publishes the rows after its watermark in ``seq`` order with broker confirms, then moves
   the watermark (``relay_progress``) past them.

It wakes at once when a local transaction commits outbox rows, or when a follower (perhaps
another replica) announces its commit, and polls slowly as a safety net. A follower sends
that announcement after its commit, at most one in flight. A crash between commit and
publish loses nothing: the rows wait until a leader sends them
(at-least-once; consumers deduplicate on the CloudEvent id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from opentelemetry.trace import SpanKind

from orchestration_service import tracing
from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings
from orchestration_service.events.bus import EventBus, OutboundMessage
from orchestration_service.redaction import error_text, reason
from orchestration_service.repositories.ports import Storage

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, storage: Storage, bus: EventBus, settings: Settings) -> None:
        self.storage = storage
        self.coordination = storage.relay_coordination()
        self.bus = bus
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.is_leader = False
        self.published_count = 0
        self._sequence_error: str | None = None
        self._publish_error: str | None = None
        self._publish_wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._sequence_lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()
        # Called with each published batch's event names (metrics) and sequences (feed).
        self.on_published: list[Callable[[list[str]], None]] = []
        self.on_sequenced: list[Callable[[], None]] = []
        # Called with True when this process becomes the leader, False when it stops (metrics).
        self.on_leadership: list[Callable[[bool], None]] = []
        # A follower's wake-ups for the leader: one task sends them, coalesced.
        self._leader_wake_due = False
        self._leader_waker: asyncio.Task[None] | None = None
        self.coordination.on_local_commit(self.wake)

    def wake(self) -> None:
        """Outbox rows were committed in this process (or a follower announced some): wake
        the leader's relay."""
        if self.is_leader:
            self._wake.set()
            return
        self._leader_wake_due = True
        if self._leader_waker is None or self._leader_waker.done():
            self._leader_waker = asyncio.create_task(self._wake_leader(), name="outbox-wake-leader")

    async def _wake_leader(self) -> None:
        """Wake the leader (perhaps another replica) until no commit is left unannounced.
        Commits during one announcement share the next. A failure is only logged: the leader's
        poll finds the rows all the same."""
        while self._leader_wake_due and not self._stopping:
            self._leader_wake_due = False
            try:
                await self.coordination.wake_leader()
            except Exception as exc:
                log.debug("outbox relay: could not wake the leader (%s); it polls", exc)
                return

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Publish what is pending (bounded by ``flush_timeout``), then stop."""
        self._stopping = True
        if self.is_leader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), flush_timeout)
        for task in (self._task, self._publisher, self._leader_waker):
            if task is not None:
                await cancel_and_wait(task, "outbox relay")
        await self._release_leadership()
        await self.coordination.close()

    # -- leadership --------------------------------------------------------------------
    async def _acquire_leadership(self) -> bool:
        if self.is_leader and self.coordination.leading:
            return True
        ev = self.settings.events
        # A leader silent for longer than a live leader's check allows is ended (it may sit
        # behind a half-open connection, its hold kept alive); the next attempt leads.
        silent = ev.relay_leader_check_seconds + ev.relay_leader_timeout_seconds
        timeout = ev.relay_leader_timeout_seconds
        if not await self.coordination.try_lead(self.wake, silent_after=silent, timeout=timeout):
            return False
        self.is_leader = True
        for hook in self.on_leadership:
            hook(True)
        self._watchdog = asyncio.create_task(self._watch_leadership(), name="outbox-relay-watchdog")
        log.info("outbox relay: this process is the leader")
        return True

    async def _watch_leadership(self) -> None:
        """Step down when the leadership stops answering: a leader that cannot reach the
        database must not hold up sequencing and publishing for every replica."""
        ev = self.settings.events
        while True:
            await asyncio.sleep(ev.relay_leader_check_seconds)
            try:
                async with asyncio.timeout(ev.relay_leader_timeout_seconds):
                    await self.coordination.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox relay: the leader connection failed its check (%s); stepping down",
                    type(exc).__name__,
                )
                self.coordination.abandon()
                await self._release_leadership()
                return

    async def _release_leadership(self) -> None:
        self.is_leader = False
        for hook in self.on_leadership:
            hook(False)
        for name in ("_publisher", "_watchdog"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None and task is not asyncio.current_task():
                await cancel_and_wait(task, "outbox relay " + name.strip("_"))
        await self.coordination.step_down()

    def _lost_leadership(self) -> bool:
        return self.is_leader and not self.coordination.leading

    # -- the loops ---------------------------------------------------------------------
    # The leader runs two: this one numbers committed rows (the event log the SSE feed
    # reads), the publisher task sends numbered rows to the broker. Apart, a slow batch of
    # broker confirms does not hold back the feed.
    async def _run(self) -> None:
        ev = self.settings.events
        backoff = 0.1
        last_purge = 0.0
        while not self._stopping:
            try:
                if self._lost_leadership():
                    log.warning("outbox relay: lost the leader connection")
                    await self._release_leadership()
                if not self.is_leader and not await self._acquire_leadership():
                    # A follower tries again on a timer: local commits wake the leader's
                    # relay (through NOTIFY), not this one.
                    await asyncio.sleep(ev.relay_poll_seconds)
                    self._wake.clear()
                    continue
                if self._publisher is None or self._publisher.done():
                    self._publisher = asyncio.create_task(self._publish_loop(), name="outbox-publisher")
                await self._sequence_pending()
                if time.monotonic() - last_purge > 60:
                    last_purge = time.monotonic()
                    await self._purge()
                backoff = 0.1
                self._sequence_error = None
                await self._sleep(ev.relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down: keep the rows, retry
                self._sequence_error = reason(exc)  # classified: /health/detailed shows it
                log.warning("outbox relay: %s; retrying in %.1fs", error_text(exc), backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._publish_pending()
                backoff = 0.1
                self._publish_error = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._publish_wake.wait(), self.settings.events.relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database down: the rows stay, retried
                self._publish_error = reason(exc)
                log.warning("outbox relay: %s; retrying in %.1fs", error_text(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    @property
    def last_error(self) -> str | None:
        return self._publish_error or self._sequence_error

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def drain(self) -> int:
        """Sequence and publish until nothing is pending. Returns events published."""
        sent = 0
        while True:
            sequenced = await self._sequence_pending()
            published = await self._publish_pending()
            sent += published
            if not sequenced and not published:
                return sent

    async def _sequence_pending(self) -> int:
        """Number every committed, unnumbered row; returns how many."""
        batch = self.settings.events.relay_batch_size
        total = 0
        async with self._sequence_lock:  # numbers are handed out by one caller at a time
            while True:
                self._wake.clear()  # a commit from here on wakes the loop again
                # On the leadership's own hold where the backend has one, so that numbering
                # never queues for the pool behind busy request and event handlers.
                sequenced = await self.coordination.assign_sequence(batch)
                if not sequenced:
                    return total
                total += sequenced
                for cb in self.on_sequenced:
                    cb()
                self._publish_wake.set()
                if sequenced < batch:
                    return total

    async def _publish_pending(self) -> int:
        """Publish numbered, unpublished rows in order until none is left; returns how many."""
        batch = self.settings.events.relay_batch_size
        sent = 0
        async with self._publish_lock:
            while True:
                self._publish_wake.clear()  # rows numbered from here on wake the loop again
                rows = await self.coordination.unpublished(batch)
                if not rows:
                    return sent
                messages = [OutboundMessage(r.exchange, r.event_type, r.envelope) for r in rows]
                with contextlib.ExitStack() as spans:
                    for m in messages if tracing.is_recording() else ():
                        # One PRODUCER span per event, child of what caused it.
                        spans.enter_context(
                            tracing.span(
                                f"publish {m.routing_key}",
                                parent_traceparent=m.envelope.get("traceparent"),
                                kind=SpanKind.PRODUCER,
                                attributes={"messaging.message.id": m.envelope.get("id", "")},
                            )
                        )
                    await self.bus.publish(messages)  # BusUnavailable: the rows stay, retried
                await self.coordination.mark_published(rows[-1].seq)
                sent += len(rows)
                self.published_count += len(rows)
                names = [r.event_type for r in rows]
                for notify in self.on_published:
                    notify(names)
                if len(rows) < batch:
                    return sent

    async def _purge(self) -> None:
        days = self.settings.events.retention_days
        async with self.storage.transaction() as uow:
            removed = await uow.outbox.purge_published_before(timedelta(days=days))
        if removed:
            log.info("event log: removed %d events older than %s days", removed, days)
        # Consumed events' ids: without this the de-duplication table grows for ever.
        days = self.settings.events.processed_retention_days
        async with self.storage.transaction() as uow:
            forgotten = await uow.processed_events.purge_before(timedelta(days=days))
        if forgotten:
            log.info("consumed events: forgot %d ids older than %s days", forgotten, days)
