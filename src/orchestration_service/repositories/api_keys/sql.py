"""API keys in SQL: one statement set, the conflict clause per backend."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import api_keys
from orchestration_service.repositories.api_keys.port import ApiKeyRecord


def _record(row: RowMapping) -> ApiKeyRecord:
    values = dict(row)
    values["projects"] = tuple(values["projects"] or ())
    return ApiKeyRecord(**values)


class _SqlApiKeys:
    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    async def insert(self, key: ApiKeyRecord) -> None:
        await self.conn.execute(api_keys.insert(), _values(key))

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which has ON CONFLICT DO NOTHING."""
        raise NotImplementedError

    async def insert_if_absent(self, key: ApiKeyRecord) -> bool:
        stmt = self._insert().values(_values(key)).on_conflict_do_nothing(index_elements=["key_hash"])
        return bool((await self.conn.execute(stmt)).rowcount)

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        stmt = sa.select(api_keys).where(api_keys.c.key_hash == key_hash)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else _record(row)

    async def all(self) -> Sequence[ApiKeyRecord]:
        rows = (await self.conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).mappings().all()
        return [_record(r) for r in rows]

    async def revoke(self, key_id: uuid.UUID) -> bool:
        result = await self.conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return bool(result.rowcount)


def _values(key: ApiKeyRecord) -> dict[str, Any]:
    values = dataclasses.asdict(key)
    values["projects"] = list(key.projects)
    return values


class PostgresApiKeys(_SqlApiKeys):
    def _insert(self) -> postgresql.Insert:
        return postgresql.insert(api_keys)


class SqliteApiKeys(_SqlApiKeys):
    def _insert(self) -> sqlite.Insert:
        return sqlite.insert(api_keys)
