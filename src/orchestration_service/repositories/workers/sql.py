"""Workers and the fleet's reads in SQL: one statement set; the upserts' dialect per backend
(``postgres.py``, ``sqlite.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import tasks, worker_tasks, workers
from orchestration_service.domain.lifecycle import IN_FLIGHT_STATES, TaskStatus
from orchestration_service.repositories.workers.port import (
    AttemptSeen,
    FailureFilter,
    FailurePage,
    TierCount,
    WorkerPage,
    WorkerSummary,
)

_QUEUED = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value, TaskStatus.VALIDATING.value)
_IN_FLIGHT = tuple(s.value for s in IN_FLIGHT_STATES)
_FAILURE_COLUMNS = (
    tasks.c.id,
    tasks.c.project_id,
    tasks.c.description,
    tasks.c.tier,
    tasks.c.domain,
    tasks.c.attempt,
    tasks.c.max_attempts,
    tasks.c.parent_id,
    tasks.c.error,
    tasks.c.created_at,
    tasks.c.completed_at,
)


class SqlWorkers:
    def __init__(self, tx: Transaction) -> None:
        self.conn = tx.conn

    # -- the dialect's INSERT … ON CONFLICT and GREATEST --------------------------------
    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        raise NotImplementedError

    def _greatest(self, a: Any, b: Any) -> sa.ColumnElement[Any]:
        raise NotImplementedError

    # -- writes --------------------------------------------------------------------------
    async def touch(self, worker_id: str, at: datetime) -> None:
        await self.touch_many([worker_id], at)

    async def touch_many(self, worker_ids: Sequence[str], at: datetime) -> None:
        if not worker_ids:
            return
        # In one order, so that two processes' statements take the rows' locks alike.
        rows = [{"worker_id": w, "first_seen": at, "last_seen": at} for w in sorted(set(worker_ids))]
        ins = self._insert(workers).values(rows)
        stmt = ins.on_conflict_do_update(
            index_elements=[workers.c.worker_id],
            set_={"last_seen": ins.excluded.last_seen},
            where=workers.c.last_seen < ins.excluded.last_seen,
        )
        await self.conn.execute(stmt)

    async def record_attempt(
        self,
        *,
        task_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        project_id: str,
        tier: str | None,
        model: str | None,
        at: datetime,
        outcome: str | None = None,
    ) -> None:
        row = {
            "task_id": task_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "project_id": project_id,
            "tier": tier,
            "model": model,
            "first_seen": at,
            "last_seen": at,
            "outcome": outcome,
        }
        await self._upsert_attempts([row])

    async def record_attempts(self, rows: Sequence[AttemptSeen], at: datetime) -> None:
        if not rows:
            return
        values = [
            {
                "task_id": r.task_id,
                "attempt": r.attempt,
                "worker_id": r.worker_id,
                "project_id": r.project_id,
                "tier": r.tier,
                "model": None,
                "first_seen": at,
                "last_seen": at,
                "outcome": None,
            }
            for r in sorted(rows, key=lambda r: (r.task_id, r.attempt))  # one lock order
        ]
        await self._upsert_attempts(values)

    async def _upsert_attempts(self, values: list[dict[str, Any]]) -> None:
        wt = worker_tasks
        ins = self._insert(wt).values(values)
        x = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[wt.c.task_id, wt.c.attempt],
            set_={
                "worker_id": x.worker_id,
                "tier": sa.func.coalesce(x.tier, wt.c.tier),
                "model": sa.func.coalesce(x.model, wt.c.model),
                "last_seen": self._greatest(wt.c.last_seen, x.last_seen),
                "outcome": sa.func.coalesce(x.outcome, wt.c.outcome),
            },
        )
        await self.conn.execute(stmt)

    async def set_outcome(self, task_id: uuid.UUID, attempt: int, outcome: str, at: datetime) -> bool:
        wt = worker_tasks
        result = await self.conn.execute(
            wt.update()
            .where(wt.c.task_id == task_id, wt.c.attempt == attempt, wt.c.outcome.is_(None))
            .values(
                outcome=outcome, last_seen=self._greatest(wt.c.last_seen, sa.literal(at, wt.c.last_seen.type))
            )
        )
        return bool(result.rowcount)

    # -- reads ---------------------------------------------------------------------------
    async def page(self, project_ids: Sequence[str] | None, *, limit: int, offset: int = 0) -> WorkerPage:
        wt = worker_tasks
        if project_ids is None:
            heads = (
                await self.conn.execute(
                    sa.select(workers.c.worker_id, workers.c.first_seen, workers.c.last_seen)
                    .order_by(workers.c.last_seen.desc(), workers.c.worker_id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
            total = (await self.conn.execute(sa.select(sa.func.count()).select_from(workers))).scalar_one()
        else:
            last = sa.func.max(wt.c.last_seen)
            heads = (
                await self.conn.execute(
                    sa.select(wt.c.worker_id, sa.func.min(wt.c.first_seen), last)
                    .where(wt.c.project_id.in_(project_ids))
                    .group_by(wt.c.worker_id)
                    .order_by(last.desc(), wt.c.worker_id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
            total = (
                await self.conn.execute(
                    sa.select(sa.func.count(sa.distinct(wt.c.worker_id))).where(
                        wt.c.project_id.in_(project_ids)
                    )
                )
            ).scalar_one()
        ids = [h[0] for h in heads]
        stats = await self._stats(ids, project_ids) if ids else {}
        rows = []
        for worker_id, first_seen, last_seen in heads:
            s = stats.get(worker_id, {})
            rows.append(
                WorkerSummary(
                    worker_id=worker_id,
                    first_seen=first_seen,
                    last_seen=last_seen,
                    tiers=tuple(sorted(s.get("tiers", ()))),
                    models=tuple(sorted(s.get("models", ()))),
                    in_flight=int(s.get("in_flight", 0)),
                    completed=int(s.get("completed", 0)),
                    failed=int(s.get("failed", 0)),
                    rejected=int(s.get("rejected", 0)),
                )
            )
        return WorkerPage(rows, int(total))

    async def _stats(self, ids: list[str], project_ids: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        """Counts, tiers and models of these workers (within ``project_ids`` when given)."""
        wt = worker_tasks
        where = [wt.c.worker_id.in_(ids)]
        if project_ids is not None:
            where.append(wt.c.project_id.in_(project_ids))
        out: dict[str, dict[str, Any]] = {
            i: {"tiers": set(), "models": set(), "completed": 0, "failed": 0, "rejected": 0} for i in ids
        }
        # One pass over the workers' attempts gives both the counts and the tiers and models.
        groups = await self.conn.execute(
            sa.select(wt.c.worker_id, wt.c.tier, wt.c.model, wt.c.outcome, sa.func.count())
            .where(*where)
            .group_by(wt.c.worker_id, wt.c.outcome, wt.c.tier, wt.c.model)  # the index order
        )
        for worker_id, tier, model, outcome, n in groups:
            row = out[worker_id]
            if outcome in ("completed", "failed", "rejected"):
                row[outcome] += n
            if tier:
                row["tiers"].add(tier)
            if model:
                row["models"].add(model)
        # In flight: the attempt is still the task's current one and the task is in flight
        # (a task that timed out or was cancelled left its worker without an outcome).
        flying = await self.conn.execute(
            sa.select(wt.c.worker_id, sa.func.count())
            .select_from(wt.join(tasks, sa.and_(tasks.c.id == wt.c.task_id, tasks.c.attempt == wt.c.attempt)))
            .where(*where, wt.c.outcome.is_(None), tasks.c.status.in_(_IN_FLIGHT))
            .group_by(wt.c.worker_id)
        )
        for worker_id, n in flying:
            out[worker_id]["in_flight"] = n
        return out

    async def tier_counts(self, project_ids: Sequence[str] | None) -> Sequence[TierCount]:
        stmt = (
            sa.select(tasks.c.tier, tasks.c.status, sa.func.count(), sa.func.min(tasks.c.created_at))
            .where(tasks.c.status.in_(_QUEUED))
            .group_by(tasks.c.tier, tasks.c.status)
        )
        if project_ids is not None:
            stmt = stmt.where(tasks.c.project_id.in_(project_ids))
        # min() keeps the column's type, so SQLite's stored text comes back as a datetime.
        return [
            TierCount(tier, status, int(n), oldest)
            for tier, status, n, oldest in (await self.conn.execute(stmt))
        ]

    async def failures(
        self,
        f: FailureFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
        cap: int,
    ) -> FailurePage:
        where: list[sa.ColumnElement[bool]] = [tasks.c.status == TaskStatus.FAILED.value]
        if f.project_ids is not None:
            where.append(tasks.c.project_id.in_(f.project_ids))
        if f.tier is not None:
            where.append(tasks.c.tier == f.tier)
        if f.reason:
            where.append(tasks.c.error["reason"].as_string().startswith(f.reason, autoescape=True))
        stmt = sa.select(*_FAILURE_COLUMNS).where(*where)
        if after is not None:
            stmt = stmt.where(sa.tuple_(tasks.c.completed_at, tasks.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(tasks.c.completed_at.desc(), tasks.c.id.desc()).limit(limit + 1).offset(offset)
        rows = [dict(r) for r in (await self.conn.execute(stmt)).mappings().all()]
        counted = sa.select(sa.literal(1)).select_from(tasks).where(*where).limit(cap + 1).subquery()
        total = int((await self.conn.execute(sa.select(sa.func.count()).select_from(counted))).scalar_one())
        return FailurePage(rows[:limit], min(total, cap), total > cap, len(rows) > limit)
