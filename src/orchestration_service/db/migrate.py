"""Apply migrations programmatically (``serve`` and ``db upgrade`` both call this)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from orchestration_service.config import StorageSettings
from orchestration_service.db.engine import create_admin_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: StorageSettings, revision: str = "head") -> None:
    """Run pending migrations. Blocking: call it before the event loop starts,
    or in a thread (env.py runs its own event loop)."""
    command.upgrade(alembic_config(settings.database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def current_revision(settings: StorageSettings) -> str | None:
    engine = create_admin_engine(settings)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


async def is_up_to_date(settings: StorageSettings) -> bool:
    return await current_revision(settings) == head_revision()


def upgrade_in_thread(settings: StorageSettings) -> asyncio.Future[None]:
    return asyncio.get_running_loop().run_in_executor(None, upgrade, settings)
