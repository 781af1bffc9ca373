"""The outbox relay: turns committed outbox rows into published events.

Exactly one relay per database is the leader (on PostgreSQL a session advisory lock held on
a dedicated connection; SQLite serves one process). The leader

1. gives committed, unsequenced rows the next contiguous ``seq`` numbers (the event log
   order the SSE feed reads), then
2. publishes unpublished rows in ``seq`` order with broker confirms and marks them sent.

It wakes at once when a local transaction commits outbox rows, or on PostgreSQL
``NOTIFY`` from another replica's commit, and polls slowly as a safety net. A crash
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

import asyncpg
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import make_url

from orchestration_service import tracing
from orchestration_service.config import Settings
from orchestration_service.db.engine import LOG_CHANNEL, OUTBOX_CHANNEL, Database
from orchestration_service.events.bus import EventBus, OutboundMessage
from orchestration_service.repositories.outbox import OutboxRepository

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x0DA75_0002


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
        self.last_error: str | None = None
        # Called with each published batch's event names (metrics) and sequences (feed).
        self.on_published: list[Callable[[list[str]], None]] = []
        self.on_sequenced: list[Callable[[], None]] = []
        db.on_outbox_commit = self.wake

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Publish what is pending (bounded by ``flush_timeout``), then stop."""
        self._stopping = True
        if self.is_leader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), flush_timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release_leadership()

    # -- leadership --------------------------------------------------------------------
    async def _acquire_leadership(self) -> bool:
        if not self.db.is_postgres:
            self.is_leader = True
            self.db.is_relay_leader = True
            return True
        if self._leader_conn is not None and not self._leader_conn.is_closed():
            return self.is_leader
        dsn = make_url(self.db.engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, server_settings={"application_name": "orchestration-relay"})
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY)
            if not got:
                await conn.close()
                return False
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self.wake())
        except BaseException:
            await conn.close()
            raise
        self._leader_conn = conn
        self.is_leader = True
        self.db.is_relay_leader = True
        log.info("outbox relay: this process is the leader")
        return True

    async def _release_leadership(self) -> None:
        self.is_leader = False
        self.db.is_relay_leader = False
        if self._leader_conn is not None:
            with contextlib.suppress(Exception):
                await self._leader_conn.close()
            self._leader_conn = None

    def _lost_leadership(self) -> bool:
        return self._leader_conn is not None and self._leader_conn.is_closed()

    # -- the loop ----------------------------------------------------------------------
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
                    await self._sleep(ev.relay_poll_seconds)
                    continue
                await self.drain()
                if time.monotonic() - last_purge > 60:
                    last_purge = time.monotonic()
                    await self._purge()
                backoff = 0.1
                self.last_error = None
                await self._sleep(ev.relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or broker down: keep the rows, retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay: %s; retrying in %.1fs", self.last_error, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def drain(self) -> int:
        """Sequence and publish until nothing is pending. Returns events published."""
        batch = self.settings.events.relay_batch_size
        sent = 0
        while True:
            self._wake.clear()
            # Single statements in autocommit (no BEGIN/COMMIT round trips): only the leader
            # writes these columns, and each statement is atomic on its own.
            async with self.db.read() as conn:
                sequenced = await OutboxRepository(conn).assign_sequence(batch)
                if sequenced and self.db.is_postgres:
                    # Wakes the event-log readers of every replica: the block is committed.
                    await conn.exec_driver_sql(f"NOTIFY {LOG_CHANNEL}")
            if sequenced:
                for cb in self.on_sequenced:
                    cb()
            async with self.db.read() as conn:
                rows = await OutboxRepository(conn).unpublished(batch)
            if rows:
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
                    await self.bus.publish(messages)  # BusUnavailable: rows stay, _run retries
                async with self.db.read() as conn:
                    await OutboxRepository(conn).mark_published([r["id"] for r in rows])
                sent += len(rows)
                self.published_count += len(rows)
                names = [r["event_type"] for r in rows]
                for notify in self.on_published:
                    notify(names)
            if not sequenced and not rows:
                return sent

    async def _purge(self) -> None:
        days = self.settings.events.retention_days
        async with self.db.transaction() as tx:
            removed = await OutboxRepository(tx.conn).purge_published_before(timedelta(days=days))
        if removed:
            log.info("event log: removed %d events older than %s days", removed, days)
