"""The record of consumed events in SQL: one statement set, the conflict clause per backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import processed_events

_KEY = ["project_id", "event_id"]


def _key(project_id: str, event_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(processed_events.c.project_id == project_id, processed_events.c.event_id == event_id)


class _SqlProcessedEvents:
    # INSERT … ON CONFLICT DO NOTHING, built once per backend.
    _claim: Any

    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    async def claim(
        self, project_id: str, event_id: str, event_type: str, source: str | None, outcome: str
    ) -> bool:
        values = {
            "project_id": project_id,
            "event_id": event_id,
            "event_type": event_type,
            "source": source,
            "outcome": outcome,
            "processed_at": datetime.now(UTC),
        }
        result = await self.conn.execute(self._claim, values)
        return bool(result.rowcount)

    async def set_outcome(self, project_id: str, event_id: str, outcome: str) -> None:
        await self.conn.execute(
            processed_events.update().where(_key(project_id, event_id)).values(outcome=outcome)
        )

    async def get_outcome(self, project_id: str, event_id: str) -> str | None:
        stmt = sa.select(processed_events.c.outcome).where(_key(project_id, event_id))
        return (await self.conn.execute(stmt)).scalar_one_or_none()

    async def purge_before(self, retention: timedelta, limit: int = 10_000) -> int:
        # The index on ``processed_at`` finds them.
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


class PostgresProcessedEvents(_SqlProcessedEvents):
    _claim = pg_insert(processed_events).on_conflict_do_nothing(index_elements=_KEY)


class SqliteProcessedEvents(_SqlProcessedEvents):
    _claim = sqlite_insert(processed_events).on_conflict_do_nothing(index_elements=_KEY)
