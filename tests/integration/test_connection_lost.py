"""A PostgreSQL restart drops every pooled connection: the events being handled then are
retried (not dead-lettered), and the pool heals by itself (issue 21)."""

from __future__ import annotations

import uuid

import asyncpg
import orjson
import pytest

from orchestration_service.container import Container
from orchestration_service.db.errors import is_transient
from orchestration_service.events.bus import Disposition, InboundMessage
from tests.conftest import make_settings, truncate_all
from tests.contract.event_fixtures import VALIDATED


async def _drop_service_connections(pg_url: str) -> int:
    """What a restart does to this service's connections (each replica's own included)."""
    admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        killed: list[asyncpg.Record] = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(killed)
    finally:
        await admin.close()


async def test_an_event_handled_while_the_database_restarts_is_retried_then_applied(pg_url: str) -> None:
    await truncate_all(pg_url)
    # The container without its background loops, which would otherwise race this test to
    # the dropped connections.
    c = Container.build(make_settings(pg_url))
    await c.db.open()
    try:
        # Warm the pool: its connections are the ones the restart kills.
        async with c.db.transaction() as tx:
            await (await tx.driver()).fetchval("SELECT 1")
        assert await _drop_service_connections(pg_url) > 0

        env = dict(VALIDATED.envelope, id=str(uuid.uuid4()))
        msg = InboundMessage(orjson.dumps(env), VALIDATED.name, "qa.events")
        first = await c.events.handle_message(msg)
        assert first.disposition is Disposition.RETRY, first

        # Redelivered: each dropped connection is replaced once seen, so within a pool's worth
        # of deliveries the event is judged on its merits (here: an unknown task, no retry).
        pool = c.settings.storage.pool_size + c.settings.storage.max_overflow
        for _ in range(pool + 1):
            again = await c.events.handle_message(msg)
            if again.disposition is not Disposition.RETRY:
                break
        assert again.disposition is not Disposition.RETRY, again
    finally:
        await c.db.close()


async def test_a_dropped_pooled_connection_is_replaced(pg_url: str) -> None:
    db = Container.build(make_settings(pg_url)).db
    await db.open()
    try:
        async with db.transaction() as tx:
            await (await tx.driver()).fetchval("SELECT 1")
        await _drop_service_connections(pg_url)
        with pytest.raises(Exception) as lost:  # noqa: PT011 - any error, judged below
            async with db.transaction() as tx:
                await (await tx.driver()).fetchval("SELECT 1")
        assert is_transient(lost.value), repr(lost.value)
        async with db.transaction() as tx:
            assert await (await tx.driver()).fetchval("SELECT 1") == 1
    finally:
        await db.close()
