"""Migrations that move data, on both databases: each test migrates a database of its own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.config import load_settings
from orchestration_service.db.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL, missing_service


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"orch_migrations_{secrets.token_hex(4)}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        await admin.dispose()
        missing_service("PostgreSQL", exc)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def migrate(url: str, revision: str) -> None:
    # Alembic's env runs its own event loop: keep it off this one.
    await asyncio.to_thread(upgrade, load_settings(storage={"database_url": url}).storage, revision)


async def downgrade(url: str, revision: str) -> None:
    from alembic import command

    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


async def execute(url: str, sql: str, params: list[dict[str, object]] | None = None) -> list[sa.Row[object]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), params) if params else await conn.execute(sa.text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


OUTBOX_ROW = (
    "INSERT INTO outbox (event_id, event_type, exchange, subject, project_id, envelope, created_at, seq,"
    " published_at) VALUES (:e, 'task.created', 'task.events', 's', 'p', '{}', :t, :seq, :pub)"
)


async def test_the_published_watermark_starts_before_the_first_unpublished_row(fresh_url: str) -> None:
    await migrate(fresh_url, "0005")
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    rows: list[dict[str, object]] = [
        {"e": f"e{seq}", "t": t, "seq": seq, "pub": t if seq <= 3 else None} for seq in range(1, 6)
    ]
    rows.append({"e": "unsequenced", "t": t, "seq": None, "pub": None})
    await execute(fresh_url, OUTBOX_ROW, rows)

    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT id, published_seq FROM relay_progress") == [(1, 3)]
    # Nothing was lost: the same six rows, their numbers unchanged.
    seqs = [r[0] for r in await execute(fresh_url, "SELECT seq FROM outbox ORDER BY id")]
    assert seqs == [1, 2, 3, 4, 5, None]

    await downgrade(fresh_url, "0005")
    published = await execute(fresh_url, "SELECT seq FROM outbox WHERE published_at IS NOT NULL ORDER BY seq")
    assert [r[0] for r in published] == [1, 2, 3]


async def test_with_everything_published_the_watermark_is_the_last_number(fresh_url: str) -> None:
    await migrate(fresh_url, "0005")
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    await execute(fresh_url, OUTBOX_ROW, [{"e": f"e{s}", "t": t, "seq": s, "pub": t} for s in (1, 2)])
    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT published_seq FROM relay_progress") == [(2,)]


async def test_an_empty_log_starts_at_zero(fresh_url: str) -> None:
    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT published_seq FROM relay_progress") == [(0,)]
