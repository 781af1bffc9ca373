"""The relay's and the feed's paths on PostgreSQL: plain asyncpg connections of their own
(``Database.connect_own``), which never queue for the request pool.

Leadership is a session advisory lock, held by the leader's connection: it goes when the
session ends. A half-open connection keeps the session (and the lock) alive on the server
until its TCP keepalives give up, so a candidate also ends a leader session that has shown
no activity for longer than the leader's own check allows (the leader runs ``SELECT 1`` on
it every few seconds). Wake-ups cross processes as ``NOTIFY``: a follower's committed rows
wake the leader (``OUTBOX_CHANNEL``), the leader's numbered rows wake every process's feed
(``LOG_CHANNEL``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import asyncpg

from orchestration_service.db.engine import LOG_CHANNEL, OUTBOX_CHANNEL, Database, close_own
from orchestration_service.repositories.outbox.port import LogEntry, UnpublishedEvent
from orchestration_service.repositories.outbox.sql import MARK_PUBLISHED, autocommit

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x0DA75_0002
CLOSE_SECONDS = 1.0  # a graceful close of an own connection, before aborting it

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
PING = "SELECT 1"
# The lock's holder when its session has been silent (no statement started or ended) for
# longer than $2 seconds. A bigint advisory key shows in pg_locks as classid (high 32 bits),
# objid (low 32 bits) and objsubid 1.
END_SILENT_HOLDER = """
SELECT pg_terminate_backend(a.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
  AND a.pid <> pg_backend_pid()
  AND a.state_change < now() - make_interval(secs => $2::float8)
"""
# The outbox statements of ``sql.py``, as text for plain asyncpg connections.
READ_LOG = (
    "SELECT seq, event_type, subject, project_id, envelope FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2"
)
ASSIGN_SEQUENCE = """
UPDATE outbox SET seq = (SELECT coalesce(max(seq), 0) FROM outbox) + pending.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
      FROM outbox WHERE seq IS NULL ORDER BY id LIMIT $1) AS pending
WHERE outbox.id = pending.id
"""
UNPUBLISHED = (
    "SELECT id, seq, event_type, exchange, envelope FROM outbox"
    " WHERE seq > coalesce((SELECT published_seq FROM relay_progress WHERE id = 1), 0)"
    " ORDER BY seq LIMIT $1"
)
MARK_PUBLISHED_PG = MARK_PUBLISHED.format(seq="$1")
# A wake-up need not be durable: not waiting for the WAL flush keeps PostgreSQL's notify
# lock short.
WAKE_LOG_READERS = f"BEGIN; SET LOCAL synchronous_commit = off; NOTIFY {LOG_CHANNEL}; COMMIT"


class PostgresRelayCoordination:
    def __init__(self, db: Database) -> None:
        self.db = db
        # The lock's session while leading; a follower keeps its candidate connection
        # between attempts (connecting anew each time cost a TLS negotiation per try).
        self._leader: asyncpg.Connection | None = None
        self._leading = False
        self._publisher: asyncpg.Connection | None = None
        self._waker: asyncpg.Connection | None = None
        # One statement at a time on the leader's connection (numbering, the check).
        self._leader_io = asyncio.Lock()

    def on_local_commit(self, wake: Callable[[], None]) -> None:
        self.db.on_outbox_commit = wake

    async def try_lead(
        self, on_wake: Callable[[], None], *, silent_after: float, timeout: float | None = None
    ) -> bool:
        if self.leading:
            return True
        conn = self._leader
        if conn is None or conn.is_closed():
            conn = self._leader = await self.db.connect_own("orchestration-relay")
        try:
            async with asyncio.timeout(timeout):
                if not await conn.fetchval(TRY_LOCK, RELAY_LOCK_KEY):
                    # The holder may sit behind a half-open connection, its lock kept alive
                    # on the server: end its session once it has been silent for too long.
                    if await conn.fetch(END_SILENT_HOLDER, RELAY_LOCK_KEY, silent_after):
                        log.warning(
                            "outbox relay: ended the leader's session, silent for over %.0fs", silent_after
                        )
                    return False
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: on_wake())
        except BaseException:
            self._leader = None
            conn.terminate()  # no graceful close: the network may be what failed
            raise
        self._leading = True
        return True

    @property
    def leading(self) -> bool:
        return self._leading and self._leader is not None and not self._leader.is_closed()

    async def check(self) -> None:
        conn = self._leader
        if not self._leading or conn is None:
            raise ConnectionError("not leading")
        async with self._leader_io:
            await conn.fetchval(PING)

    def abandon(self) -> None:
        # Aborted, the connection fails whatever waits on it; the server ends the session
        # (and frees the lock) when it sees the close, its keepalives give up, or a
        # candidate ends it as silent.
        if self._leader is not None:
            self._leader.terminate()

    async def step_down(self) -> None:
        self._leading = False
        publisher, self._publisher = self._publisher, None
        leader, self._leader = self._leader, None
        await close_own(publisher, CLOSE_SECONDS)
        await close_own(leader, CLOSE_SECONDS)

    async def wake_leader(self) -> None:
        # Its own connection, outside any transaction: PostgreSQL serialises committing
        # transactions that notify (WAL flush included), so a NOTIFY inside each writing
        # transaction made every commit of the process wait for the one before.
        if self._waker is None or self._waker.is_closed():
            self._waker = await self.db.connect_own("orchestration-relay-wake", durable_commits=False)
        await self._waker.execute(f"NOTIFY {OUTBOX_CHANNEL}")

    async def assign_sequence(self, limit: int) -> int:
        conn = self._leader if self._leading else None
        if conn is None:  # stepped down meanwhile: one statement on the pool
            async with autocommit(self.db) as outbox:
                return await outbox.assign_sequence(limit)
        # Autocommit (no BEGIN/COMMIT round trips): only the leader writes the column, and
        # the statement is atomic on its own.
        async with self._leader_io:
            status = await conn.execute(ASSIGN_SEQUENCE, limit)
            sequenced = int(status.rsplit(" ", 1)[-1])
            if sequenced:
                await conn.execute(WAKE_LOG_READERS)  # the block is committed
        return sequenced

    async def _publish_connection(self) -> asyncpg.Connection:
        if self._publisher is None or self._publisher.is_closed():
            self._publisher = await self.db.connect_own("orchestration-relay-publisher")
        return self._publisher

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        rows = await (await self._publish_connection()).fetch(UNPUBLISHED, limit)
        return [UnpublishedEvent(*row) for row in rows]

    async def mark_published(self, through_seq: int) -> None:
        await (await self._publish_connection()).execute(MARK_PUBLISHED_PG, through_seq)

    async def close(self) -> None:
        await self.step_down()
        waker, self._waker = self._waker, None
        await close_own(waker, CLOSE_SECONDS)


class PostgresLogFeed:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: asyncpg.Connection | None = None

    async def listen(self, on_new: Callable[[], None]) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        conn = await self.db.connect_own("orchestration-feed")
        try:
            await conn.add_listener(LOG_CHANNEL, lambda *_: on_new())
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def read(self, after: int, limit: int) -> Sequence[LogEntry]:
        conn = self._conn
        if conn is None or conn.is_closed():
            async with autocommit(self.db) as outbox:
                return await outbox.read_log(after, limit)
        # The listening connection reads too: under load the fan-out does not queue for the
        # pool behind request handlers (it did, and the feed fell seconds behind). Bounded
        # like a pooled statement: a silent connection is given up (and a new one opened)
        # in seconds, not after the own connections' longer statement timeout.
        bound = self.db.own_settings.pool_statement_timeout_seconds
        rows = await conn.fetch(READ_LOG, after, limit, timeout=bound + 1 if bound else None)
        return [LogEntry(*row) for row in rows]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        await close_own(conn)  # aborted when the network does not answer
