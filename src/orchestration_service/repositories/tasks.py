"""All SQL about tasks, their history and their dependencies."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.tables import task_dependencies, task_history, tasks
from orchestration_service.domain.lifecycle import IN_FLIGHT_STATES, TaskStatus

_IN_FLIGHT = [s.value for s in IN_FLIGHT_STATES]


@dataclass(frozen=True, slots=True)
class TaskFilter:
    project_ids: Sequence[str] | None = None  # None = every project
    statuses: Sequence[str] = ()
    priority: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    parent_id: uuid.UUID | None = None


# PostgreSQL: the dispatch queues of several projects in one statement: each project's
# tasks in flight counted, then its queue read through ix_tasks_dispatch_queue up to its
# free slots (LATERAL joins; SQLite loops instead). Rows another transaction holds (a
# cancel, which locks the task and then its project) are skipped rather than waited for:
# waiting would deadlock against that lock order.
_DISPATCHABLE_WITHIN = """
SELECT {columns} FROM unnest(CAST(:ps AS text[])) AS p(project_id)
CROSS JOIN LATERAL (
    SELECT :limit - count(*) AS free FROM tasks c
    WHERE c.project_id = p.project_id AND c.status IN ({in_flight})
) AS f
CROSS JOIN LATERAL (
    SELECT * FROM tasks
    WHERE f.free > 0 AND tasks.project_id = p.project_id AND tasks.status = 'pending'
      AND tasks.routed_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM task_dependencies dep JOIN tasks blocker ON blocker.id = dep.depends_on_id
          WHERE dep.task_id = tasks.id AND blocker.status <> 'completed')
    ORDER BY tasks.priority_rank DESC, tasks.created_at, tasks.id
    LIMIT GREATEST(f.free, 0)
    FOR UPDATE OF tasks SKIP LOCKED
) AS t
""".format(
    columns=", ".join(f"t.{c.name}" for c in tasks.c),
    in_flight=", ".join(f"'{s}'" for s in sorted(_IN_FLIGHT)),
)


# The most used statements, built once (building a 40-column SELECT costs more CPU than
# running it).
@functools.cache
def _get() -> sa.Select[Any]:
    return sa.select(tasks).where(tasks.c.id == sa.bindparam("task_id", type_=tasks.c.id.type))


@functools.cache
def _get_for_update() -> sa.Select[Any]:
    return _get().with_for_update()


@functools.cache
def _get_with_flags() -> sa.Select[Any]:
    child = tasks.alias("child")
    has_children = sa.exists().where(child.c.parent_id == tasks.c.id).label("_has_children")
    has_deps = sa.exists().where(task_dependencies.c.task_id == tasks.c.id).label("_has_deps")
    return sa.select(tasks, has_children, has_deps).where(
        tasks.c.id == sa.bindparam("task_id", type_=tasks.c.id.type)
    )


@functools.cache
def _dispatchable_within() -> sa.TextualSelect:
    return sa.text(_DISPATCHABLE_WITHIN).columns(*tasks.c)


@functools.lru_cache(maxsize=256)
def _update(keys: tuple[str, ...]) -> sa.Update:
    return (
        tasks.update()
        .where(tasks.c.id == sa.bindparam("_id", type_=tasks.c.id.type))
        .values({k: sa.bindparam(f"_v_{k}", type_=tasks.c[k].type) for k in keys})
    )


_LOCK_PROJECTS = sa.text(
    "SELECT pg_advisory_xact_lock(7301, hashtext(p)) "
    "FROM (SELECT unnest(CAST(:ps AS text[])) AS p ORDER BY 1) AS s"
)

# Which of these projects have a routed task waiting: one index probe each (the partial
# ``ix_tasks_dispatch_queue``), however long a queue is.
# Project ``p`` has a routed task waiting and fewer than :lim in flight (the count stops
# at :lim rows): a dispatch could start a task there.
_ROOM_FOR_A_WAITING_TASK = (
    "EXISTS (SELECT 1 FROM tasks WHERE project_id = p AND status = 'pending' AND routed_at IS NOT NULL)"
    " AND (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE project_id = p"
    " AND status IN ('running', 'validating') LIMIT :lim) AS f) < :lim"
)
_WITH_WAITING_TASKS = sa.text(
    f"SELECT p FROM unnest(CAST(:ps AS text[])) AS p WHERE {_ROOM_FOR_A_WAITING_TASK}"
)
# Every project with a pending task, one index probe each (a loose index scan over the
# dispatch queue's index), instead of reading every pending task: a backlog of a million
# tasks in a few hundred projects costs a few hundred probes.
_PROJECTS_WITH_ROOM = sa.text(
    "WITH RECURSIVE w(p) AS ("
    " (SELECT project_id FROM tasks WHERE status = 'pending' ORDER BY project_id LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT t.project_id FROM tasks t WHERE t.status = 'pending' AND t.project_id > w.p"
    " ORDER BY t.project_id LIMIT 1) FROM w WHERE w.p IS NOT NULL)"
    f" SELECT p FROM w WHERE p IS NOT NULL AND {_ROOM_FOR_A_WAITING_TASK} LIMIT :n"
)


class TaskRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # -- single rows -------------------------------------------------------------------
    async def insert(self, values: dict[str, Any]) -> None:
        await self.conn.execute(tasks.insert(), values)

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(tasks.insert(), rows)

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> RowMapping | None:
        locking = for_update and self.conn.dialect.name == "postgresql"
        stmt = _get_for_update() if locking else _get()
        row: RowMapping | None = (await self.conn.execute(stmt, {"task_id": task_id})).mappings().first()
        return row

    async def get_with_flags(self, task_id: uuid.UUID) -> tuple[RowMapping | None, bool, bool]:
        """The task, whether it has subtasks, and whether it has dependencies: one statement,
        so the common case (no subtasks, no dependencies) reads the status in one round trip."""
        row = (await self.conn.execute(_get_with_flags(), {"task_id": task_id})).mappings().first()
        if row is None:
            return None, False, False
        return row, bool(row["_has_children"]), bool(row["_has_deps"])

    async def get_by_idempotency_key(self, project_id: str, key: str) -> RowMapping | None:
        stmt = sa.select(tasks).where(tasks.c.project_id == project_id, tasks.c.idempotency_key == key)
        return (await self.conn.execute(stmt)).mappings().first()

    async def update(self, task_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.update_many([(task_id, values)])

    async def update_many(self, changes: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        """Several rows, each with its own values: one statement (executemany) per set of
        columns, each statement built once."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for task_id, values in changes:
            keys = tuple(sorted(values))
            groups.setdefault(keys, []).append({"_id": task_id, **{f"_v_{k}": values[k] for k in keys}})
        for keys, params in groups.items():
            await self.conn.execute(_update(keys), params[0] if len(params) == 1 else params)

    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RowMapping]:
        if not task_ids:
            return {}
        rows = (await self.conn.execute(sa.select(tasks).where(tasks.c.id.in_(list(task_ids))))).mappings()
        return {r["id"]: r for r in rows}

    # -- history -----------------------------------------------------------------------
    async def add_history(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(task_history.insert(), rows)

    async def history(self, task_id: uuid.UUID) -> Sequence[RowMapping]:
        stmt = sa.select(task_history).where(task_history.c.task_id == task_id).order_by(task_history.c.id)
        return (await self.conn.execute(stmt)).mappings().all()

    # -- lists -------------------------------------------------------------------------
    def _where(self, f: TaskFilter) -> list[sa.ColumnElement[bool]]:
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
        self,
        f: TaskFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[RowMapping]:
        """Newest first; ``after`` (the last row of the previous page) is the keyset cursor."""
        stmt = sa.select(tasks).where(*self._where(f))
        if after is not None:
            # The plain bound on created_at lets either backend start the index scan there.
            stmt = stmt.where(
                tasks.c.created_at <= after[0], sa.tuple_(tasks.c.created_at, tasks.c.id) < sa.tuple_(*after)
            )
        stmt = stmt.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset)
        return (await self.conn.execute(stmt)).mappings().all()

    async def count(self, f: TaskFilter, *, cap: int | None = None) -> int:
        """How many tasks match, counting no further than ``cap`` + 1 (so at a million tasks
        a page does not read the whole table to say how many there are)."""
        matching = sa.select(sa.literal(1)).select_from(tasks).where(*self._where(f))
        if cap is not None:
            matching = matching.limit(cap + 1)
        stmt = sa.select(sa.func.count()).select_from(matching.subquery())
        return int((await self.conn.execute(stmt)).scalar_one())

    async def subtasks(self, parent_id: uuid.UUID) -> Sequence[RowMapping]:
        stmt = (
            sa.select(
                tasks.c.id,
                tasks.c.status,
                tasks.c.description,
                tasks.c.tier,
                tasks.c.domain,
                tasks.c.created_at,
                tasks.c.completed_at,
            )
            .where(tasks.c.parent_id == parent_id)
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        return (await self.conn.execute(stmt)).mappings().all()

    async def dependencies_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        if not task_ids:
            return {}
        stmt = sa.select(task_dependencies).where(task_dependencies.c.task_id.in_(list(task_ids)))
        out: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in (await self.conn.execute(stmt)).mappings():
            out.setdefault(row["task_id"], []).append(row["depends_on_id"])
        return out

    async def add_dependencies(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(task_dependencies.insert(), rows)

    # -- projects ----------------------------------------------------------------------
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

    async def oldest_waiting(self, project_id: str) -> RowMapping | None:
        stmt = (
            sa.select(tasks.c.id, tasks.c.created_at, tasks.c.priority)
            .where(tasks.c.project_id == project_id, tasks.c.status == TaskStatus.PENDING.value)
            .order_by(tasks.c.created_at)
            .limit(1)
        )
        return (await self.conn.execute(stmt)).mappings().first()

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
        """Seconds from submission to completion of recent completed tasks of a kind."""
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

    # -- dispatching -------------------------------------------------------------------
    async def lock_project(self, project_id: str) -> None:
        """Serialise dispatch decisions of one project across replicas (PostgreSQL).
        SQLite needs nothing: its write transactions are already serial."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(7301, hashtext(:p))"), {"p": project_id}
            )

    async def lock_rows(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Lock these tasks' rows now, in id order (PostgreSQL; SQLite's write transaction is
        already exclusive)."""
        if self.conn.dialect.name == "postgresql" and task_ids:
            stmt = (
                sa.select(tasks.c.id)
                .where(tasks.c.id.in_(sorted(task_ids)))
                .order_by(tasks.c.id)
                .with_for_update()
            )
            await self.conn.execute(stmt)

    async def lock_projects(self, project_ids: Sequence[str]) -> None:
        """``lock_project`` for several, in one statement and in a fixed order (no deadlock
        between two replicas locking overlapping sets)."""
        if self.conn.dialect.name == "postgresql" and project_ids:
            await self.conn.execute(_LOCK_PROJECTS, {"ps": sorted(set(project_ids))})

    async def with_waiting_tasks(self, project_ids: Sequence[str], per_project: int) -> list[str]:
        """The projects among these that have a routed task waiting and a free slot (fewer
        than ``per_project`` in flight), sorted: the ones a dispatch could start a task in."""
        if not project_ids:
            return []
        projects = sorted(set(project_ids))
        if self.conn.dialect.name == "postgresql":
            rows = await self.conn.execute(_WITH_WAITING_TASKS, {"ps": projects, "lim": per_project})
            return sorted(str(p) for p in rows.scalars())
        rows = await self.conn.execute(
            sa.select(tasks.c.project_id)
            .where(
                tasks.c.project_id.in_(projects),
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_not(None),
            )
            .distinct()
        )
        waiting = [str(p) for p in rows.scalars()]
        busy = await self.in_flight_counts(waiting) if waiting else {}
        return sorted(p for p in waiting if busy.get(p, 0) < per_project)

    async def in_flight_counts(self, project_ids: Sequence[str]) -> dict[str, int]:
        stmt = (
            sa.select(tasks.c.project_id, sa.func.count())
            .where(tasks.c.project_id.in_(list(project_ids)), tasks.c.status.in_(_IN_FLIGHT))
            .group_by(tasks.c.project_id)
        )
        return {str(p): int(n) for p, n in (await self.conn.execute(stmt)).all()}

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[RowMapping]:
        """For each project, ``dispatchable`` up to its free slots (``limit`` minus its tasks in
        flight). Call it after ``lock_projects``, so the counts are not stale."""
        if not project_ids:
            return []
        projects = sorted(set(project_ids))
        if self.conn.dialect.name == "postgresql":
            stmt = _dispatchable_within()
            return list((await self.conn.execute(stmt, {"ps": projects, "limit": limit})).mappings().all())
        counts = await self.in_flight_counts(projects)
        out: list[RowMapping] = []
        for project_id in projects:
            free = limit - counts.get(project_id, 0)
            if free > 0:
                out.extend(await self.dispatchable(project_id, free))
        return out

    async def in_flight_count(self, project_id: str) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.project_id == project_id, tasks.c.status.in_(_IN_FLIGHT))
        )
        return int((await self.conn.execute(stmt)).scalar_one())

    async def dispatchable(self, project_id: str, limit: int) -> Sequence[RowMapping]:
        """Routed pending tasks whose dependencies have all completed, in dispatch order."""
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
        return (await self.conn.execute(stmt)).mappings().all()

    async def claim_unrouted(self, now: datetime, until: datetime, limit: int) -> list[RowMapping]:
        """Claim up to ``limit`` unrouted pending tasks until ``until`` (a lease), oldest first.

        One UPDATE: a task claimed by another router whose lease has not expired is not
        taken, and on PostgreSQL rows another claimer is locking are skipped, so two
        replicas never claim the same task. A crashed claimer's lease simply expires."""
        if limit <= 0:
            return []
        unclaimed = sa.or_(tasks.c.routing_claimed_until.is_(None), tasks.c.routing_claimed_until < now)
        candidates = (
            sa.select(tasks.c.id)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_(None), unclaimed)
            .order_by(tasks.c.created_at)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        stmt = (
            tasks.update()
            .where(
                tasks.c.id.in_(candidates.scalar_subquery()),
                tasks.c.status == TaskStatus.PENDING.value,
                tasks.c.routed_at.is_(None),
                unclaimed,
            )
            .values(routing_claimed_until=until)
            .returning(*tasks.c)
        )
        rows = list((await self.conn.execute(stmt)).mappings().all())
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        return rows

    async def lock_unrouted(self, now: datetime, limit: int) -> list[RowMapping]:
        """Unrouted pending tasks no router holds a lease on, oldest first, locked for this
        transaction (PostgreSQL skips rows another replica has locked; SQLite's write
        transaction is already exclusive). For routing that needs no lease: the built-in
        analyzer decides within the same transaction."""
        if limit <= 0:
            return []
        unclaimed = sa.or_(tasks.c.routing_claimed_until.is_(None), tasks.c.routing_claimed_until < now)
        stmt = (
            sa.select(tasks)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_(None), unclaimed)
            .order_by(tasks.c.created_at, tasks.c.id)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return list((await self.conn.execute(stmt)).mappings().all())

    async def mark_routed(self, task_id: uuid.UUID, values: dict[str, Any]) -> bool:
        """Write a routing decision if the task is still pending and unrouted; False if it
        was cancelled (or routed by another router) meanwhile."""
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

    async def overdue(self, now: datetime, limit: int) -> Sequence[RowMapping]:
        stmt = (
            sa.select(tasks)
            .where(tasks.c.status.in_(_IN_FLIGHT), tasks.c.deadline_at < now)
            .order_by(tasks.c.deadline_at)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return (await self.conn.execute(stmt)).mappings().all()

    async def projects_with_waiting_work(self, per_project: int, limit: int = 1000) -> list[str]:
        """Projects with a routed task waiting *and* a free slot (fewer than ``per_project``
        in flight), at most ``limit``. Full projects are left out: locking them finds
        nothing to dispatch, and with more than ``limit`` of them they hid the ones that
        had room."""
        if self.conn.dialect.name == "postgresql":
            rows = await self.conn.execute(_PROJECTS_WITH_ROOM, {"lim": per_project, "n": limit})
            return [str(p) for p in rows.scalars()]
        waiting = (
            sa.select(tasks.c.project_id)
            .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.routed_at.is_not(None))
            .distinct()
            .subquery("w")
        )
        # Counts at most ``per_project`` rows of a project (an index range on project, status).
        in_flight = (
            sa.select(sa.literal(1))
            .where(tasks.c.project_id == waiting.c.project_id, tasks.c.status.in_(_IN_FLIGHT))
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
