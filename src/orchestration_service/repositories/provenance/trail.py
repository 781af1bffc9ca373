"""Taint marks and their cascade, the taint trail, applied cascades and checkpoints in SQL:
the statements both backends share (``postgres.py`` and ``sqlite.py`` fill in what differs)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import (
    checkpoints,
    provenance_artifacts,
    provenance_records,
    provenance_unresolved_inputs,
    taint_cascades,
    taint_events,
)
from orchestration_service.repositories.provenance.port import (
    Cascade,
    CascadeTarget,
    Checkpoint,
    ProjectCounts,
    ProjectSnapshot,
    RecordSeed,
    SeedRecord,
    TaintEvent,
    TaintEventFilter,
    TaintFlags,
    TaintSeed,
)
from orchestration_service.repositories.provenance.walks import (
    insert_ignoring_conflicts,
    json_text,
    nearest,
    scoped,
)

pr = provenance_records


def seed_select(seed: TaintSeed) -> sa.Select[Any]:
    """The ids of a taint's seed records."""
    if isinstance(seed, RecordSeed):
        if len(seed.record_ids) == 1:
            return sa.select(pr.c.id).where(pr.c.id == seed.record_ids[0])
        return sa.select(pr.c.id).where(pr.c.id.in_(seed.record_ids))
    return sa.select(pr.c.id).where(pr.c.project_id == seed.project_id, pr.c.created_at > seed.after)


def _values(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


class SqlTaintTrail:
    postgres = False

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.conn = tx.conn

    def _insert(self, table: sa.Table) -> Any:
        return insert_ignoring_conflicts(table, postgres=self.postgres)

    def _seed_ids(self, seed: TaintSeed) -> sa.ColumnElement[bool]:
        """``pr.id`` is a seed record (PostgreSQL: locked in id order, see ``postgres.py``)."""
        return pr.c.id.in_(seed_select(seed))

    # -- taint marks -----------------------------------------------------------------------
    async def seed_records(self, seed: TaintSeed) -> list[SeedRecord]:
        stmt = sa.select(pr.c.id, pr.c.project_id, pr.c.outputs)
        if isinstance(seed, RecordSeed):
            stmt = stmt.where(pr.c.id.in_(seed.record_ids))
        else:
            stmt = stmt.where(pr.c.project_id == seed.project_id, pr.c.created_at > seed.after)
        return [SeedRecord(*r) for r in await self.conn.execute(stmt)]

    async def mark_tainted(
        self, seed: TaintSeed, *, at: datetime, reason: str, tainted_by: str | None
    ) -> None:
        await self.conn.execute(
            pr.update()
            .where(self._seed_ids(seed))
            .values(
                is_tainted=True,
                tainted_at=at,
                tainted_reason=reason,
                tainted_by=tainted_by,
                verification_status="tainted",
            )
        )

    async def cascade_targets(self, seed: TaintSeed, max_depth: int, project_id: str) -> list[CascadeTarget]:
        single = seed.record_ids[0] if isinstance(seed, RecordSeed) and len(seed.record_ids) == 1 else None
        reached = nearest(
            seed_select(seed), "down", max_depth, postgres=self.postgres, with_source=single is None
        )
        source = reached.c.source if single is None else sa.literal(single, sa.Uuid()).label("source")
        stmt = (
            sa.select(
                reached.c.id,
                reached.c.depth,
                source,
                pr.c.project_id,
                json_text(pr.c.outputs),
                pr.c.is_tainted,
            )
            .select_from(reached.join(pr, pr.c.id == reached.c.id))
            .where(reached.c.depth > 0, pr.c.project_id == project_id)
            .order_by(reached.c.depth, pr.c.created_at, pr.c.id)
        )
        return [CascadeTarget(**r) for r in (await self.conn.execute(stmt)).mappings()]

    async def mark_suspect(self, sources: dict[uuid.UUID, str], *, at: datetime) -> None:
        raise NotImplementedError

    async def clear_suspect(self, record_id: uuid.UUID) -> None:
        await self.conn.execute(
            pr.update()
            .where(pr.c.id == record_id)
            .values(is_suspect=False, suspect_since=None, suspect_source=None)
        )

    def _flags_stmt(self, record_ids: Sequence[uuid.UUID]) -> sa.Select[Any]:
        return sa.select(pr.c.id, pr.c.is_tainted, pr.c.is_suspect, pr.c.suspect_source).where(
            pr.c.id.in_(sorted(record_ids, key=str))
        )

    async def taint_flags(self, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaintFlags]:
        return {r[0]: TaintFlags(*r) for r in await self.conn.execute(self._flags_stmt(record_ids))}

    # -- the trail -------------------------------------------------------------------------
    async def add_taint_events(self, events: Sequence[TaintEvent]) -> None:
        if events:
            await self.conn.execute(taint_events.insert(), [_values(e) for e in events])

    def _taint_where(self, f: TaintEventFilter) -> list[sa.ColumnElement[bool]]:
        te = taint_events
        clauses = scoped(te.c.project_id, f.project_ids)
        for column, value in (
            (te.c.cascade_id, f.cascade_id),
            (te.c.provenance_id, f.provenance_id),
            (te.c.artifact_id, f.artifact_id),
            (te.c.action, f.action),
        ):
            if value is not None:
                clauses.append(column == value)
        return clauses

    async def find_taint_events(
        self, f: TaintEventFilter, *, limit: int, offset: int = 0, after: tuple[datetime, str] | None = None
    ) -> Sequence[TaintEvent]:
        te = taint_events
        stmt = sa.select(te).where(*self._taint_where(f))
        if after is not None:
            stmt = stmt.where(sa.tuple_(te.c.timestamp, te.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(te.c.timestamp.desc(), te.c.id.desc()).limit(limit).offset(offset)
        return [TaintEvent(**r) for r in (await self.conn.execute(stmt)).mappings()]

    async def count_taint_events(self, f: TaintEventFilter, *, cap: int | None = None) -> int:
        matching = sa.select(sa.literal(1)).select_from(taint_events).where(*self._taint_where(f))
        if cap is not None:
            matching = matching.limit(cap + 1)
        return int(
            (
                await self.conn.execute(sa.select(sa.func.count()).select_from(matching.subquery()))
            ).scalar_one()
        )

    async def last_trail_event(
        self, record_id: uuid.UUID, actions: Sequence[str] = ("taint", "suspect")
    ) -> TaintEvent | None:
        te = taint_events
        stmt = (
            sa.select(te)
            .where(te.c.provenance_id == record_id, te.c.action.in_(list(actions)))
            .order_by(te.c.timestamp.desc(), te.c.id.desc())
            .limit(1)
        )
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else TaintEvent(**row)

    # -- cascades (ids are the project's: the same id in another project is another cascade)
    async def cascade_known(self, project_id: str, cascade_id: str) -> bool:
        tc, te = taint_cascades, taint_events
        stmt = sa.select(tc.c.id).where(tc.c.project_id == project_id, tc.c.id == cascade_id)
        if (await self.conn.execute(stmt)).first():
            return True
        stmt = sa.select(te.c.id).where(te.c.cascade_id == cascade_id, te.c.project_id == project_id).limit(1)
        return (await self.conn.execute(stmt)).first() is not None

    async def claim_cascade(self, cascade: Cascade) -> bool:
        result = await self.conn.execute(self._insert(taint_cascades).values(**_values(cascade)))
        return bool(result.rowcount)

    async def set_cascade_result(self, project_id: str, cascade_id: str, result: dict[str, Any]) -> None:
        tc = taint_cascades
        await self.conn.execute(
            tc.update().where(tc.c.project_id == project_id, tc.c.id == cascade_id).values(result=result)
        )

    async def _cascade(self, *where: sa.ColumnElement[bool]) -> Cascade | None:
        row = (await self.conn.execute(sa.select(taint_cascades).where(*where))).mappings().first()
        return None if row is None else Cascade(**row)

    async def get_cascade(self, project_id: str, cascade_id: str) -> Cascade | None:
        tc = taint_cascades
        return await self._cascade(tc.c.project_id == project_id, tc.c.id == cascade_id)

    async def cascade_by_rollback(self, project_id: str, rollback_id: str) -> Cascade | None:
        tc = taint_cascades
        return await self._cascade(tc.c.project_id == project_id, tc.c.rollback_id == rollback_id)

    async def cascade_summary(self, project_id: str, cascade_id: str) -> dict[str, int]:
        te = taint_events
        stmt = (
            sa.select(te.c.action, sa.func.count(sa.distinct(te.c.provenance_id)))
            .where(te.c.cascade_id == cascade_id, te.c.project_id == project_id)
            .group_by(te.c.action)
        )
        return {action: int(n) for action, n in await self.conn.execute(stmt)}

    # -- projects --------------------------------------------------------------------------
    async def project_counts(self, project_id: str) -> ProjectCounts:
        """One scalar subquery per count, each answered from an index (the partial ones for
        tainted and suspect records), not from a scan of the project's rows."""
        in_project = pr.c.project_id == project_id

        def count(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
            return sa.select(sa.func.count()).select_from(pr).where(in_project, *where).scalar_subquery()

        stmt = sa.select(
            count(),
            count(pr.c.is_tainted),
            count(pr.c.is_suspect),
            count(sa.or_(pr.c.is_tainted, pr.c.is_suspect)),
            count(pr.c.is_suspect, sa.not_(pr.c.is_tainted)),
        )
        return ProjectCounts(*(int(n) for n in (await self.conn.execute(stmt)).one()))

    async def orphaned_inputs(self, project_id: str) -> int:
        u = provenance_unresolved_inputs
        stmt = sa.select(sa.func.count(sa.distinct(u.c.artifact_id))).where(u.c.project_id == project_id)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def project_snapshot(self, project_id: str) -> ProjectSnapshot:
        records = (
            await self.conn.execute(sa.select(sa.func.count()).where(pr.c.project_id == project_id))
        ).scalar_one()
        pa = provenance_artifacts
        artifacts = (
            await self.conn.execute(
                sa.select(sa.func.count()).select_from(pa).where(pa.c.project_id == project_id)
            )
        ).scalar_one()
        last = (
            await self.conn.execute(
                sa.select(pr.c.id, pr.c.task_id)
                .where(pr.c.project_id == project_id)
                .order_by(pr.c.created_at.desc(), pr.c.id.desc())
                .limit(1)
            )
        ).first()
        return ProjectSnapshot(
            provenance_count=int(records),
            artifact_count=int(artifacts),
            last_provenance_id=str(last[0]) if last else "",
            last_task_id=str(last[1]) if last else "",
        )

    # -- checkpoints -----------------------------------------------------------------------
    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        row = (
            (await self.conn.execute(sa.select(checkpoints).where(checkpoints.c.id == checkpoint_id)))
            .mappings()
            .first()
        )
        return None if row is None else Checkpoint(**row)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.conn.execute(checkpoints.insert(), _values(checkpoint))

    async def list_checkpoints(
        self, project_id: str, *, include_invalid: bool, limit: int, offset: int
    ) -> tuple[Sequence[Checkpoint], int]:
        cp = checkpoints
        where = [cp.c.project_id == project_id]
        if not include_invalid:
            where.append(cp.c.is_valid)
        stmt = (
            sa.select(cp)
            .where(*where)
            .order_by(cp.c.created_at.desc(), cp.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = [Checkpoint(**r) for r in (await self.conn.execute(stmt)).mappings()]
        total = (
            await self.conn.execute(sa.select(sa.func.count()).select_from(cp).where(*where))
        ).scalar_one()
        return rows, int(total)

    async def invalidate_checkpoints_after(
        self, project_id: str, after: datetime, *, at: datetime, by: str
    ) -> int:
        cp = checkpoints
        result = await self.conn.execute(
            cp.update()
            .where(cp.c.project_id == project_id, cp.c.created_at > after, cp.c.is_valid)
            .values(is_valid=False, invalidated_at=at, invalidated_by=by)
        )
        return int(result.rowcount)
