"""The outbox's publication watermark, on both databases."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.db.engine import Transaction
from orchestration_service.repositories.storage import unit_of_work


async def test_the_published_watermark_never_moves_back(clean_db: str) -> None:
    engine = create_async_engine(clean_db)
    try:
        async with engine.begin() as conn:
            repo = unit_of_work(Transaction(conn)).outbox
            assert await repo.pending_stats() == (0, 0.0)
            await repo.mark_published(5)  # no row yet: inserted
            await repo.mark_published(3)  # a leader that lost its lock late
            await repo.mark_published(4)
            stored = await conn.exec_driver_sql("SELECT id, published_seq FROM relay_progress")
            assert [tuple(r) for r in stored] == [(1, 5)]
            await repo.mark_published(9)
            stored = await conn.exec_driver_sql("SELECT published_seq FROM relay_progress")
            assert stored.scalar_one() == 9
    finally:
        await engine.dispose()
