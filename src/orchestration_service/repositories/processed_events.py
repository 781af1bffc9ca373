"""Idempotency of consumed events, keyed by (project, CloudEvent id).

The project is the event's own (its task's, or its rollback's): a sender of one project
cannot claim an id first and so make another project's event a "duplicate", nor learn from
a "duplicate" answer that another project used an id.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.tables import processed_events


@functools.cache
def _claim(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING, built once per dialect."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(processed_events).on_conflict_do_nothing(index_elements=["project_id", "event_id"])


def _key(project_id: str, event_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(processed_events.c.project_id == project_id, processed_events.c.event_id == event_id)


class ProcessedEventRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self, project_id: str, event_id: str, event_type: str, source: str | None, outcome: str
    ) -> bool:
        """Record the event as processed; False when it already was (a duplicate).
        Runs in the same transaction as the event's effects, so a rollback un-claims it."""
        values = {
            "project_id": project_id,
            "event_id": event_id,
            "event_type": event_type,
            "source": source,
            "outcome": outcome,
            "processed_at": datetime.now(UTC),
        }
        result = await self.conn.execute(_claim(self.conn.dialect.name), values)
        return bool(result.rowcount)

    async def set_outcome(self, project_id: str, event_id: str, outcome: str) -> None:
        await self.conn.execute(
            processed_events.update().where(_key(project_id, event_id)).values(outcome=outcome)
        )

    async def get_outcome(self, project_id: str, event_id: str) -> str | None:
        stmt = sa.select(processed_events.c.outcome).where(_key(project_id, event_id))
        return (await self.conn.execute(stmt)).scalar_one_or_none()

    async def purge_before(self, retention: timedelta, limit: int = 10_000) -> int:
        """Forget ids claimed longer than ``retention`` ago, at most ``limit`` per call (the
        index on ``processed_at`` finds them)."""
        cutoff = datetime.now(UTC) - retention
        pe = processed_events
        old = (
            sa.select(pe.c.project_id, pe.c.event_id)
            .where(pe.c.processed_at < cutoff)
            .order_by(pe.c.processed_at)
            .limit(limit)
        )
        keys = (await self.conn.execute(old)).all()
        if keys:
            await self.conn.execute(
                pe.delete().where(sa.tuple_(pe.c.project_id, pe.c.event_id).in_([tuple(k) for k in keys]))
            )
        return len(keys)
