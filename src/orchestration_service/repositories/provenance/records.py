"""Provenance records and the graph in SQL: the statements both backends share. The
PostgreSQL and SQLite classes (``postgres.py``, ``sqlite.py``) fill in what differs."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import (
    artifact_dependencies,
    provenance_artifacts,
    provenance_records,
    provenance_unresolved_inputs,
)
from orchestration_service.repositories.provenance.port import (
    Direction,
    Edge,
    GraphWalk,
    ImpactWalk,
    ProvenanceFilter,
    ProvenanceRecord,
    ReachedRecord,
    RecordSummary,
    WaitingTask,
)
from orchestration_service.repositories.provenance.walks import (
    CHUNK,
    chunks,
    insert_ignoring_conflicts,
    scoped,
    summary_select,
    tainted_select,
)

pr = provenance_records


def record(row: RowMapping) -> ProvenanceRecord:
    return ProvenanceRecord(**row)


def record_values(r: ProvenanceRecord) -> dict[str, Any]:
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def waiting_task(row: Any) -> WaitingTask:
    return WaitingTask(row["id"], row["project_id"], row["status"], row["created_at"])


class SqlProvenanceRecords:
    """What both backends answer with the same SQLAlchemy Core statements."""

    postgres = False

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.conn = tx.conn

    def _insert(self, table: sa.Table) -> Any:
        return insert_ignoring_conflicts(table, postgres=self.postgres)

    def _id_batches(
        self, column: sa.ColumnElement[Any], ids: Sequence[uuid.UUID]
    ) -> Iterable[sa.ColumnElement[bool]]:
        """``column`` is one of these ids: one IN list per chunk (PostgreSQL: one array)."""
        for batch in chunks(ids):
            yield column.in_(batch)

    # -- records ---------------------------------------------------------------------------
    def _get_stmt(self, record_id: uuid.UUID, for_update: bool) -> sa.Select[Any]:
        return sa.select(pr).where(pr.c.id == record_id)

    async def get(self, record_id: uuid.UUID, *, for_update: bool = False) -> ProvenanceRecord | None:
        row = (await self.conn.execute(self._get_stmt(record_id, for_update))).mappings().first()
        return None if row is None else record(row)

    async def summary(self, record_id: uuid.UUID) -> RecordSummary | None:
        row = (await self.conn.execute(summary_select(), {"id": record_id})).mappings().first()
        return None if row is None else RecordSummary(**row)

    async def get_many(self, record_ids: Sequence[uuid.UUID]) -> list[ProvenanceRecord]:
        found: list[ProvenanceRecord] = []
        for batch in chunks(record_ids):
            found.extend(record(r) for r in await self._mappings(sa.select(pr).where(pr.c.id.in_(batch))))
        return found

    async def _mappings(self, stmt: sa.Executable) -> Sequence[RowMapping]:
        return (await self.conn.execute(stmt)).mappings().all()

    def _where(self, f: ProvenanceFilter) -> list[sa.ColumnElement[bool]]:
        clauses = scoped(pr.c.project_id, f.project_ids)
        if f.task_id:
            clauses.append(pr.c.task_id == f.task_id)
        if f.artifact_id:
            pa = provenance_artifacts
            clauses.append(
                pr.c.id.in_(sa.select(pa.c.provenance_id).where(pa.c.artifact_id == f.artifact_id))
            )
        for column, value in (
            (pr.c.verification_status, f.verification_status),
            (pr.c.model_used, f.model_used),
            (pr.c.worker_id, f.worker_id),
            (pr.c.tier, f.tier),
            (pr.c.domain, f.domain),
        ):
            if value is not None:
                clauses.append(column == value)
        if f.is_tainted is not None:
            clauses.append(pr.c.is_tainted if f.is_tainted else sa.not_(pr.c.is_tainted))
        if f.is_suspect is not None:
            clauses.append(pr.c.is_suspect if f.is_suspect else sa.not_(pr.c.is_suspect))
        if f.created_after is not None:
            clauses.append(pr.c.created_at >= f.created_after)
        if f.created_before is not None:
            clauses.append(pr.c.created_at < f.created_before)
        return clauses

    async def find(
        self,
        f: ProvenanceFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[ProvenanceRecord]:
        stmt = sa.select(pr).where(*self._where(f))
        if after is not None:
            stmt = stmt.where(sa.tuple_(pr.c.created_at, pr.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(pr.c.created_at.desc(), pr.c.id.desc()).limit(limit).offset(offset)
        return [record(r) for r in await self._mappings(stmt)]

    async def count(self, f: ProvenanceFilter, *, cap: int | None = None) -> int:
        return await self._count(sa.select(sa.literal(1)).select_from(pr).where(*self._where(f)), cap)

    async def _count(self, matching: sa.Select[Any], cap: int | None) -> int:
        if cap is not None:
            matching = matching.limit(cap + 1)
        stmt = sa.select(sa.func.count()).select_from(matching.subquery())
        return int((await self.conn.execute(stmt)).scalar_one())

    async def insert(self, record: ProvenanceRecord) -> None:
        await self.conn.execute(pr.insert(), record_values(record))

    async def add_artifacts(self, project_id: str, record_id: uuid.UUID, artifact_ids: Sequence[str]) -> None:
        if artifact_ids:
            await self.conn.execute(
                provenance_artifacts.insert(),
                [
                    {"project_id": project_id, "artifact_id": a, "provenance_id": record_id}
                    for a in artifact_ids
                ],
            )

    async def producers_of(self, project_id: str, artifact_ids: Sequence[str]) -> dict[str, uuid.UUID]:
        pa = provenance_artifacts
        found: dict[str, uuid.UUID] = {}
        for batch in chunks(artifact_ids):
            stmt = sa.select(pa.c.artifact_id, pa.c.provenance_id).where(
                pa.c.project_id == project_id, pa.c.artifact_id.in_(batch)
            )
            found.update({row[0]: row[1] for row in await self.conn.execute(stmt)})
        return found

    async def artifact_projects(self, artifact_id: str, project_ids: Sequence[str] | None) -> list[str]:
        pa = provenance_artifacts
        stmt = (
            sa.select(pa.c.project_id)
            .where(pa.c.artifact_id == artifact_id, *scoped(pa.c.project_id, project_ids))
            .order_by(pa.c.project_id)
            .limit(CHUNK)
        )
        return list((await self.conn.execute(stmt)).scalars())

    async def add_dependencies(self, edges: Sequence[Edge]) -> None:
        if edges:
            await self.conn.execute(
                artifact_dependencies.insert(),
                [
                    {
                        "artifact_id": e.artifact_id,
                        "depends_on": e.depends_on,
                        "dependency_type": e.dependency_type,
                        "via_artifact_id": e.via_artifact_id,
                    }
                    for e in edges
                ],
            )

    async def add_unresolved(
        self, project_id: str, record_id: uuid.UUID, inputs: Sequence[tuple[str, str]]
    ) -> None:
        if inputs:
            await self.conn.execute(
                self._insert(provenance_unresolved_inputs),
                [
                    {"record_id": record_id, "project_id": project_id, "artifact_id": a, "relationship": rel}
                    for a, rel in inputs
                ],
            )

    async def claim_outputs(
        self, project_id: str, record_id: uuid.UUID, produced: Sequence[str]
    ) -> list[str]:
        """Three statements per chunk: which are known, claim the others, resolve the waiting."""
        known = await self.producers_of(project_id, produced)
        mine = [a for a in dict.fromkeys(produced) if a not in known]
        await self.add_artifacts(project_id, record_id, mine)
        u = provenance_unresolved_inputs
        for batch in chunks(mine):
            waiting_here = sa.and_(u.c.project_id == project_id, u.c.artifact_id.in_(batch))
            waiting = sa.select(
                u.c.record_id, sa.literal(record_id, sa.Uuid()), u.c.relationship, u.c.artifact_id
            ).where(waiting_here, u.c.record_id != record_id)
            await self.conn.execute(
                self._insert(artifact_dependencies).from_select(
                    ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"], waiting
                )
            )
            await self.conn.execute(u.delete().where(waiting_here))
        return mine

    # -- the graph -------------------------------------------------------------------------
    async def graph(
        self, root: uuid.UUID, direction: Direction, max_depth: int, *, listed: int | None = None
    ) -> GraphWalk:
        raise NotImplementedError

    async def impact(
        self, root: uuid.UUID, max_depth: int, *, listed: int, statuses: Sequence[str]
    ) -> ImpactWalk:
        walk = await self.graph(root, "down", max_depth, listed=listed)
        nodes = walk.nodes
        if not nodes or nodes[0].depth != 0:
            return ImpactWalk([], 0, 0, False, [], {})
        waiting = await self.waiting_tasks([n.id for n in nodes], statuses, None)
        projects = sorted({n.project_id for n in nodes})
        by_project = await self.in_flight_by_project(projects, statuses)
        return ImpactWalk(
            nodes[: listed + 1], len(nodes) - 1, nodes[-1].depth, walk.truncated, waiting, by_project
        )

    async def waiting_tasks(
        self, record_ids: Sequence[uuid.UUID], statuses: Sequence[str], project_ids: Sequence[str] | None
    ) -> list[WaitingTask]:
        raise NotImplementedError

    async def in_flight_by_project(
        self, project_ids: Sequence[str], statuses: Sequence[str]
    ) -> dict[str, int]:
        raise NotImplementedError

    async def reached_tainted(
        self, root: uuid.UUID, direction: Direction, max_depth: int, project_id: str
    ) -> list[ReachedRecord]:
        stmt = tainted_select(direction, self.postgres)
        params = {"root": root, "max_depth": max_depth, "project": project_id}
        return [ReachedRecord(**r) for r in (await self.conn.execute(stmt, params)).mappings()]

    async def edges_between(self, record_ids: Sequence[uuid.UUID]) -> list[Edge]:
        d = artifact_dependencies
        found: list[Edge] = []
        for batch in self._id_batches(d.c.artifact_id, record_ids):
            stmt = sa.select(d.c.artifact_id, d.c.depends_on, d.c.via_artifact_id, d.c.dependency_type).where(
                batch
            )
            found.extend(Edge(*r) for r in await self.conn.execute(stmt))
        return found

    async def beyond(self, record_ids: Sequence[uuid.UUID], direction: Direction, known: set[Any]) -> bool:
        """Whether any of these records has a neighbour outside ``known`` (a walk was cut)."""
        d = artifact_dependencies
        nxt, prev = (
            (d.c.artifact_id, d.c.depends_on) if direction == "down" else (d.c.depends_on, d.c.artifact_id)
        )
        for batch in self._id_batches(prev, record_ids):
            for (neighbour,) in await self.conn.execute(sa.select(nxt).where(batch).distinct()):
                if neighbour not in known:
                    return True
        return False
