"""The database reads behind the shared-state gauges of /metrics (tasks by state, outbox
backlog), taken by the background refresher, never by a scrape."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.engine import Transaction
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.tasks import TaskRepository

# One replica (or worker) reads at a time: the others skip that round and serve what they
# last read. A transaction-scoped lock: a dead reader's lock goes with its transaction.
GAUGES_LOCK_KEY = 0x0DA75_0003


@dataclass(frozen=True, slots=True)
class GaugeReading:
    tasks_by_state: dict[str, int]
    outbox_pending: int
    outbox_oldest_seconds: float


class GaugeRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def try_lock(self) -> bool:
        """On PostgreSQL, whether this transaction got the gauges lock (SQLite: one process)."""
        if self.conn.dialect.name != "postgresql":
            return True
        got = await self.conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": GAUGES_LOCK_KEY})
        return bool(got.scalar_one())

    async def read(self) -> GaugeReading:
        counts = await TaskRepository(self.conn).counts_by_state()
        pending, oldest = await SqlOutbox(Transaction(self.conn)).pending_stats()
        return GaugeReading(counts, pending, oldest)
