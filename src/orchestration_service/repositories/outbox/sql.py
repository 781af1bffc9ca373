"""The outbox and event log in SQL: SQLAlchemy Core, which both backends run alike (the
relay's and the feed's own paths differ per backend: ``postgres.py``, ``sqlite.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.db.tables import outbox, relay_progress
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.repositories.outbox.port import LogEntry, UnpublishedEvent

# Never moves back: a leader that lost its lock late cannot undo a newer leader's progress.
# Plain SQL that PostgreSQL and SQLite both take; ``{seq}`` is the parameter.
MARK_PUBLISHED = (
    "INSERT INTO relay_progress (id, published_seq) VALUES (1, {seq}) ON CONFLICT (id)"
    " DO UPDATE SET published_seq = CASE WHEN excluded.published_seq > relay_progress.published_seq"
    " THEN excluded.published_seq ELSE relay_progress.published_seq END"
)
_MARK_PUBLISHED = sa.text(MARK_PUBLISHED.format(seq=":seq"))


def _published_seq() -> sa.ColumnElement[int]:
    """Every row up to this ``seq`` was published (0 before the first)."""
    return sa.func.coalesce(
        sa.select(relay_progress.c.published_seq).where(relay_progress.c.id == 1).scalar_subquery(), 0
    )


def _unpublished() -> sa.ColumnElement[bool]:
    return sa.or_(outbox.c.seq.is_(None), outbox.c.seq > _published_seq())


class SqlOutbox:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.conn = tx.conn

    async def add(self, events: Sequence[OutgoingEvent]) -> None:
        if not events:
            return
        now = datetime.now(UTC)
        await self.conn.execute(
            outbox.insert(),
            [
                {
                    "event_id": ev.id,
                    "event_type": ev.name,
                    "exchange": ev.exchange,
                    "subject": ev.subject,
                    "project_id": ev.project_id,
                    "envelope": ev.envelope(),
                    "created_at": now,
                }
                for ev in events
            ],
        )
        # The relay is woken once the unit of work commits.
        self.tx.mark_outbox_written()

    async def assign_sequence(self, limit: int) -> int:
        # One statement.
        pending = (
            sa.select(outbox.c.id, sa.func.row_number().over(order_by=outbox.c.id).label("n"))
            .where(outbox.c.seq.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
            .subquery("pending")
        )
        start = sa.select(sa.func.coalesce(sa.func.max(outbox.c.seq), 0)).scalar_subquery()
        stmt = (
            outbox.update()
            .where(outbox.c.id == pending.c.id)
            .values(seq=start + pending.c.n)
            .execution_options(synchronize_session=False)
        )
        return int((await self.conn.execute(stmt)).rowcount or 0)

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        stmt = (
            sa.select(outbox.c.id, outbox.c.seq, outbox.c.event_type, outbox.c.exchange, outbox.c.envelope)
            .where(outbox.c.seq > _published_seq())
            .order_by(outbox.c.seq)
            .limit(limit)
        )
        return [UnpublishedEvent(*row) for row in await self.conn.execute(stmt)]

    async def mark_published(self, through_seq: int) -> None:
        await self.conn.execute(_MARK_PUBLISHED, {"seq": through_seq})

    async def read_log(self, after: int, limit: int) -> Sequence[LogEntry]:
        stmt = (
            sa.select(
                outbox.c.seq, outbox.c.event_type, outbox.c.subject, outbox.c.project_id, outbox.c.envelope
            )
            .where(outbox.c.seq > after)
            .order_by(outbox.c.seq)
            .limit(limit)
        )
        return [LogEntry(*row) for row in await self.conn.execute(stmt)]

    async def last_seq(self) -> int:
        return int(
            (await self.conn.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.seq), 0)))).scalar_one()
        )

    async def pending_stats(self) -> tuple[int, float]:
        row = (
            await self.conn.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(_unpublished())
            )
        ).one()
        count, oldest = int(row[0]), row[1]
        if oldest is None:
            return count, 0.0
        if isinstance(oldest, str):  # SQLite aggregate loses the column type
            oldest = datetime.fromisoformat(oldest)
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return count, max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    async def purge_published_before(self, retention: timedelta, limit: int = 10_000) -> int:
        cutoff = datetime.now(UTC) - retention
        # The newest sequenced row always stays: `seq` continues from it, so numbers are
        # never handed out twice and a reader's position stays meaningful.
        newest = sa.select(sa.func.max(outbox.c.seq)).scalar_subquery()
        ids = (
            (
                await self.conn.execute(
                    sa.select(outbox.c.id)
                    .where(
                        outbox.c.seq <= _published_seq(),
                        outbox.c.created_at < cutoff,
                        outbox.c.seq < newest,
                    )
                    .order_by(outbox.c.id)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        if ids:
            await self.conn.execute(outbox.delete().where(outbox.c.id.in_(list(ids))))
        return len(ids)


@contextlib.asynccontextmanager
async def autocommit(db: Database) -> AsyncIterator[SqlOutbox]:
    """The outbox on a pooled connection in autocommit (each statement on its own)."""
    async with db.read() as conn:
        yield SqlOutbox(Transaction(conn))
