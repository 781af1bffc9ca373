"""Reviews in SQL: SQLAlchemy Core serves both backends alike."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import reviews
from orchestration_service.repositories.reviews.port import (
    CLOSED,
    DECIDED,
    OPEN,
    ReviewFilter,
    ReviewRecord,
)


def _record(row: Any) -> ReviewRecord:
    values = dict(row)
    values["request"] = values["request"] or {}
    return ReviewRecord(**values)


class SqlReviews:
    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    async def insert(self, review: ReviewRecord) -> None:
        await self.conn.execute(reviews.insert(), asdict(review))

    async def _one(self, stmt: sa.Select[Any]) -> ReviewRecord | None:
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else _record(row)

    async def get(self, review_id: uuid.UUID) -> ReviewRecord | None:
        return await self._one(sa.select(reviews).where(reviews.c.id == review_id))

    async def open_for_task(self, task_id: uuid.UUID) -> ReviewRecord | None:
        return await self._one(
            sa.select(reviews).where(reviews.c.task_id == task_id, reviews.c.status == OPEN)
        )

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        decision: str,
        reviewer: str,
        text: str | None,
        at: datetime,
        via: str,
    ) -> bool:
        result = await self.conn.execute(
            reviews.update()
            .where(reviews.c.id == review_id, reviews.c.status == OPEN)
            .values(
                status=DECIDED,
                decision=decision,
                reviewer=reviewer,
                decision_text=text,
                decided_at=at,
                decided_via=via[:255],
            )
        )
        return bool(result.rowcount)

    async def close_open(self, task_ids: Sequence[uuid.UUID], *, reason: str, at: datetime) -> int:
        if not task_ids:
            return 0
        result = await self.conn.execute(
            reviews.update()
            .where(reviews.c.task_id.in_(list(task_ids)), reviews.c.status == OPEN)
            .values(status=CLOSED, closed_reason=reason, decided_at=at)
        )
        return int(result.rowcount or 0)

    @staticmethod
    def _where(f: ReviewFilter) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if f.project_ids is not None:
            where.append(reviews.c.project_id.in_(list(f.project_ids)))
        if f.status is not None:
            where.append(reviews.c.status == f.status)
        return where

    async def find(
        self,
        f: ReviewFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[ReviewRecord]:
        stmt = sa.select(reviews).where(*self._where(f))
        if after is not None:
            stmt = stmt.where(
                reviews.c.requested_at >= after[0],
                sa.tuple_(reviews.c.requested_at, reviews.c.id) > sa.tuple_(*after),
            )
        stmt = stmt.order_by(reviews.c.requested_at, reviews.c.id).limit(limit).offset(offset)
        rows = (await self.conn.execute(stmt)).mappings().all()
        return [_record(r) for r in rows]

    async def count(self, f: ReviewFilter, *, cap: int | None = None) -> int:
        matching = sa.select(sa.literal(1)).select_from(reviews).where(*self._where(f))
        if cap is not None:
            matching = matching.limit(cap + 1)
        stmt = sa.select(sa.func.count()).select_from(matching.subquery())
        return int((await self.conn.execute(stmt)).scalar_one())
