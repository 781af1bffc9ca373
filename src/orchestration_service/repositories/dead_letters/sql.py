"""Dead letters in SQL: plain SQLAlchemy Core serves both backends."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import dead_letters
from orchestration_service.repositories.dead_letters.port import DeadLetter, DeadLetterFilter, DeadLetterPage

dl = dead_letters


def _letter(row: RowMapping) -> DeadLetter:
    return DeadLetter(**dict(row))


class SqlDeadLetters:
    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    async def add(self, letter: DeadLetter) -> None:
        await self.conn.execute(dl.insert(), dataclasses.asdict(letter))

    async def get(self, letter_id: uuid.UUID, *, for_update: bool = False) -> DeadLetter | None:
        stmt = sa.select(dl).where(dl.c.id == letter_id)
        if for_update:
            stmt = stmt.with_for_update()  # SQLite: ignored (its writes are serialized anyway)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else _letter(row)

    async def page(
        self,
        f: DeadLetterFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
        cap: int,
    ) -> DeadLetterPage:
        where: list[sa.ColumnElement[bool]] = []
        if f.project_ids is not None:
            where.append(dl.c.project_id.in_(f.project_ids))
        if f.source is not None:
            where.append(dl.c.source == f.source)
        if f.event_type is not None:
            where.append(dl.c.event_type == f.event_type)
        stmt = sa.select(dl).where(*where)
        if after is not None:
            stmt = stmt.where(sa.tuple_(dl.c.created_at, dl.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(dl.c.created_at.desc(), dl.c.id.desc()).limit(limit + 1).offset(offset)
        rows = [_letter(r) for r in (await self.conn.execute(stmt)).mappings().all()]
        counted = sa.select(sa.literal(1)).select_from(dl).where(*where).limit(cap + 1).subquery()
        total = int((await self.conn.execute(sa.select(sa.func.count()).select_from(counted))).scalar_one())
        return DeadLetterPage(rows[:limit], min(total, cap), total > cap, len(rows) > limit)

    async def replayed(self, letter_id: uuid.UUID, *, kind: str, reason: str, at: datetime) -> None:
        await self.conn.execute(
            dl.update()
            .where(dl.c.id == letter_id)
            .values(kind=kind, reason=reason, replays=dl.c.replays + 1, last_replayed_at=at)
        )

    async def delete(self, letter_id: uuid.UUID) -> bool:
        return bool((await self.conn.execute(dl.delete().where(dl.c.id == letter_id))).rowcount)

    async def trim(self, keep: int) -> int:
        newest = sa.select(dl.c.created_at, dl.c.id).order_by(dl.c.created_at.desc(), dl.c.id.desc())
        edge = (await self.conn.execute(newest.offset(keep).limit(1))).first()
        if edge is None:
            return 0
        stmt = dl.delete().where(sa.tuple_(dl.c.created_at, dl.c.id) <= sa.tuple_(edge[0], edge[1]))
        return int((await self.conn.execute(stmt)).rowcount)


class PostgresDeadLetters(SqlDeadLetters):
    pass


class SqliteDeadLetters(SqlDeadLetters):
    pass
