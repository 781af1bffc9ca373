"""API keys, stored hashed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.tables import api_keys


class ApiKeyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def insert(self, values: dict[str, Any]) -> None:
        await self.conn.execute(api_keys.insert(), values)

    async def insert_if_absent(self, values: dict[str, Any]) -> bool:
        """Insert unless a key with the same hash exists (revoked or not); True if inserted.
        Replicas starting together may all try: one row results."""
        insert = postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(api_keys).values(values).on_conflict_do_nothing(index_elements=["key_hash"])
        return bool((await self.conn.execute(stmt)).rowcount)

    async def by_hash(self, key_hash: str) -> RowMapping | None:
        stmt = sa.select(api_keys).where(api_keys.c.key_hash == key_hash)
        return (await self.conn.execute(stmt)).mappings().first()

    async def all(self) -> Sequence[RowMapping]:
        return (await self.conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).mappings().all()

    async def revoke(self, key_id: uuid.UUID) -> bool:
        result = await self.conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return bool(result.rowcount)
