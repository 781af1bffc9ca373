"""A transaction whose BEGIN is interrupted (its task cancelled, or the statement failing)
must not leave its pooled connection inside a transaction that nobody will end (issue 21).

asyncpg keeps the interrupted transaction as the connection's top-level one, so the next
``transaction()`` on that connection becomes a SAVEPOINT inside it: every later unit of work
"commits" a savepoint, nothing is ever committed, and the session keeps every lock it takes
(the project advisory locks among them) while staying busy enough that no idle timeout ends
it. One full chaos run stalled every project for 240 s that way, and writes answered 200 (a
cancel, a consumed worker event) were silently lost when the session finally died."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import asyncpg.transaction
import pytest
import sqlalchemy as sa

from orchestration_service.container import Container
from tests.conftest import make_settings, truncate_all

LOCK_KEY = 917_301  # a transaction-scoped advisory lock only this test takes


async def _admin_fetchval(pg_url: str, sql: str) -> Any:
    admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await admin.fetchval(sql)
    finally:
        await admin.close()


def _begin_then(exc: BaseException) -> Callable[[asyncpg.transaction.Transaction], Awaitable[None]]:
    real_start = asyncpg.transaction.Transaction.start

    async def start(self: asyncpg.transaction.Transaction) -> None:
        await real_start(self)  # BEGIN reached the server …
        raise exc  # … and then the caller was cancelled before it saw the answer

    return start


@pytest.mark.parametrize("interruption", [asyncio.CancelledError(), ConnectionResetError("reset")])
async def test_a_unit_of_work_after_an_interrupted_begin_really_commits(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, interruption: BaseException
) -> None:
    await truncate_all(pg_url)
    # One pooled connection: the next unit of work gets the interrupted one back.
    c = Container.build(make_settings(pg_url, storage={"pool_size": 1, "max_overflow": 0}))
    await c.db.open()
    try:
        async with c.db.transaction() as tx:  # the pool's connection, warm as in service
            await (await tx.driver()).fetchval("SELECT 1")
        monkeypatch.setattr(asyncpg.transaction.Transaction, "start", _begin_then(interruption))
        with pytest.raises(type(interruption)):
            async with c.db.transaction() as tx:
                # A hand-written statement first (repositories.tasks_pg): BEGIN goes through
                # Transaction.driver(), out of SQLAlchemy's sight.
                await (await tx.driver()).fetchval("SELECT 1")
        monkeypatch.undo()

        async with c.db.transaction() as tx:
            await tx.conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            await tx.conn.execute(
                sa.text(
                    "INSERT INTO processed_events (project_id, event_id, event_type, outcome, processed_at)"
                    " VALUES ('p', 'after-interrupted-begin', 'test', 'applied', now())"
                )
            )

        # Committed for everyone, and the transaction's lock released with its end.
        assert (
            await _admin_fetchval(
                pg_url, "SELECT count(*) FROM processed_events WHERE event_id = 'after-interrupted-begin'"
            )
            == 1
        )
        assert (
            await _admin_fetchval(
                pg_url, f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK_KEY}"
            )
            == 0
        )
        assert (
            await _admin_fetchval(
                pg_url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'",
            )
            == 0
        )
    finally:
        await c.db.close()
