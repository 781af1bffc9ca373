"""Provenance on PostgreSQL: the shared statements, with the hot reads compiled once and run
on the asyncpg connection (prepared, cached per connection), arrays instead of IN lists, rows
locked in id order for cascades, and one round trip to record a new record's outputs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from orchestration_service.db.tables import provenance_records, taint_events
from orchestration_service.repositories.provenance.port import (
    Direction,
    GraphWalk,
    TaintEvent,
    TaintSeed,
    WaitingTask,
)
from orchestration_service.repositories.provenance.records import SqlProvenanceRecords
from orchestration_service.repositories.provenance.trail import SqlTaintTrail, seed_select
from orchestration_service.repositories.provenance.walks import (
    GRAPH_COLUMNS,
    UUIDS,
    pg_graph,
    pg_in_flight_by_project,
    pg_waiting_tasks,
)

pr = provenance_records
_WIDTH = len(GRAPH_COLUMNS)

# The record now produces these artifacts in its project ($3) (an artifact id keeps its first
# producer of the project: a re-produced id is skipped), and earlier records of the project
# that used them, waiting as unresolved inputs, get their dependency edge on it. Returns the
# artifact ids this record produces.
CLAIM_OUTPUTS = """
WITH mine AS (
    INSERT INTO provenance_artifacts (project_id, artifact_id, provenance_id)
    SELECT $3, a, $1 FROM unnest($2::text[]) AS a
    ON CONFLICT (project_id, artifact_id) DO NOTHING
    RETURNING artifact_id
), waiting AS (
    DELETE FROM provenance_unresolved_inputs u USING mine m
    WHERE u.project_id = $3 AND u.artifact_id = m.artifact_id
    RETURNING u.record_id, u.artifact_id, u.relationship
), resolved AS (
    INSERT INTO artifact_dependencies (artifact_id, depends_on, dependency_type, via_artifact_id)
    SELECT w.record_id, $1, w.relationship, w.artifact_id FROM waiting w WHERE w.record_id <> $1
    ON CONFLICT DO NOTHING
)
SELECT artifact_id FROM mine
"""


class GraphRow(asyncpg.Record):  # type: ignore[misc]  # asyncpg has no type stubs
    """A graph answer row (GRAPH_COLUMNS, then ``truncated``) as the driver builds it, read as
    a ``GraphNode``: no per-row copy in the widest walks. The properties are C getters
    (``itemgetter``); their types are the Protocol's."""

    __slots__ = ()

    if TYPE_CHECKING:  # what the getters below return, for the type checker only
        depth: int
        id: uuid.UUID
        task_id: str
        project_id: str
        created_at: datetime
        verification_status: str
        is_tainted: bool
        is_suspect: bool
        outputs: str | None
    else:
        depth, id, task_id, project_id, created_at, verification_status, is_tainted, is_suspect, outputs = (
            property(itemgetter(i)) for i in range(len(GRAPH_COLUMNS))
        )


class PostgresProvenance(SqlProvenanceRecords):
    postgres = True

    def _id_batches(
        self, column: sa.ColumnElement[Any], ids: Sequence[uuid.UUID]
    ) -> Iterable[sa.ColumnElement[bool]]:
        if ids:  # one condition on an array parameter, however many ids
            yield column == sa.any_(sa.bindparam(None, list(ids), type_=UUIDS))

    def _get_stmt(self, record_id: uuid.UUID, for_update: bool) -> sa.Select[Any]:
        stmt = super()._get_stmt(record_id, for_update)
        return stmt.with_for_update() if for_update else stmt

    async def claim_outputs(
        self, project_id: str, record_id: uuid.UUID, produced: Sequence[str]
    ) -> list[str]:
        if not produced:
            return []
        driver = await self.tx.driver()
        rows = await driver.fetch(CLAIM_OUTPUTS, record_id, list(dict.fromkeys(produced)), project_id)
        return [r["artifact_id"] for r in rows]

    async def graph(
        self, root: uuid.UUID, direction: Direction, max_depth: int, *, listed: int | None = None
    ) -> GraphWalk:
        stmt = pg_graph(direction)
        # The root row is one more than the listed records.
        shown = 2**62 if listed is None else listed + 1
        rows = await (await self.tx.driver()).fetch(
            stmt.sql, *stmt.args(root=root, max_depth=max_depth, listed=shown), record_class=GraphRow
        )
        return GraphWalk(rows, bool(rows) and rows[0][_WIDTH])

    async def waiting_tasks(
        self, record_ids: Sequence[uuid.UUID], statuses: Sequence[str], project_ids: Sequence[str] | None
    ) -> list[WaitingTask]:
        pg = pg_waiting_tasks(project_ids is not None)
        args = pg.args(
            record_ids=list(record_ids),
            statuses=list(statuses),
            project_ids=None if project_ids is None else list(project_ids),
        )
        rows = await (await self.tx.driver()).fetch(pg.sql, *args)
        found = [WaitingTask(r["id"], r["project_id"], r["status"], r["created_at"]) for r in rows]
        return sorted(found, key=lambda t: (t.created_at, str(t.id)))

    async def in_flight_by_project(
        self, project_ids: Sequence[str], statuses: Sequence[str]
    ) -> dict[str, int]:
        pg = pg_in_flight_by_project()
        args = pg.args(project_ids=list(project_ids), statuses=list(statuses))
        return {p: int(n) for p, n in await (await self.tx.driver()).fetch(pg.sql, *args)}


def _locked_in_order(where: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """The condition "``pr.id`` is one of these" that, in an UPDATE, first locks the rows in id
    order, so two cascades over overlapping records queue on the first common row instead of
    each holding some rows the other waits for (a deadlock)."""
    return pr.c.id.in_(sa.select(pr.c.id).where(where).order_by(pr.c.id).with_for_update())


class PostgresTaint(SqlTaintTrail):
    postgres = True

    def _seed_ids(self, seed: TaintSeed) -> sa.ColumnElement[bool]:
        return _locked_in_order(pr.c.id.in_(seed_select(seed)))

    async def mark_suspect(self, sources: dict[uuid.UUID, str], *, at: datetime) -> None:
        """One statement, rows locked in id order."""
        if not sources:
            return
        ids = sa.bindparam("suspect_ids", list(sources), type_=UUIDS)
        suspect = (
            sa.func.unnest(
                ids, sa.bindparam(None, list(sources.values()), type_=postgresql.ARRAY(sa.String()))
            )
            .table_valued(sa.column("id", sa.Uuid()), sa.column("source", sa.String()))
            .render_derived(name="suspect")
        )
        await self.conn.execute(
            pr.update()
            .where(pr.c.id == suspect.c.id, _locked_in_order(pr.c.id == sa.any_(ids)))
            .values(is_suspect=True, suspect_since=at, suspect_source=suspect.c.source)
        )

    def _flags_stmt(self, record_ids: Sequence[uuid.UUID]) -> sa.Select[Any]:
        return super()._flags_stmt(record_ids).order_by(pr.c.id).with_for_update(read=True)

    async def add_taint_events(self, events: Sequence[TaintEvent]) -> None:
        """One ``INSERT … SELECT FROM unnest(<one array per column>)``: a single round trip
        however long the trail (``extra`` and ``seq`` stay NULL: the service writes neither)."""
        if not events:
            return
        if any(e.extra is not None or e.seq is not None for e in events):
            await super().add_taint_events(events)
            return
        keys = [c for c in taint_events.columns if c.key not in ("extra", "seq")]
        values = (
            sa.func.unnest(
                *(
                    sa.bindparam(None, [getattr(e, c.key) for e in events], type_=postgresql.ARRAY(c.type))
                    for c in keys
                )
            )
            .table_valued(*(sa.column(c.key, c.type) for c in keys))
            .render_derived(name="v")
        )
        await self.conn.execute(taint_events.insert().from_select([c.key for c in keys], sa.select(values)))
