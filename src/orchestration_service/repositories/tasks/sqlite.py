"""Tasks on SQLite: SQLAlchemy Core. Its write transactions are serial (BEGIN IMMEDIATE),
so nothing here locks rows or projects, and the dispatch queues are read a project at a
time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from orchestration_service.db.engine import Database
from orchestration_service.db.tables import tasks
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.processed_events.sql import SqliteProcessedEvents
from orchestration_service.repositories.tasks.port import TaskRecord
from orchestration_service.repositories.tasks.sql import IN_FLIGHT, SqlTasks
from orchestration_service.repositories.tasks.transactional import TransactionalHotPaths


class SqliteTasks(SqlTasks):
    def _processed_events(self) -> ProcessedEventRepository:
        return SqliteProcessedEvents(self.tx)

    async def lock_rows(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Nothing to do: the write transaction is already exclusive."""

    async def lock_projects(self, project_ids: Sequence[str]) -> None:
        """Nothing to do: the write transaction is already exclusive."""

    async def with_waiting_tasks(self, project_ids: Sequence[str], per_project: int) -> list[str]:
        if not project_ids:
            return []
        rows = await self.conn.execute(
            sa.select(tasks.c.project_id)
            .where(
                tasks.c.project_id.in_(sorted(set(project_ids))),
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_not(None),
            )
            .distinct()
        )
        waiting = [str(p) for p in rows.scalars()]
        busy = await self.in_flight_counts(waiting) if waiting else {}
        return sorted(p for p in waiting if busy.get(p, 0) < per_project)

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[TaskRecord]:
        if not project_ids:
            return []
        projects = sorted(set(project_ids))
        counts = await self.in_flight_counts(projects)
        out: list[TaskRecord] = []
        for project_id in projects:
            free = limit - counts.get(project_id, 0)
            if free > 0:
                out.extend(await self.dispatchable(project_id, free))
        return out

    async def projects_with_waiting_work(self, per_project: int, limit: int = 1000) -> list[str]:
        waiting = (
            sa.select(tasks.c.project_id)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_not(None))
            .distinct()
            .subquery("w")
        )
        # Counts at most ``per_project`` rows of a project (an index range on project, status).
        in_flight = (
            sa.select(sa.literal(1))
            .where(tasks.c.project_id == waiting.c.project_id, tasks.c.status.in_(IN_FLIGHT))
            .limit(per_project)
            .correlate(waiting)
            .subquery("f")
        )
        stmt = (
            sa.select(waiting.c.project_id)
            .where(sa.select(sa.func.count()).select_from(in_flight).scalar_subquery() < per_project)
            .limit(limit)
        )
        return [str(p) for p in (await self.conn.execute(stmt)).scalars()]


class SqliteHotPaths(TransactionalHotPaths):
    def __init__(self, db: Database) -> None:
        super().__init__(db, SqliteTasks)
