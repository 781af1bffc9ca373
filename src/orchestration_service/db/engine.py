"""Engine construction and the unit of work.

One use case = one ``async with db.transaction() as tx``: it commits once on success,
rolls back on error, and only after a commit runs the hooks the work registered (wake
the outbox relay, notify listeners). Events never leave before their transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from orchestration_service import tracing
from orchestration_service.config import StorageSettings
from orchestration_service.db.errors import is_connection_lost

log = logging.getLogger(__name__)

POOL_CLOSE_SECONDS = 5.0
# Pool record flag: its connection was ended mid-BEGIN (``Transaction.driver``); replace it.
STALE = "orchestration_stale"
COMMAND_TIMEOUT_MARGIN = 1.0  # seconds past the server's statement timeout (``command_timeout``)
OUTBOX_CHANNEL = "orch_outbox"  # a commit wrote outbox rows: wake the relay leader
LOG_CHANNEL = "orch_event_log"  # the leader sequenced rows: wake the event-log readers
PROJECTS_CHANNEL = "orch_projects"  # a project's settings or archive state changed: forget it


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSON columns in and out as Python values, as SQLAlchemy gives them (the service's own
    asyncpg connections and the hot paths' pool)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset (a round trip per use): the hot paths'
    statements are single autocommit statements that leave no session state behind."""


class Transaction:
    """A connection inside one transaction, plus after-commit hooks."""

    __slots__ = ("_after_commit", "conn", "dialect", "wrote_outbox")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._after_commit: list[Callable[[], None]] = []
        self.wrote_outbox = False

    def mark_outbox_written(self) -> None:
        # No NOTIFY in here: PostgreSQL serialises every committing transaction that
        # notifies, WAL flush included, on one lock. The relay is woken after the commit
        # instead (``Database.on_outbox_commit``), from outside the transaction.
        self.wrote_outbox = True

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    async def driver(self) -> asyncpg.Connection:
        """PostgreSQL: the asyncpg connection under this transaction, for hand-written
        statements (repositories.tasks.pg_statements) that join it."""
        raw = await self.conn.get_raw_connection()
        adapted: Any = raw.dbapi_connection
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: when a
        # hand-written one comes first, begin here, through the adapter, so that SQLAlchemy's
        # COMMIT or ROLLBACK covers it (else it would run, and stay, in autocommit).
        if adapted._transaction is None and adapted.isolation_level != "autocommit":
            try:
                await adapted._start_transaction()
            except Exception:
                # BEGIN fails on a dropped connection (the database restarted). Called
                # directly, the adapter's error does not reach SQLAlchemy, which would hand
                # the dead connection out again and again: invalidated, it is replaced.
                await self.conn.invalidate()
                raise
            except BaseException:
                # Cancelled around BEGIN: the server may be in the transaction while neither
                # SQLAlchemy nor the adapter will ever end it, and asyncpg would nest every
                # later unit of work on this connection in it as a SAVEPOINT (nothing ever
                # committed, every lock kept). Nothing can be awaited here: end the session
                # now (the server rolls back); the pool replaces it at its next checkout.
                raw.info[STALE] = True
                if raw.driver_connection is not None:
                    raw.driver_connection.terminate()
                raise
        driver: asyncpg.Connection = raw.driver_connection
        return driver

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._after_commit.append(hook)


class Database:
    def __init__(
        self, engine: AsyncEngine, *, fast_pool_size: int = 0, storage: StorageSettings | None = None
    ) -> None:
        self.engine = engine
        # Keepalives and timeouts of the service's own connections (``connect_own``).
        self.own_settings = storage or StorageSettings()
        # PostgreSQL: a plain asyncpg pool for the hottest statements (repositories.tasks.postgres),
        # opened by ``open``; None on SQLite or when not asked for.
        self.pg: asyncpg.Pool | None = None
        self._fast_pool_size = fast_pool_size
        self._read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.is_postgres = engine.dialect.name == "postgresql"
        # Set by the outbox relay: called after any commit that wrote outbox rows.
        self.on_outbox_commit: Callable[[], None] = lambda: None
        # What the storage's parts share within this process, keyed by module (SQLite: the
        # relay's leadership and wake-ups, repositories.outbox.sqlite).
        self.in_process: dict[str, object] = {}
        self._ping_conn: asyncpg.Connection | None = None  # PostgreSQL: see ``ping``
        self._ping_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Transaction]:
        if not tracing.has_active_span():
            # Background work starts no trace of its own here; its task spans say whose it is.
            async with self._transaction(write) as tx:
                yield tx
            return
        with tracing.span("db.transaction", attributes={"db.system": self.engine.dialect.name}):
            async with self._transaction(write) as tx:
                yield tx

    @contextlib.asynccontextmanager
    async def _transaction(self, write: bool) -> AsyncIterator[Transaction]:
        async with self.engine.connect() as conn:
            if not self.is_postgres:
                # SQLite: take the write lock up front, so two writers queue on
                # busy_timeout instead of failing when a read lock is upgraded.
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE" if write else "DEFERRED")
            async with conn.begin():
                tx = Transaction(conn)
                async with self._drop_if_lost(conn):
                    yield tx
            if tx.wrote_outbox:
                self.on_outbox_commit()
            for hook in tx._after_commit:
                hook()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, in autocommit: each statement is one round trip, with
        no BEGIN/ROLLBACK around it. (Several statements do not share one snapshot.)"""
        async with self._read_engine.connect() as conn, self._drop_if_lost(conn):
            yield conn

    @contextlib.asynccontextmanager
    async def _drop_if_lost(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """A connection that stopped answering (a statement's client-side timeout, a reset)
        is discarded at once: rolling it back first would wait for it once more."""
        try:
            yield
        except BaseException as exc:
            if self.is_postgres and not conn.invalidated and is_connection_lost(exc):
                with contextlib.suppress(Exception):
                    raw = await conn.get_raw_connection()
                    # Aborted first: SQLAlchemy's invalidation tries a graceful close, which
                    # on a silent connection waits (2 s) for an answer that never comes.
                    raw.driver_connection.terminate()  # type: ignore[union-attr]
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            raise

    def _driver_dsn(self) -> str:
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def open(self) -> None:
        if self.is_postgres and self._fast_pool_size and self.pg is None:
            own = self.own_settings

            async def init(conn: asyncpg.Connection) -> None:
                _client_keepalives(conn, own)
                await init_connection(conn)

            # The same protections as every connection (half-open ones fail within the
            # statement timeout and are replaced); the acquire timeout is the callers'
            # (``PostgresHotPaths``), as asyncpg's pool has no default one.
            self.pg = await asyncpg.create_pool(
                self._driver_dsn(),
                min_size=1,
                max_size=self._fast_pool_size,
                init=init,
                reset=keep_session,
                server_settings=pool_server_settings(own),
                command_timeout=command_timeout(own),
                timeout=own.connect_timeout_seconds,
            )

    async def connect_own(self, application_name: str, *, durable_commits: bool = True) -> asyncpg.Connection:
        """PostgreSQL: a plain asyncpg connection outside every pool, for a background loop
        that must never queue behind requests (relay leader, relay publisher, feed listener).
        JSON columns decode as they do on the pool. The caller closes it.

        ``durable_commits=False`` is for a connection that only sends wake-ups (NOTIFY):
        its commits do not wait for the WAL flush, so the notify lock is held briefly."""
        own = self.own_settings
        settings = server_settings(own, application_name, statement_timeout=own.statement_timeout_seconds)
        if not durable_commits:
            settings["synchronous_commit"] = "off"
        # A client-side bound on every statement too: keepalives and TCP_USER_TIMEOUT cannot
        # see a peer that acknowledges bytes and never answers (a blackholing middlebox), and a
        # loop stuck on such a connection stalls its feed or relay for good.
        command_timeout = own.statement_timeout_seconds + 1 if own.statement_timeout_seconds else None
        conn: asyncpg.Connection = await asyncpg.connect(
            self._driver_dsn(),
            server_settings=settings,
            timeout=own.connect_timeout_seconds,
            command_timeout=command_timeout,
        )
        try:
            _client_keepalives(conn, own)
            await init_connection(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def ping(self) -> None:
        """SELECT 1, given up after ``ping_timeout_seconds`` (TimeoutError): readiness must
        answer promptly whatever the database does.

        PostgreSQL: on a connection of its own, kept between pings, so that the answer says
        whether the database answers, neither waiting behind requests for a pooled connection
        nor cancelling a pooled one mid-statement (which SQLAlchemy closes gracefully, i.e.
        slowly, on a silent network)."""
        async with asyncio.timeout(self.own_settings.ping_timeout_seconds):
            if not self.is_postgres:
                async with self.engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
                return
            async with self._ping_lock:
                try:
                    if self._ping_conn is None or self._ping_conn.is_closed():
                        self._ping_conn = await self.connect_own("orchestration-service-ping")
                    await self._ping_conn.fetchval("SELECT 1")
                except BaseException:
                    if self._ping_conn is not None:
                        self._ping_conn.terminate()  # a new one next time
                        self._ping_conn = None
                    raise

    async def close(self) -> None:
        await close_own(self._ping_conn)
        self._ping_conn = None
        if self.pg is not None:
            try:
                # Waits for connections in use to come back, but not forever; a cancelled
                # close terminates the pool instead.
                await asyncio.wait_for(self.pg.close(), POOL_CLOSE_SECONDS)
            except TimeoutError:
                log.warning("connections still in use %.0fs into shutdown; closed them", POOL_CLOSE_SECONDS)
            self.pg = None
        await self.engine.dispose()


def server_settings(
    own: StorageSettings, application_name: str, *, statement_timeout: float
) -> dict[str, str]:
    """PostgreSQL session settings of every connection the service opens."""
    return {
        "application_name": application_name,
        "jit": "off",
        # Half-open connections: the server drops the session (and its locks, the relay
        # leader's advisory lock among them) once its keepalives or unacknowledged data time out.
        "tcp_keepalives_idle": str(own.keepalive_idle_seconds),
        "tcp_keepalives_interval": str(own.keepalive_interval_seconds),
        "tcp_keepalives_count": str(own.keepalive_count),
        "tcp_user_timeout": f"{int(own.tcp_user_timeout_seconds * 1000)}ms",
        "statement_timeout": f"{int(statement_timeout * 1000)}ms",
        "idle_in_transaction_session_timeout": f"{int(own.idle_in_transaction_timeout_seconds * 1000)}ms",
    }


def pool_server_settings(
    own: StorageSettings, application_name: str = "orchestration-service"
) -> dict[str, str]:
    return server_settings(own, application_name, statement_timeout=own.pool_statement_timeout_seconds)


def command_timeout(own: StorageSettings) -> float:
    """The client's bound on one statement of a pooled connection: the server's statement
    timeout normally fires first (a clean error, the connection stays usable); past this
    margin the connection itself is not answering (half-open) and is abandoned."""
    return own.pool_statement_timeout_seconds + COMMAND_TIMEOUT_MARGIN


def _client_keepalives(conn: asyncpg.Connection, own: StorageSettings) -> None:
    """The same keepalives on this end of the socket, so that the service, too, notices a
    peer that went away without a word (the server's settings cover the other end)."""
    transport: Any = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: nothing half-opens
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), own.keepalive_idle_seconds),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), own.keepalive_interval_seconds),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), own.keepalive_count),
        (
            socket.IPPROTO_TCP,
            getattr(socket, "TCP_USER_TIMEOUT", None),
            int(own.tcp_user_timeout_seconds * 1000),
        ),
    ]
    for level, option, value in options:
        if option is None:  # not on this platform
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            log.debug("socket option %s not set: %s", option, exc)


async def close_own(conn: asyncpg.Connection | None, timeout: float = 2.0) -> None:
    """Close one of the service's own connections, but never wait on a dead network: a
    graceful close that gets no answer within ``timeout`` aborts it instead."""
    if conn is None or conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), timeout)
    except Exception:
        conn.terminate()


def create_engine(
    settings: StorageSettings, *, application_name: str = "orchestration-service"
) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            # aiosqlite runs each connection on its own thread; a small pool is plenty.
            pool_size=8,
            max_overflow=8,
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {
        "server_settings": pool_server_settings(settings, application_name),
        "command_timeout": command_timeout(settings),
        "timeout": settings.connect_timeout_seconds,
    }
    engine = create_async_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        pool_pre_ping=False,
        connect_args=connect_args,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _client_keepalives(dbapi_connection.driver_connection, settings)

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop(STALE, False) or stale_transaction(dbapi_connection.driver_connection):
            # The pool discards it and hands out a fresh connection instead.
            raise DisconnectionError("pooled connection left inside a transaction")

    return engine


def stale_transaction(conn: asyncpg.Connection) -> bool:
    """A pooled connection still inside a transaction (asyncpg's or the server's) although
    its last user has returned it: a unit of work interrupted at its BEGIN. Reused, every
    later unit of work would run as a SAVEPOINT of that transaction (never committed, its
    locks kept for good), so it must not be handed out again."""
    return bool(conn.is_in_transaction() or getattr(conn, "_top_xact", None) is not None)


def _json_dumps(value: Any) -> str:
    # orjson: several times faster than json on the envelopes and documents stored as JSON.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_admin_engine(settings: StorageSettings) -> AsyncEngine:
    """A pool-less engine for one-off work (migrations, CLI)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, poolclass=NullPool)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # reads: each statement on its own
        conn.exec_driver_sql(f"BEGIN {options.get('sqlite_begin', 'DEFERRED')}")
