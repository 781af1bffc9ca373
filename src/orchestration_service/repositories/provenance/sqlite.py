"""Provenance on SQLite: the shared statements through SQLAlchemy; no arrays (IN lists per
chunk) and no row locks (SQLite serialises writers)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestration_service.db.tables import provenance_records, task_dependencies, tasks
from orchestration_service.repositories.provenance.port import (
    Direction,
    GraphNodeRecord,
    GraphWalk,
    WaitingTask,
)
from orchestration_service.repositories.provenance.records import SqlProvenanceRecords, waiting_task
from orchestration_service.repositories.provenance.trail import SqlTaintTrail
from orchestration_service.repositories.provenance.walks import chunks, graph_select, scoped

pr = provenance_records


class SqliteProvenance(SqlProvenanceRecords):
    async def graph(
        self, root: uuid.UUID, direction: Direction, max_depth: int, *, listed: int | None = None
    ) -> GraphWalk:
        found = list(
            await self.conn.execute(graph_select(direction, False), {"root": root, "max_depth": max_depth})
        )
        shown = len(found) if listed is None else listed + 1
        nodes = [
            GraphNodeRecord(
                r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), bool(r[7]), r[8] if i < shown else None
            )
            for i, r in enumerate(found)
        ]
        edge = [n.id for n in nodes if n.depth == max_depth]
        # SQLite's walk has no level beyond the limit: look one step further from its edge.
        cut = bool(edge) and await self.beyond(edge, direction, {n.id for n in nodes})
        return GraphWalk(nodes, cut)

    async def waiting_tasks(
        self, record_ids: Sequence[uuid.UUID], statuses: Sequence[str], project_ids: Sequence[str] | None
    ) -> list[WaitingTask]:
        found: dict[Any, WaitingTask] = {}
        td = task_dependencies
        for batch in chunks(record_ids):
            producers = sa.select(tasks.c.id).where(tasks.c.provenance_id.in_(batch))
            waiting = sa.select(td.c.task_id.label("id")).where(td.c.depends_on_id.in_(producers))
            waiting_cte = waiting.cte("waiting", recursive=True)
            waiting_cte = waiting_cte.union(
                sa.select(td.c.task_id).select_from(
                    td.join(waiting_cte, td.c.depends_on_id == waiting_cte.c.id)
                )
            )
            stmt = sa.select(tasks.c.id, tasks.c.project_id, tasks.c.status, tasks.c.created_at).where(
                tasks.c.id.in_(sa.select(waiting_cte.c.id)),
                tasks.c.status.in_(list(statuses)),
                *scoped(tasks.c.project_id, project_ids),
            )
            for row in (await self.conn.execute(stmt)).mappings():
                found[row["id"]] = waiting_task(row)
        return sorted(found.values(), key=lambda t: (t.created_at, str(t.id)))

    async def in_flight_by_project(
        self, project_ids: Sequence[str], statuses: Sequence[str]
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for batch in chunks(project_ids):
            stmt = (
                sa.select(tasks.c.project_id, sa.func.count())
                .where(tasks.c.project_id.in_(batch), tasks.c.status.in_(list(statuses)))
                .group_by(tasks.c.project_id)
            )
            counts.update({p: int(n) for p, n in await self.conn.execute(stmt)})
        return counts


class SqliteTaint(SqlTaintTrail):
    async def mark_suspect(self, sources: dict[uuid.UUID, str], *, at: datetime) -> None:
        """One UPDATE per source and chunk (no arrays to pair ids with their sources)."""
        by_source: dict[str, list[uuid.UUID]] = {}
        for record_id, source in sources.items():
            by_source.setdefault(source, []).append(record_id)
        for source, record_ids in by_source.items():
            for batch in chunks(record_ids):
                await self.conn.execute(
                    pr.update()
                    .where(pr.c.id.in_(batch))
                    .values(is_suspect=True, suspect_since=at, suspect_source=source)
                )
