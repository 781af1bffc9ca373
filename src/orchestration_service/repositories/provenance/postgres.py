"""Provenance on PostgreSQL: the shared statements, with the hot reads compiled once and run
on the asyncpg connection (prepared, cached per connection), arrays instead of IN lists, rows
locked in id order for cascades, and one round trip to record a new record's outputs."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from orchestration_service.db.tables import provenance_records, taint_events, task_dependencies, tasks
from orchestration_service.repositories.provenance.port import (
    Direction,
    GraphWalk,
    ImpactWalk,
    TaintEvent,
    TaintSeed,
    WaitingTask,
)
from orchestration_service.repositories.provenance.records import SqlProvenanceRecords
from orchestration_service.repositories.provenance.trail import SqlTaintTrail, seed_select
from orchestration_service.repositories.provenance.walks import (
    GRAPH_COLUMNS,
    STRINGS,
    UUIDS,
    PgStatement,
    pg_graph,
    pg_in_flight_by_project,
    pg_ranked,
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


@functools.cache
def pg_impact() -> PgStatement:
    """:meth:`PostgresProvenance.impact` in one statement (``:root``, ``:max_depth``,
    ``:listed``, ``:statuses``): the graph answer's first ``:listed`` rows, and in the first
    row only, after ``truncated``, what the answer needs of every record reached (their
    number, the farthest distance, the waiting tasks and the in-flight counts), so the other
    rows are neither sent nor decoded and the task queries are no further round trips."""
    seed = sa.select(pr.c.id).where(pr.c.id == sa.bindparam("root", type_=sa.Uuid()))
    max_depth = sa.bindparam("max_depth", type_=sa.Integer())
    listed = sa.bindparam("listed", type_=sa.BigInteger())
    # Only the records of the levels that hold the listed ones are read: the others count from
    # the walk alone (edges have foreign keys: every record reached exists).
    ranked, cut, walked = pg_ranked(seed, "down", max_depth, upto=listed)
    reached = sa.select(ranked).cte("impact_reached")
    last = sa.select(walked).where(walked.c.depth <= max_depth).order_by(walked.c.depth.desc()).limit(1)
    everyone = sa.cast(last.with_only_columns(walked.c.seen).scalar_subquery(), UUIDS)
    statuses = sa.bindparam("statuses", type_=STRINGS)
    td = task_dependencies
    producers = sa.select(tasks.c.id).where(tasks.c.provenance_id == sa.any_(everyone))
    waiting = (
        sa.select(td.c.task_id.label("id"))
        .where(td.c.depends_on_id.in_(producers))
        .cte("waiting", recursive=True)
    )
    waiting = waiting.union(
        sa.select(td.c.task_id).select_from(td.join(waiting, td.c.depends_on_id == waiting.c.id))
    )
    found = (
        sa.select(tasks.c.id, tasks.c.project_id, tasks.c.status, tasks.c.created_at)
        .where(tasks.c.id.in_(sa.select(waiting.c.id)), tasks.c.status == sa.any_(statuses))
        .cte("waiting_found")
    )
    projects = sa.select(pr.c.project_id).where(pr.c.id == sa.any_(everyone))
    flight = (
        sa.select(tasks.c.project_id, sa.func.count().label("n"))
        .where(tasks.c.project_id.in_(projects), tasks.c.status == sa.any_(statuses))
        .group_by(tasks.c.project_id)
        .cte("in_flight")
    )

    def once(value: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[Any]:
        # An uncorrelated subquery: computed once (an InitPlan), sent in the first row only.
        return sa.case((reached.c.n == 1, sa.select(value).scalar_subquery())).label(name)

    def agg(column: sa.ColumnElement[Any], by: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[Any]:
        return once(
            sa.func.array_agg(column, type_=postgresql.ARRAY(column.type)).aggregate_order_by(by), name
        )

    stmt = (
        sa.select(
            *(reached.c[c] for c in GRAPH_COLUMNS[:-1]),
            sa.cast(reached.c.outputs, sa.Text()).label("outputs"),
            cut.label("truncated"),
            once(last.with_only_columns(sa.func.cardinality(walked.c.seen) - 1).scalar_subquery(), "total"),
            once(last.with_only_columns(walked.c.depth).scalar_subquery(), "deepest"),
            *(
                agg(found.c[c], found.c.id, f"waiting_{c}")
                for c in ("id", "project_id", "status", "created_at")
            ),
            *(agg(flight.c[c], flight.c.project_id, f"flight_{c}") for c in ("project_id", "n")),
        )
        .where(reached.c.n <= listed)
        .order_by(reached.c.n)
    )
    return PgStatement.compile(stmt)


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

    async def impact(
        self, root: uuid.UUID, max_depth: int, *, listed: int, statuses: Sequence[str]
    ) -> ImpactWalk:
        stmt = pg_impact()
        args = stmt.args(root=root, max_depth=max_depth, listed=listed + 1, statuses=list(statuses))
        rows = await (await self.tx.driver()).fetch(stmt.sql, *args, record_class=GraphRow)
        if not rows:
            return ImpactWalk([], 0, 0, False, [], {})
        truncated, total, deepest, ids, projects, states, created, flight, counts = rows[0][_WIDTH:]
        # array_agg of no rows is NULL
        waiting = [WaitingTask(*t) for t in zip(ids, projects, states, created, strict=True)] if ids else []
        waiting.sort(key=lambda t: (t.created_at, str(t.id)))
        return ImpactWalk(
            rows, total, deepest, truncated, waiting, dict(zip(flight, counts, strict=True)) if flight else {}
        )

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
