"""Alembic environment: async engines, and a PostgreSQL advisory lock so that several
replicas starting at once migrate one after the other (the later ones find nothing to do)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from orchestration_service.config import StorageSettings
from orchestration_service.db.engine import create_admin_engine
from orchestration_service.db.tables import metadata

MIGRATION_LOCK_KEY = 0x0DA75_0001  # any constant shared by every replica


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_pg:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by the caller"
    engine = create_admin_engine(StorageSettings(database_url=url))
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock at BEGIN: a deferred transaction's first read fixes a
                # snapshot, and once a running server commits after it SQLite refuses the
                # upgrade to a writer at once ("database is locked", no busy_timeout wait).
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `orchestration-service db upgrade`")
asyncio.run(_main())
