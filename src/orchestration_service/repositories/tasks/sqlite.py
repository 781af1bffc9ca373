"""Tasks on SQLite: SQLAlchemy Core. Its write transactions are serial (BEGIN IMMEDIATE),
so nothing here locks rows or projects, and the dispatch queues are read a project at a
time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from orchestration_service.db.engine import Database
from orchestration_service.db.tables import projects, tasks
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
        limits = await self._limits(waiting, per_project)
        return sorted(p for p in waiting if busy.get(p, 0) < limits[p])

    async def _limits(self, project_ids: Sequence[str], default: int) -> dict[str, int]:
        """Each project's limit: its own ``max_concurrent``, else ``default``."""
        rows = await self.conn.execute(
            sa.select(projects.c.project_id, projects.c.max_concurrent).where(
                projects.c.project_id.in_(sorted(set(project_ids))), projects.c.max_concurrent.is_not(None)
            )
        )
        own = {str(r[0]): int(r[1]) for r in rows}
        return {p: own.get(p, default) for p in project_ids}

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[TaskRecord]:
        if not project_ids:
            return []
        projects_ = sorted(set(project_ids))
        counts = await self.in_flight_counts(projects_)
        limits = await self._limits(projects_, limit)
        out: list[TaskRecord] = []
        for project_id in projects_:
            free = limits[project_id] - counts.get(project_id, 0)
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
        in_flight = (
            sa.select(sa.func.count())
            .where(tasks.c.project_id == waiting.c.project_id, tasks.c.status.in_(IN_FLIGHT))
            .correlate(waiting)
            .scalar_subquery()
        )
        # The project's own limit, else the configured one.
        own = (
            sa.select(projects.c.max_concurrent)
            .where(projects.c.project_id == waiting.c.project_id)
            .correlate(waiting)
            .scalar_subquery()
        )
        stmt = (
            sa.select(waiting.c.project_id).where(in_flight < sa.func.coalesce(own, per_project)).limit(limit)
        )
        return [str(p) for p in (await self.conn.execute(stmt)).scalars()]


class SqliteHotPaths(TransactionalHotPaths):
    def __init__(self, db: Database) -> None:
        super().__init__(db, SqliteTasks)
