"""``TaskHotPaths`` through the ordinary units of work (SQLite's; PostgreSQL's without its
pool), creating a submission's project in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.db.tables import projects
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.projects.port import ProjectRecord
from orchestration_service.repositories.projects.sql import SqlProjects
from orchestration_service.repositories.tasks.port import ProgressReport, StatusRead, Submission
from orchestration_service.repositories.tasks.sql import SqlTasks


class TransactionalHotPaths:
    """``TaskHotPaths`` through the ordinary units of work: SQLite's, and PostgreSQL's when
    the service runs without its asyncpg pool."""

    def __init__(self, db: Database, tasks_of: Callable[[Transaction], SqlTasks]) -> None:
        self.db = db
        self.tasks_of = tasks_of

    async def submit(self, submission: Submission) -> bool:
        task = submission.task
        try:
            async with self.db.transaction() as tx:
                if submission.new_project:
                    at = sa.bindparam("at", task["created_at"], type_=projects.c.created_at.type)
                    pid = sa.bindparam("pid", task["project_id"], type_=projects.c.project_id.type)
                    missing = sa.select(pid, at, at).where(~sa.exists().where(projects.c.project_id == pid))
                    await tx.conn.execute(
                        projects.insert().from_select(["project_id", "created_at", "updated_at"], missing)
                    )
                repo = self.tasks_of(tx)
                await repo.insert_many([task])
                await repo.add_history(submission.history)
                await SqlOutbox(tx).add(submission.events)
        except IntegrityError:
            if task.get("idempotency_key") is None:
                raise
            # Two requests raced with one idempotency key: the first one won.
            return False
        return True

    async def status(self, task_id: uuid.UUID) -> StatusRead | None:
        async with self.db.read() as conn:
            return await self.tasks_of(Transaction(conn)).get_with_flags(task_id)

    async def project(self, project_id: str) -> ProjectRecord | None:
        async with self.db.read() as conn:
            return await SqlProjects(Transaction(conn)).get(project_id)

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        async with self.db.transaction() as tx:
            return await self.tasks_of(tx).record_progress(report, now)

    async def record_progress_many(self, reports: Sequence[ProgressReport], now: datetime) -> list[bool]:
        if not reports:
            return []
        async with self.db.transaction() as tx:
            repo = self.tasks_of(tx)
            return [await repo.record_progress(r, now) for r in reports]
