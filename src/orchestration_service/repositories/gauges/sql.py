"""The database reads behind the shared-state gauges of /metrics, taken by the background
refresher, never by a scrape."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.engine import Transaction
from orchestration_service.repositories.gauges.port import GaugeReading
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.tasks.sql import SqlTasks

# One replica (or worker) reads at a time: the others skip that round and serve what they
# last read. A transaction-scoped lock: a dead reader's lock goes with its transaction.
GAUGES_LOCK_KEY = 0x0DA75_0003


class _SqlGauges:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    async def read(self) -> GaugeReading:
        counts = await SqlTasks(self.tx).counts_by_state()
        pending, oldest = await SqlOutbox(self.tx).pending_stats()
        waiting = await SqlTasks(self.tx).oldest_pending_age_seconds()
        return GaugeReading(counts, pending, oldest, waiting)


class SqliteGauges(_SqlGauges):
    async def try_lock(self) -> bool:
        """Always: one process uses an SQLite file."""
        return True


class PostgresGauges(_SqlGauges):
    async def try_lock(self) -> bool:
        got = await self.tx.conn.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": GAUGES_LOCK_KEY}
        )
        return bool(got.scalar_one())
