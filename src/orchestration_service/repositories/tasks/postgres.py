"""Tasks on PostgreSQL: the shared Core statements, row and project locks, the dispatch
queues in one statement each, and the hand-written asyncpg statements of the hot paths
(``pg_statements``)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import sqlalchemy as sa

from orchestration_service.db.batching import Batcher
from orchestration_service.db.engine import Database
from orchestration_service.db.tables import tasks
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.domain.tasks import as_task
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.processed_events.sql import PostgresProcessedEvents
from orchestration_service.repositories.projects.port import ProjectRecord
from orchestration_service.repositories.tasks import pg_statements as pg
from orchestration_service.repositories.tasks.port import (
    EventClaim,
    HistoryRecord,
    ProgressReport,
    StatusRead,
    Submission,
    TaskRecord,
)
from orchestration_service.repositories.tasks.sql import (
    IN_FLIGHT,
    SqlTasks,
    get_for_update,
    status_read,
)
from orchestration_service.repositories.tasks.transactional import TransactionalHotPaths


@functools.cache
def _dispatchable_within() -> sa.TextualSelect:
    columns = ", ".join(f"t.{c.name}" for c in tasks.c)
    in_flight = ", ".join(f"'{s}'" for s in sorted(IN_FLIGHT))
    return sa.text(pg.DISPATCHABLE_WITHIN.format(columns=columns, in_flight=in_flight)).columns(*tasks.c)


_LOCK_PROJECTS = sa.text(pg.LOCK_PROJECTS)
_WITH_WAITING_TASKS = sa.text(pg.WITH_WAITING_TASKS)
_PROJECTS_WITH_ROOM = sa.text(pg.PROJECTS_WITH_ROOM)


class PostgresTasks(SqlTasks):
    def _processed_events(self) -> ProcessedEventRepository:
        return PostgresProcessedEvents(self.tx)

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> TaskRecord | None:
        if not for_update:
            return await super().get(task_id)
        row = (await self.conn.execute(get_for_update(), {"task_id": task_id})).mappings().first()
        return None if row is None else as_task(row)

    async def write_transition(
        self,
        updates: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        history: Sequence[HistoryRecord],
        events: Sequence[OutgoingEvent],
        now: datetime,
    ) -> None:
        driver = await self.tx.driver()
        # Usually one statement for everything; rows changing different columns take two.
        if not await pg.transition(driver, updates, history, events, now):
            await self.update_many(updates)
            await pg.add_history_and_events(driver, history, events, now)
        self.tx.mark_outbox_written()

    async def claim_event_and_lock(
        self, *, event_id: str, event_type: str, source: str | None, outcome: str, task_id: uuid.UUID
    ) -> EventClaim:
        # One round trip: the task read and locked, the event claimed under its project.
        driver = await self.tx.driver()
        row = await driver.fetchrow(
            pg.CLAIM_EVENT_AND_LOCK_TASK, event_id, event_type, source, outcome, datetime.now(UTC), task_id
        )
        assert row is not None
        task = as_task(row)  # a copy, without the flag
        claimed = bool(cast(dict[str, Any], task).pop("_claimed"))
        if task["id"] is None:
            return EventClaim(False, None)
        return EventClaim(claimed, task)

    async def lock_rows(self, task_ids: Sequence[uuid.UUID]) -> None:
        if task_ids:
            stmt = (
                sa.select(tasks.c.id)
                .where(tasks.c.id.in_(sorted(task_ids)))
                .order_by(tasks.c.id)
                .with_for_update()
            )
            await self.conn.execute(stmt)

    async def lock_projects(self, project_ids: Sequence[str]) -> None:
        # Advisory locks in a fixed order: no deadlock between replicas locking overlapping sets.
        if project_ids:
            await self.conn.execute(_LOCK_PROJECTS, {"ps": sorted(set(project_ids))})

    async def with_waiting_tasks(self, project_ids: Sequence[str], per_project: int) -> list[str]:
        if not project_ids:
            return []
        params = {"ps": sorted(set(project_ids)), "lim": per_project}
        rows = await self.conn.execute(_WITH_WAITING_TASKS, params)
        return sorted(str(p) for p in rows.scalars())

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[TaskRecord]:
        if not project_ids:
            return []
        return await self._rows(_dispatchable_within(), {"ps": sorted(set(project_ids)), "limit": limit})

    # Rows another claimer is locking are skipped: two replicas never claim one task.
    def _unrouted_candidates(self, now: datetime, limit: int) -> sa.Select[Any]:
        return super()._unrouted_candidates(now, limit).with_for_update(skip_locked=True)

    def _unrouted(self, now: datetime, limit: int) -> sa.Select[Any]:
        return super()._unrouted(now, limit).with_for_update(skip_locked=True)

    def _overdue(self, now: datetime, limit: int) -> sa.Select[Any]:
        return super()._overdue(now, limit).with_for_update(skip_locked=True)

    def _heartbeat_overdue(self, now: datetime, limit: int) -> sa.Select[Any]:
        return super()._heartbeat_overdue(now, limit).with_for_update(skip_locked=True)

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        driver = await self.tx.driver()
        status: str = await driver.execute(
            pg.RECORD_PROGRESS,
            report.task_id,
            pg.progress_json(report.progress),
            report.at,
            now,
            report.attempt,
            None if report.project_ids is None else list(report.project_ids),
        )
        return status != "UPDATE 0"

    async def projects_with_waiting_work(self, per_project: int, limit: int = 1000) -> list[str]:
        rows = await self.conn.execute(_PROJECTS_WITH_ROOM, {"lim": per_project, "n": limit})
        return [str(p) for p in rows.scalars()]


def _idempotency_slot(submission: Submission) -> tuple[str, str] | None:
    key = submission.task.get("idempotency_key")
    return None if key is None else (submission.task["project_id"], key)


PROGRESS_BATCH = 256  # reports in one UPDATE at most


class PostgresHotPaths:
    """The hot statements over the asyncpg pool, each behind a ``Batcher``: concurrent calls
    share statements. One per storage. Until ``db.open`` made the pool (or in a service run
    without one), the ordinary transactions do the same."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._without_pool = TransactionalHotPaths(db, PostgresTasks)
        self.acquire_timeout = db.own_settings.pool_timeout_seconds  # asyncpg's waits for ever
        # True once the submission is committed; False if its idempotency key was taken
        # (nothing of it written). Two submissions with one key never share a statement.
        self.submit_batches: Batcher[Submission, bool] = Batcher(self._submit, exclusive=_idempotency_slot)
        self.status_batches: Batcher[uuid.UUID, StatusRead | None] = Batcher(self._status, max_batch=128)
        self.project_batches: Batcher[str, ProjectRecord | None] = Batcher(self._projects, max_batch=128)
        # Heartbeats: one UPDATE for the reports that arrive together (a task at most once in
        # a statement: UPDATE … FROM applies one row per task).
        self.progress_batches: Batcher[tuple[ProgressReport, datetime], bool] = Batcher(
            self._record_progress, max_batch=PROGRESS_BATCH, exclusive=lambda item: item[0].task_id
        )

    async def submit(self, submission: Submission) -> bool:
        if self.db.pg is None:
            return await self._without_pool.submit(submission)
        inserted = await self.submit_batches(submission)
        if inserted:
            self.db.on_outbox_commit()  # wakes the relay, as a transaction's commit would
        return inserted

    async def status(self, task_id: uuid.UUID) -> StatusRead | None:
        if self.db.pg is None:
            return await self._without_pool.status(task_id)
        return await self.status_batches(task_id)

    async def project(self, project_id: str) -> ProjectRecord | None:
        if self.db.pg is None:
            return await self._without_pool.project(project_id)
        return await self.project_batches(project_id)

    async def _projects(self, project_ids: Sequence[str]) -> list[ProjectRecord | None]:
        rows = await self._fetch(pg.PROJECTS, list(set(project_ids)))
        found = {row["project_id"]: ProjectRecord(**dict(row)) for row in rows}
        return [found.get(p) for p in project_ids]

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        if self.db.pg is None or report.project_ids is not None:
            # A sender limited to some projects: its own statement, with its scope.
            return await self._without_pool.record_progress(report, now)
        return await self.progress_batches((report, now))

    async def record_progress_many(self, reports: Sequence[ProgressReport], now: datetime) -> list[bool]:
        if self.db.pg is None:
            return await self._without_pool.record_progress_many(reports, now)
        # Already a batch of distinct tasks: straight to the statement, 256 reports at a time.
        kept: list[bool] = []
        for start in range(0, len(reports), PROGRESS_BATCH):
            kept += await self._record_progress([(r, now) for r in reports[start : start + PROGRESS_BATCH]])
        return kept

    async def _record_progress(self, items: Sequence[tuple[ProgressReport, datetime]]) -> list[bool]:
        reports = [r for r, _ in items]
        rows = await self._fetch(
            pg.RECORD_PROGRESS_MANY,
            [r.task_id for r in reports],
            [pg.progress_json(r.progress) for r in reports],
            [r.at for r in reports],
            [r.attempt for r in reports],
            max(now for _, now in items),
        )
        kept = {row["id"] for row in rows}
        return [r.task_id in kept for r in reports]

    async def _status(self, task_ids: Sequence[uuid.UUID]) -> list[StatusRead | None]:
        rows = await self._fetch(pg.STATUS, list(task_ids))
        found = {row["id"]: row for row in rows}
        return [None if (r := found.get(i)) is None else status_read(r) for i in task_ids]

    async def _submit(self, submissions: Sequence[Submission]) -> list[bool]:
        tasks_ = [s.task for s in submissions]
        history = [h for s in submissions for h in s.history]
        events = [e for s in submissions for e in s.events]
        args: list[Any] = [[pg.column_value(c, t.get(c)) for t in tasks_] for c in pg.TASK_COLUMNS]
        args += [[h["task_id"] for h in history], *pg.history_arrays(history)]
        args.append([h["created_at"] for h in history])
        args += [[s.task["id"] for s in submissions for _ in s.events], *pg.event_arrays(events)]
        new = sorted(
            {s.task["project_id"]: s.task["created_at"] for s in submissions if s.new_project}.items()
        )
        args += [[p for p, _ in new], [at for _, at in new]]
        statement = pg.submit_statement(any(t.get("idempotency_key") for t in tasks_))
        inserted = {row["id"] for row in await self._fetch(statement, *args)}
        return [t["id"] in inserted for t in tasks_]

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        pool = self.db.pg
        assert pool is not None
        async with pool.acquire(timeout=self.acquire_timeout) as conn:
            try:
                rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                # No answer within the command timeout (a half-open connection) or a broken
                # one: closed now, so that the pool opens a new one instead of waiting on it.
                conn.terminate()
                raise
            return rows
