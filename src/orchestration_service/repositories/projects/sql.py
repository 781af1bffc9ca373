"""Projects in SQL: SQLAlchemy Core serves both backends but for the insert that ignores a
taken id."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import project_constitutions, projects, projects_generation
from orchestration_service.repositories.projects.port import Constitution, ProjectRecord

p = projects
pc = project_constitutions
pg_ = projects_generation


class SqlProjects:
    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    def _upsert(self, table: sa.Table) -> Any:
        raise NotImplementedError

    async def add(self, project: ProjectRecord) -> bool:
        stmt = self._upsert(p).values(dataclasses.asdict(project)).on_conflict_do_nothing()
        result = await self.conn.execute(stmt.returning(p.c.project_id))
        return result.first() is not None

    async def get(self, project_id: str, *, for_update: bool = False) -> ProjectRecord | None:
        stmt = sa.select(p).where(p.c.project_id == project_id)
        if for_update:
            stmt = stmt.with_for_update()  # SQLite: ignored (its writes are serialised anyway)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else ProjectRecord(**dict(row))

    async def list(
        self, *, include_archived: bool, project_ids: Sequence[str] | None = None
    ) -> list[ProjectRecord]:
        stmt = sa.select(p).order_by(p.c.project_id)
        if not include_archived:
            stmt = stmt.where(p.c.archived_at.is_(None))
        if project_ids is not None:
            stmt = stmt.where(p.c.project_id.in_(sorted(set(project_ids))))
        return [ProjectRecord(**dict(r)) for r in (await self.conn.execute(stmt)).mappings()]

    async def update(self, project_id: str, values: Mapping[str, Any]) -> None:
        await self.conn.execute(p.update().where(p.c.project_id == project_id).values(dict(values)))

    async def generation(self) -> int:
        stmt = sa.select(sa.func.coalesce(sa.func.max(pg_.c.generation), 0))
        return int((await self.conn.execute(stmt)).scalar_one())

    async def changed(self) -> None:
        stmt = (
            self._upsert(pg_)
            .values(id=1, generation=1)
            .on_conflict_do_update(index_elements=[pg_.c.id], set_={"generation": pg_.c.generation + 1})
        )
        await self.conn.execute(stmt)

    async def add_constitution(self, constitution: Constitution) -> None:
        await self.conn.execute(pc.insert(), dataclasses.asdict(constitution))

    async def constitution(self, project_id: str, version: int) -> Constitution | None:
        stmt = sa.select(pc).where(pc.c.project_id == project_id, pc.c.version == version)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else Constitution(**dict(row))

    async def current_constitutions(self, project_ids: Sequence[str]) -> dict[str, Constitution]:
        if not project_ids:
            return {}
        stmt = (
            sa.select(pc)
            .join(p, sa.and_(p.c.project_id == pc.c.project_id, p.c.constitution_version == pc.c.version))
            .where(p.c.project_id.in_(sorted(set(project_ids))))
        )
        return {r["project_id"]: Constitution(**dict(r)) for r in (await self.conn.execute(stmt)).mappings()}


class PostgresProjects(SqlProjects):
    def _upsert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)


class SqliteProjects(SqlProjects):
    def _upsert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)
