"""The repository suite: every test here is written once against the ports
(``repositories/*/port.py``) and runs on both implementations, PostgreSQL and SQLite,
through the storage the composition root would build for that URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestration_service.db.engine import Database, create_engine
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.storage import SqlStorage
from tests.conftest import make_settings


@pytest.fixture
async def storage(clean_db: str) -> AsyncIterator[Storage]:
    settings = make_settings(clean_db)
    db = Database(create_engine(settings.storage), fast_pool_size=2, storage=settings.storage)
    await db.open()
    try:
        yield SqlStorage(db)
    finally:
        await db.close()
