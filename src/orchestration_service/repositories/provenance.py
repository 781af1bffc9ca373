"""All SQL about provenance records, the artifacts they produced and their dependencies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.tables import (
    artifact_dependencies,
    provenance_artifacts,
    provenance_records,
)


@dataclass(frozen=True, slots=True)
class ProvenanceFilter:
    project_ids: Sequence[str] | None = None
    task_id: str | None = None


class ProvenanceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, record_id: uuid.UUID) -> RowMapping | None:
        stmt = sa.select(provenance_records).where(provenance_records.c.id == record_id)
        return (await self.conn.execute(stmt)).mappings().first()

    def _where(self, f: ProvenanceFilter) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if f.project_ids is not None:
            clauses.append(provenance_records.c.project_id.in_(list(f.project_ids)))
        if f.task_id:
            clauses.append(provenance_records.c.task_id == f.task_id)
        return clauses

    async def find(self, f: ProvenanceFilter, *, limit: int, offset: int) -> Sequence[RowMapping]:
        stmt = (
            sa.select(provenance_records)
            .where(*self._where(f))
            .order_by(provenance_records.c.created_at.desc(), provenance_records.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.conn.execute(stmt)).mappings().all()

    async def count(self, f: ProvenanceFilter) -> int:
        stmt = sa.select(sa.func.count()).select_from(provenance_records).where(*self._where(f))
        return int((await self.conn.execute(stmt)).scalar_one())

    async def insert(self, record: dict[str, Any]) -> None:
        await self.conn.execute(provenance_records.insert(), record)

    async def add_artifacts(self, record_id: uuid.UUID, artifact_ids: Sequence[str]) -> None:
        if artifact_ids:
            await self.conn.execute(
                provenance_artifacts.insert(),
                [{"artifact_id": a, "provenance_id": record_id} for a in artifact_ids],
            )

    async def producers_of(self, artifact_ids: Sequence[str]) -> dict[str, uuid.UUID]:
        if not artifact_ids:
            return {}
        stmt = sa.select(provenance_artifacts).where(
            provenance_artifacts.c.artifact_id.in_(list(artifact_ids))
        )
        return {r["artifact_id"]: r["provenance_id"] for r in (await self.conn.execute(stmt)).mappings()}

    async def add_dependencies(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(artifact_dependencies.insert(), rows)
