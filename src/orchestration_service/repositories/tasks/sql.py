"""Tasks in SQLAlchemy Core: the statements both backends run. ``postgres.py`` and
``sqlite.py`` subclass this with what each does its own way (row locks, the dispatch
queues, the hand-written hot statements)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import task_dependencies, task_history, tasks
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.domain.lifecycle import IN_FLIGHT_STATES, TaskStatus
from orchestration_service.domain.tasks import as_task
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.tasks.port import (
    EventClaim,
    HistoryRecord,
    ProgressReport,
    StatusRead,
    TaskFilter,
    TaskRecord,
)

IN_FLIGHT = [s.value for s in IN_FLIGHT_STATES]


# The most used statements, built once (building a 40-column SELECT costs more CPU than
# running it).
@functools.cache
def _get() -> sa.Select[Any]:
    return sa.select(tasks).where(tasks.c.id == sa.bindparam("task_id", type_=tasks.c.id.type))


@functools.cache
def get_for_update() -> sa.Select[Any]:
    return _get().with_for_update()


@functools.cache
def _get_with_flags() -> sa.Select[Any]:
    child = tasks.alias("child")
    has_children = sa.exists().where(child.c.parent_id == tasks.c.id).label("_has_children")
    has_deps = sa.exists().where(task_dependencies.c.task_id == tasks.c.id).label("_has_deps")
    return sa.select(tasks, has_children, has_deps).where(
        tasks.c.id == sa.bindparam("task_id", type_=tasks.c.id.type)
    )


@functools.lru_cache(maxsize=256)
def _update(keys: tuple[str, ...]) -> sa.Update:
    return (
        tasks.update()
        .where(tasks.c.id == sa.bindparam("_id", type_=tasks.c.id.type))
        .values({k: sa.bindparam(f"_v_{k}", type_=tasks.c[k].type) for k in keys})
    )


def status_read(row: Mapping[str, Any]) -> StatusRead:
    """A row with the ``_has_children`` and ``_has_deps`` flags as a ``StatusRead``."""
    task = as_task(row)  # a copy, without the flags
    flags = cast(dict[str, Any], task)
    has_children = bool(flags.pop("_has_children"))
    has_deps = bool(flags.pop("_has_deps"))
    return StatusRead(task, has_children, has_deps)


def unclaimed(now: datetime) -> sa.ColumnElement[bool]:
    """No router holds a lease on the task."""
    return sa.or_(tasks.c.routing_claimed_until.is_(None), tasks.c.routing_claimed_until < now)


class SqlTasks:
    """The statements both backends share."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.conn = tx.conn

    def _processed_events(self) -> ProcessedEventRepository:
        raise NotImplementedError

    async def _rows(self, stmt: sa.Executable, params: Any = None) -> list[TaskRecord]:
        return [as_task(r) for r in (await self.conn.execute(stmt, params)).mappings()]

    # -- single rows -------------------------------------------------------------------
    async def insert_many(self, rows: Sequence[TaskRecord]) -> None:
        if rows:
            await self.conn.execute(tasks.insert(), list(rows))

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> TaskRecord | None:
        row = (await self.conn.execute(_get(), {"task_id": task_id})).mappings().first()
        return None if row is None else as_task(row)

    async def get_with_flags(self, task_id: uuid.UUID) -> StatusRead | None:
        row = (await self.conn.execute(_get_with_flags(), {"task_id": task_id})).mappings().first()
        return None if row is None else status_read(row)

    async def get_by_idempotency_key(self, project_id: str, key: str) -> TaskRecord | None:
        stmt = sa.select(tasks).where(tasks.c.project_id == project_id, tasks.c.idempotency_key == key)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else as_task(row)

    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRecord]:
        if not task_ids:
            return {}
        rows = await self._rows(sa.select(tasks).where(tasks.c.id.in_(list(task_ids))))
        return {r["id"]: r for r in rows}

    async def update(self, task_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.update_many([(task_id, values)])

    async def update_many(self, changes: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        """One statement (executemany) per set of columns, each statement built once."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for task_id, values in changes:
            keys = tuple(sorted(values))
            groups.setdefault(keys, []).append({"_id": task_id, **{f"_v_{k}": values[k] for k in keys}})
        for keys, params in groups.items():
            await self.conn.execute(_update(keys), params[0] if len(params) == 1 else params)

    async def write_transition(
        self,
        updates: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        history: Sequence[HistoryRecord],
        events: Sequence[OutgoingEvent],
        now: datetime,
    ) -> None:
        await self.update_many(updates)
        await self.add_history(history)
        await SqlOutbox(self.tx).add(events)

    async def claim_event_and_lock(
        self, *, event_id: str, event_type: str, source: str | None, outcome: str, task_id: uuid.UUID
    ) -> EventClaim:
        task = await self.get(task_id, for_update=True)
        if task is None:
            return EventClaim(False, None)
        claimed = await self._processed_events().claim(
            task["project_id"], event_id, event_type, source, outcome
        )
        return EventClaim(claimed, task)

    # -- history and dependencies ------------------------------------------------------
    async def add_history(self, rows: Sequence[HistoryRecord]) -> None:
        if rows:
            await self.conn.execute(task_history.insert(), list(rows))

    async def history(self, task_id: uuid.UUID) -> Sequence[HistoryRecord]:
        stmt = sa.select(task_history).where(task_history.c.task_id == task_id).order_by(task_history.c.id)
        rows = (await self.conn.execute(stmt)).mappings()
        return [cast(HistoryRecord, dict(r)) for r in rows]

    async def subtasks(self, parent_id: uuid.UUID) -> Sequence[TaskRecord]:
        c = tasks.c
        stmt = (
            sa.select(c.id, c.status, c.description, c.tier, c.domain, c.created_at, c.completed_at)
            .where(c.parent_id == parent_id)
            .order_by(c.created_at, c.id)
        )
        return await self._rows(stmt)

    async def descendants(self, task_id: uuid.UUID, *, limit: int) -> Sequence[TaskRecord]:
        c = tasks.c
        child = tasks.alias("child")
        # Recursive on both backends; each level reads ix_tasks_parent.
        tree = sa.select(c.id).where(c.parent_id == task_id).cte("tree", recursive=True)
        tree = tree.union_all(sa.select(child.c.id).where(child.c.parent_id == tree.c.id))
        stmt = (
            sa.select(c.id, c.parent_id, c.project_id, c.status, c.description, c.depth, c.created_at)
            .where(c.id.in_(sa.select(tree.c.id)))
            .order_by(c.depth, c.created_at, c.id)
            .limit(limit)
        )
        return await self._rows(stmt)

    async def dependencies_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        if not task_ids:
            return {}
        stmt = sa.select(task_dependencies).where(task_dependencies.c.task_id.in_(list(task_ids)))
        out: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in (await self.conn.execute(stmt)).mappings():
            out.setdefault(row["task_id"], []).append(row["depends_on_id"])
        return out

    async def add_dependencies(self, rows: Sequence[dict[str, uuid.UUID]]) -> None:
        if rows:
            await self.conn.execute(task_dependencies.insert(), list(rows))

    # -- lists and counts --------------------------------------------------------------
    @staticmethod
    def _where(f: TaskFilter) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if f.project_ids is not None:
            if len(f.project_ids) == 1:
                clauses.append(tasks.c.project_id == f.project_ids[0])
            else:
                clauses.append(tasks.c.project_id.in_(list(f.project_ids)))
        if f.statuses:
            if len(f.statuses) == 1:
                clauses.append(tasks.c.status == f.statuses[0])
            else:
                clauses.append(tasks.c.status.in_(list(f.statuses)))
        if f.priority:
            clauses.append(tasks.c.priority == f.priority)
        if f.created_after:
            clauses.append(tasks.c.created_at >= f.created_after)
        if f.created_before:
            clauses.append(tasks.c.created_at < f.created_before)
        if f.parent_id:
            clauses.append(tasks.c.parent_id == f.parent_id)
        return clauses

    async def find(
        self, f: TaskFilter, *, limit: int, offset: int = 0, after: tuple[datetime, uuid.UUID] | None = None
    ) -> Sequence[TaskRecord]:
        stmt = sa.select(tasks).where(*self._where(f))
        if after is not None:
            # The plain bound on created_at lets either backend start the index scan there.
            stmt = stmt.where(
                tasks.c.created_at <= after[0], sa.tuple_(tasks.c.created_at, tasks.c.id) < sa.tuple_(*after)
            )
        stmt = stmt.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset)
        return await self._rows(stmt)

    async def count(self, f: TaskFilter, *, cap: int | None = None) -> int:
        # Counting stops at ``cap`` + 1: at a million tasks a page does not read the whole
        # table to say how many there are.
        matching = sa.select(sa.literal(1)).select_from(tasks).where(*self._where(f))
        if cap is not None:
            matching = matching.limit(cap + 1)
        stmt = sa.select(sa.func.count()).select_from(matching.subquery())
        return int((await self.conn.execute(stmt)).scalar_one())

    async def counts_by_status(self, project_ids: Sequence[str] | None) -> dict[str, dict[str, int]]:
        stmt = sa.select(tasks.c.project_id, tasks.c.status, sa.func.count()).group_by(
            tasks.c.project_id, tasks.c.status
        )
        if project_ids is not None:
            stmt = stmt.where(tasks.c.project_id.in_(list(project_ids)))
        out: dict[str, dict[str, int]] = {}
        for project_id, status, n in (await self.conn.execute(stmt)).all():
            out.setdefault(project_id, {})[status] = int(n)
        return out

    async def counts_by_state(self) -> dict[str, int]:
        stmt = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        return {str(status): int(n) for status, n in (await self.conn.execute(stmt)).all()}

    async def oldest_pending_age_seconds(self) -> float:
        """Age of the oldest pending task of any project (0 when none); ix_tasks_status_created."""
        stmt = sa.select(sa.func.min(tasks.c.created_at)).where(tasks.c.status == TaskStatus.PENDING.value)
        value = (await self.conn.execute(stmt)).scalar()
        if value is None:
            return 0.0
        # SQLite's aggregate loses the column type.
        oldest: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    async def oldest_waiting(self, project_id: str) -> TaskRecord | None:
        stmt = (
            sa.select(tasks.c.id, tasks.c.created_at, tasks.c.priority)
            .where(tasks.c.project_id == project_id, tasks.c.status == TaskStatus.PENDING.value)
            .order_by(tasks.c.created_at)
            .limit(1)
        )
        rows = await self._rows(stmt)
        return rows[0] if rows else None

    async def recent_execution_times(self, project_id: str | None, limit: int = 100) -> list[int]:
        stmt = (
            sa.select(tasks.c.execution_time_ms)
            .where(tasks.c.status == TaskStatus.COMPLETED.value, tasks.c.execution_time_ms.is_not(None))
            .order_by(tasks.c.completed_at.desc())
            .limit(limit)
        )
        if project_id is not None:
            stmt = stmt.where(tasks.c.project_id == project_id)
        return [int(v) for v in (await self.conn.execute(stmt)).scalars()]

    async def recent_durations(
        self, *, tier: str | None = None, domain: str | None = None, limit: int = 100
    ) -> list[float]:
        stmt = (
            sa.select(tasks.c.created_at, tasks.c.completed_at)
            .where(
                tasks.c.status == TaskStatus.COMPLETED.value,
                tasks.c.completed_at.is_not(None),
                # Decomposed parents never ran on a worker (no started_at): their time is
                # their children's, not a sample of their tier's.
                tasks.c.started_at.is_not(None),
            )
            .order_by(tasks.c.completed_at.desc())
            .limit(limit)
        )
        if tier:
            stmt = stmt.where(tasks.c.tier == tier)
        if domain:
            stmt = stmt.where(tasks.c.domain == domain)
        rows = (await self.conn.execute(stmt)).all()
        return [(done - created).total_seconds() for created, done in rows]

    async def cancellable_since(
        self, project_id: str, after: datetime, statuses: Sequence[str]
    ) -> list[uuid.UUID]:
        stmt = (
            sa.select(tasks.c.id)
            .where(
                tasks.c.project_id == project_id,
                tasks.c.status.in_(list(statuses)),
                sa.or_(tasks.c.created_at > after, tasks.c.started_at > after),
            )
            .order_by(tasks.c.depth, tasks.c.created_at, tasks.c.id)
        )
        return list((await self.conn.execute(stmt)).scalars())

    # -- dispatching -------------------------------------------------------------------
    async def in_flight_counts(self, project_ids: Sequence[str]) -> dict[str, int]:
        stmt = (
            sa.select(tasks.c.project_id, sa.func.count())
            .where(tasks.c.project_id.in_(list(project_ids)), tasks.c.status.in_(IN_FLIGHT))
            .group_by(tasks.c.project_id)
        )
        return {str(p): int(n) for p, n in (await self.conn.execute(stmt)).all()}

    async def dispatchable(self, project_id: str, limit: int) -> Sequence[TaskRecord]:
        dep = task_dependencies.alias("dep")
        blocker = tasks.alias("blocker")
        unfinished_dependency = (
            sa.select(sa.literal(1))
            .select_from(dep.join(blocker, blocker.c.id == dep.c.depends_on_id))
            .where(dep.c.task_id == tasks.c.id, blocker.c.status != TaskStatus.COMPLETED.value)
            .exists()
        )
        stmt = (
            sa.select(tasks)
            .where(
                tasks.c.project_id == project_id,
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_not(None),
                ~unfinished_dependency,
            )
            .order_by(tasks.c.priority_rank.desc(), tasks.c.created_at, tasks.c.id)
            .limit(limit)
        )
        return await self._rows(stmt)

    def _unrouted_candidates(self, now: datetime, limit: int) -> sa.Select[Any]:
        return (
            sa.select(tasks.c.id)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_(None), unclaimed(now))
            .order_by(tasks.c.created_at)
            .limit(limit)
        )

    async def claim_unrouted(self, now: datetime, until: datetime, limit: int) -> list[TaskRecord]:
        # One UPDATE: a task another router leases is not taken; a crashed claimer's lease
        # simply expires.
        if limit <= 0:
            return []
        stmt = (
            tasks.update()
            .where(
                tasks.c.id.in_(self._unrouted_candidates(now, limit).scalar_subquery()),
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_(None),
                unclaimed(now),
            )
            .values(routing_claimed_until=until)
            .returning(*tasks.c)
        )
        rows = await self._rows(stmt)
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        return rows

    def _unrouted(self, now: datetime, limit: int) -> sa.Select[Any]:
        return (
            sa.select(tasks)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_(None), unclaimed(now))
            .order_by(tasks.c.created_at, tasks.c.id)
            .limit(limit)
        )

    async def lock_unrouted(self, now: datetime, limit: int) -> list[TaskRecord]:
        if limit <= 0:
            return []
        return await self._rows(self._unrouted(now, limit))

    async def mark_routed(self, task_id: uuid.UUID, values: dict[str, Any]) -> bool:
        # False if it was cancelled (or routed by another router) meanwhile.
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == task_id,
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_(None),
            )
            .values(**values, routing_claimed_until=None)
        )
        return (await self.conn.execute(stmt)).rowcount == 1

    async def release_claims(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Give back claims on tasks not routed (shutdown): another router takes them now."""
        if task_ids:
            await self.conn.execute(
                tasks.update()
                .where(tasks.c.id.in_(list(task_ids)), tasks.c.routed_at.is_(None))
                .values(routing_claimed_until=None)
            )

    def _overdue(self, now: datetime, limit: int) -> sa.Select[Any]:
        return (
            sa.select(tasks)
            .where(tasks.c.status.in_(IN_FLIGHT), tasks.c.deadline_at < now)
            .order_by(tasks.c.deadline_at)
            .limit(limit)
        )

    async def overdue(self, now: datetime, limit: int) -> Sequence[TaskRecord]:
        return await self._rows(self._overdue(now, limit))

    def _heartbeat_overdue(self, now: datetime, limit: int) -> sa.Select[Any]:
        return (
            sa.select(tasks)
            .where(tasks.c.status == TaskStatus.RUNNING.value, tasks.c.heartbeat_due_at < now)
            .order_by(tasks.c.heartbeat_due_at)
            .limit(limit)
        )

    async def heartbeat_overdue(self, now: datetime, limit: int) -> Sequence[TaskRecord]:
        return await self._rows(self._heartbeat_overdue(now, limit))

    async def progress_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
        if not task_ids:
            return {}
        rows = await self.conn.execute(
            sa.select(tasks.c.id, tasks.c.progress).where(tasks.c.id.in_(list(task_ids)))
        )
        return {row.id: row.progress for row in rows}

    @staticmethod
    def _progress_target(report: ProgressReport) -> list[sa.ColumnElement[bool]]:
        """Which row a report may change: its task, running, in its attempt and its sender's
        projects, with no later report kept."""
        where = [
            tasks.c.id == report.task_id,
            tasks.c.status == TaskStatus.RUNNING.value,
            sa.or_(tasks.c.progress_at.is_(None), tasks.c.progress_at < report.at),
        ]
        if report.attempt is not None:
            where.append(tasks.c.attempt == report.attempt)
        if report.project_ids is not None:
            where.append(tasks.c.project_id.in_(list(report.project_ids)))
        return where

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        # SQLite has no interval arithmetic on these timestamps: the due time is computed
        # here, between a read and a write of the one row (SQLite runs one writer at a time).
        where = self._progress_target(report)
        seconds = (await self.conn.execute(sa.select(tasks.c.heartbeat_seconds).where(*where))).first()
        if seconds is None:
            return False
        due = now + timedelta(seconds=seconds[0]) if seconds[0] else None
        values = {"progress": report.progress, "progress_at": report.at, "heartbeat_due_at": due}
        result = await self.conn.execute(sa.update(tasks).where(*where).values(values))
        return bool(result.rowcount)
