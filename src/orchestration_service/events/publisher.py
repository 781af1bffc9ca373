"""The outbox relay: turns committed outbox rows into published events.

Exactly one relay per database is the leader (on PostgreSQL a session advisory lock held on
a dedicated connection; SQLite serves one process). The leader

1. gives committed, unsequenced rows the next contiguous ``seq`` numbers (the event log
   order the SSE feed reads), then
2. publishes the rows after its watermark in ``seq`` order with broker confirms, then moves
   the watermark (``relay_progress``) past them.

It wakes at once when a local transaction commits outbox rows, or on PostgreSQL
``NOTIFY`` from another replica's commit, and polls slowly as a safety net. A follower sends
that NOTIFY after its commit, on its own connection, at most one in flight: PostgreSQL
serialises committing transactions that notify (WAL flush included), so a NOTIFY inside
each writing transaction made every commit of the process wait for the one before. A crash
between commit and publish loses nothing: the rows wait until a leader sends them
(at-least-once; consumers deduplicate on the CloudEvent id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from opentelemetry.trace import SpanKind

from orchestration_service import tracing
from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings
from orchestration_service.db import leader as leader_sql
from orchestration_service.db.engine import LOG_CHANNEL, OUTBOX_CHANNEL, Database, Transaction, close_own
from orchestration_service.events.bus import EventBus, OutboundMessage
from orchestration_service.redaction import error_text, reason
from orchestration_service.repositories.outbox.sql import (
    ASSIGN_SEQUENCE_PG,
    MARK_PUBLISHED_PG,
    UNPUBLISHED_PG,
)
from orchestration_service.repositories.storage import unit_of_work

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x0DA75_0002
CLOSE_SECONDS = 1.0  # a graceful close of an own connection, before aborting it
WAKE_LOG_READERS = f"BEGIN; SET LOCAL synchronous_commit = off; NOTIFY {LOG_CHANNEL}; COMMIT"


class OutboxRelay:
    def __init__(self, db: Database, bus: EventBus, settings: Settings) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._leader_conn: Any = None
        self.is_leader = False
        self.published_count = 0
        self._sequence_error: str | None = None
        self._publish_error: str | None = None
        self._publish_wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._publish_conn: Any = None
        self._sequence_lock = asyncio.Lock()
        # One statement at a time on the leader's connection (sequencing, the check).
        self._leader_io = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()
        # Called with each published batch's event names (metrics) and sequences (feed).
        self.on_published: list[Callable[[list[str]], None]] = []
        self.on_sequenced: list[Callable[[], None]] = []
        # A follower's wake-ups for the leader: one task sends them, coalesced.
        self._leader_wake_due = False
        self._leader_waker: asyncio.Task[None] | None = None
        self._wake_conn: Any = None
        db.on_outbox_commit = self.wake

    def wake(self) -> None:
        """Outbox rows were committed in this process: wake the leader's relay."""
        if self.is_leader or not self.db.is_postgres:
            self._wake.set()
            return
        self._leader_wake_due = True
        if self._leader_waker is None or self._leader_waker.done():
            self._leader_waker = asyncio.create_task(self._wake_leader(), name="outbox-wake-leader")

    async def _wake_leader(self) -> None:
        """NOTIFY the leader (perhaps another replica) until no commit is left unannounced.
        Commits during one NOTIFY share the next. A failure is only logged: the leader's
        poll finds the rows all the same."""
        while self._leader_wake_due and not self._stopping:
            self._leader_wake_due = False
            try:
                if self._wake_conn is None or self._wake_conn.is_closed():
                    self._wake_conn = await self.db.connect_own(
                        "orchestration-relay-wake", durable_commits=False
                    )
                await self._wake_conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
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
        wake_conn, self._wake_conn = self._wake_conn, None
        await close_own(wake_conn, CLOSE_SECONDS)

    # -- leadership --------------------------------------------------------------------
    async def _acquire_leadership(self) -> bool:
        if not self.db.is_postgres:
            self.is_leader = True
            self.db.is_relay_leader = True
            return True
        if self.is_leader and self._leader_conn is not None and not self._leader_conn.is_closed():
            return True
        # A follower keeps its candidate connection between attempts: connecting anew each
        # time cost a TLS negotiation per try.
        conn = self._leader_conn
        if conn is None or conn.is_closed():
            conn = await self.db.connect_own("orchestration-relay")
            self._leader_conn = conn
        ev = self.settings.events
        try:
            async with asyncio.timeout(ev.relay_leader_timeout_seconds):
                if not await conn.fetchval(leader_sql.TRY_LOCK, RELAY_LOCK_KEY):
                    # The holder may sit behind a half-open connection, its lock kept alive
                    # on the server: end its session once it has been silent for longer
                    # than a live leader's check allows. The next attempt takes the lock.
                    silent = ev.relay_leader_check_seconds + ev.relay_leader_timeout_seconds
                    if await conn.fetch(leader_sql.END_SILENT_HOLDER, RELAY_LOCK_KEY, silent):
                        log.warning("outbox relay: ended the leader's session, silent for over %.0fs", silent)
                    return False
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self.wake())
        except BaseException:
            self._leader_conn = None
            conn.terminate()  # no graceful close: the network may be what failed
            raise
        self.is_leader = True
        self.db.is_relay_leader = True
        self._watchdog = asyncio.create_task(self._watch_leadership(conn), name="outbox-relay-watchdog")
        log.info("outbox relay: this process is the leader")
        return True

    async def _watch_leadership(self, conn: Any) -> None:
        """Step down when the lock connection stops answering: a leader that cannot reach
        the database must not hold up sequencing and publishing for every replica."""
        ev = self.settings.events
        while True:
            await asyncio.sleep(ev.relay_leader_check_seconds)
            try:
                async with asyncio.timeout(ev.relay_leader_timeout_seconds), self._leader_io:
                    await conn.fetchval(leader_sql.PING)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox relay: the leader connection failed its check (%s); stepping down",
                    type(exc).__name__,
                )
                # Aborted, the connection fails whatever waits on it; the server ends the
                # session (and frees the lock) when it sees the close, its keepalives give up,
                # or a follower ends it as silent.
                conn.terminate()
                await self._release_leadership()
                return

    async def _publish_connection(self) -> Any:
        """The publisher's own connection on PostgreSQL (None on SQLite), opened on demand."""
        if not self.db.is_postgres:
            return None
        if self._publish_conn is None or self._publish_conn.is_closed():
            self._publish_conn = await self.db.connect_own("orchestration-relay-publisher")
        return self._publish_conn

    async def _release_leadership(self) -> None:
        self.is_leader = False
        self.db.is_relay_leader = False
        for name in ("_publisher", "_watchdog"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None and task is not asyncio.current_task():
                await cancel_and_wait(task, "outbox relay " + name.strip("_"))
        publish_conn, self._publish_conn = self._publish_conn, None
        leader_conn, self._leader_conn = self._leader_conn, None
        await close_own(publish_conn, CLOSE_SECONDS)
        await close_own(leader_conn, CLOSE_SECONDS)

    def _lost_leadership(self) -> bool:
        return self.is_leader and self._leader_conn is not None and self._leader_conn.is_closed()

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
                # Autocommit (no BEGIN/COMMIT round trips): only the leader writes the
                # column, and the statement is atomic on its own.
                leader = self._leader_conn if self.is_leader else None
                if leader is not None:
                    # PostgreSQL: on the leader's own connection, so that numbering never
                    # queues for the pool behind busy request and event handlers.
                    async with self._leader_io:
                        status = await leader.execute(ASSIGN_SEQUENCE_PG, batch)
                        sequenced = int(status.rsplit(" ", 1)[-1])
                        if sequenced:
                            # Wakes the event-log readers of every replica: the block is
                            # committed. A wake-up need not be durable, and not waiting for the
                            # WAL flush keeps PostgreSQL's notify lock short.
                            await leader.execute(WAKE_LOG_READERS)
                else:
                    async with self.db.read() as conn:
                        sequenced = await unit_of_work(Transaction(conn)).outbox.assign_sequence(batch)
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
                own = await self._publish_connection()
                if own is not None:
                    rows = await own.fetch(UNPUBLISHED_PG, batch)
                else:
                    async with self.db.read() as conn:
                        rows = await unit_of_work(Transaction(conn)).outbox.unpublished(batch)
                if not rows:
                    return sent
                messages = [OutboundMessage(r["exchange"], r["event_type"], r["envelope"]) for r in rows]
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
                through = rows[-1]["seq"]
                if own is not None:
                    await own.execute(MARK_PUBLISHED_PG, through)
                else:
                    async with self.db.read() as conn:
                        await unit_of_work(Transaction(conn)).outbox.mark_published(through)
                sent += len(rows)
                self.published_count += len(rows)
                names = [r["event_type"] for r in rows]
                for notify in self.on_published:
                    notify(names)
                if len(rows) < batch:
                    return sent

    async def _purge(self) -> None:
        days = self.settings.events.retention_days
        async with self.db.transaction() as tx:
            removed = await unit_of_work(tx).outbox.purge_published_before(timedelta(days=days))
        if removed:
            log.info("event log: removed %d events older than %s days", removed, days)
        # Consumed events' ids: without this the de-duplication table grows for ever.
        days = self.settings.events.processed_retention_days
        async with self.db.transaction() as tx:
            forgotten = await unit_of_work(tx).processed_events.purge_before(timedelta(days=days))
        if forgotten:
            log.info("consumed events: forgot %d ids older than %s days", forgotten, days)
