"""All SQL about provenance records, the artifacts they produced and their dependencies,
taint events, checkpoints and applied cascades.

Graph walks are recursive CTEs with a depth limit, which also ends walks around cycles in
bad data. On PostgreSQL the walk is breadth-first, one row per level (:func:`levels`): each
record is expanded once, at its distance, however many paths of other lengths lead to it
(diamonds). SQLite has no arrays: there :func:`walk` follows every path (``UNION`` drops a
(record, depth) pair met twice) and the smallest depth at which a record is met is its
distance. Both answer the same.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Grouping

from orchestration_service.db.tables import (
    artifact_dependencies,
    checkpoints,
    provenance_artifacts,
    provenance_records,
    provenance_unresolved_inputs,
    taint_cascades,
    taint_events,
    task_dependencies,
    tasks,
)

Direction = Literal["down", "up"]
CHUNK = 1000  # ids per IN list (well under SQLite's and asyncpg's parameter limits)

pr = provenance_records


class JSONText(sa.types.TypeDecorator[Any]):
    """A JSON document read as its text and parsed with orjson: graph answers read thousands
    of small ``outputs`` lists, which orjson parses several times faster than the driver."""

    impl = sa.Text()
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


def _json_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.type_coerce(sa.cast(column, sa.Text()), JSONText()).label(column.key)


# A record as root-cause reads it (not its whole document).
_SUMMARY_PLAIN = (
    pr.c.id,
    pr.c.task_id,
    pr.c.project_id,
    pr.c.created_at,
    pr.c.verification_status,
    pr.c.is_tainted,
    pr.c.is_suspect,
)
SUMMARY_COLUMNS = (*_SUMMARY_PLAIN, _json_text(pr.c.outputs))


@dataclass(frozen=True, slots=True)
class ProvenanceFilter:
    project_ids: Sequence[str] | None = None
    task_id: str | None = None
    artifact_id: str | None = None
    verification_status: str | None = None
    is_tainted: bool | None = None
    is_suspect: bool | None = None
    model_used: str | None = None
    worker_id: str | None = None
    tier: str | None = None
    domain: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaintEventFilter:
    project_ids: Sequence[str] | None = None
    cascade_id: str | None = None
    provenance_id: uuid.UUID | None = None
    artifact_id: str | None = None
    action: str | None = None


def _scoped(column: sa.ColumnElement[Any], project_ids: Sequence[str] | None) -> list[sa.ColumnElement[bool]]:
    return [] if project_ids is None else [column.in_(list(project_ids))]


def insert_ignoring_conflicts(conn: AsyncConnection, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING (any unique constraint), on either database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def walk(
    seed: sa.Select[Any],
    direction: Direction,
    max_depth: int | sa.ColumnElement[int],
    *,
    with_source: bool = False,
    through_seed: bool = True,
    project: sa.ColumnElement[str] | None = None,
) -> sa.CTE:
    """Every (record, depth[, source]) reachable from the seed records within ``max_depth``
    edges: ``down`` follows dependents, ``up`` dependencies. ``seed`` selects one column, the
    record ids. ``through_seed=False`` never re-enters a seed record (several roots at once).
    ``project``: only through records of this project."""
    d = artifact_dependencies
    nxt, prev = (
        (d.c.artifact_id, d.c.depends_on) if direction == "down" else (d.c.depends_on, d.c.artifact_id)
    )
    roots = seed.cte(f"{direction}_seed")
    root_id = roots.c[0]
    start: list[Any] = [root_id.label("id"), sa.literal_column("0").label("depth")]
    if with_source:
        start.append(root_id.label("source"))
    cte = sa.select(*start).cte(f"{direction}_walk", recursive=True)
    step: list[Any] = [nxt.label("id"), (cte.c.depth + 1).label("depth")]
    if with_source:
        step.append(cte.c.source)
    recursive = sa.select(*step).select_from(d.join(cte, prev == cte.c.id)).where(cte.c.depth < max_depth)
    if not through_seed:
        recursive = recursive.where(nxt.not_in(sa.select(root_id)))
    if project is not None:
        recursive = recursive.where(_in_project(nxt, project))
    return cte.union(recursive)


def _in_project(record_id: sa.ColumnElement[Any], project: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return sa.exists().where(pr.c.id == record_id, pr.c.project_id == project)


def distances(walked: sa.CTE) -> sa.CTE:
    """(record, smallest depth) of a walk."""
    return (
        sa.select(walked.c.id, sa.func.min(walked.c.depth).label("depth"))
        .group_by(walked.c.id)
        .cte(f"{walked.name}_reached")
    )


UUIDS = postgresql.ARRAY(sa.Uuid())


def levels(
    seed: sa.Select[Any],
    direction: Direction,
    max_depth: int | sa.ColumnElement[int],
    *,
    with_source: bool = False,
    project: sa.ColumnElement[str] | None = None,
) -> sa.CTE:
    """PostgreSQL: a breadth-first walk from the seed records, one row per level: ``depth``,
    ``frontier`` (the records first reached at that depth), ``seen`` (every record reached so
    far) and, ``with_source``, ``sources`` (per frontier record, the seed it is nearest to; the
    smallest id of a tie). Level 0 is the seed. A level only takes records not seen before, so
    each record is expanded once whatever the number of paths to it, no record (nor seed) is
    entered twice, and a cycle ends when it comes back round; the walk stops at ``max_depth``
    or at the first empty level. ``seed`` selects one column, the record ids. ``project``
    (without ``with_source``): only through records of this project."""
    d = artifact_dependencies
    nxt, prev = (
        (d.c.artifact_id, d.c.depends_on) if direction == "down" else (d.c.depends_on, d.c.artifact_id)
    )
    roots = seed.subquery(f"{direction}_roots")
    ids = sa.func.array_agg(roots.c[0], type_=UUIDS)
    start: list[Any] = [sa.literal(0).label("depth"), ids.label("frontier"), ids.label("seen")]
    if with_source:
        start.append(ids.label("sources"))
    cte = sa.select(*start).cte(f"{direction}_levels", recursive=True)
    seen = sa.func.unnest(cte.c.seen).table_valued("id").render_derived(name="seen")
    unseen = ~sa.exists().where(seen.c.id == nxt)  # a hash anti-join
    assert project is None or not with_source
    if with_source:
        frontier = (
            sa.func.unnest(cte.c.frontier, cte.c.sources)
            .table_valued("id", "source")
            .render_derived(name="frontier")
        )
        nearest = (
            sa.select(
                nxt.label("id"),
                # (array_agg(source ORDER BY source))[1]: PostgreSQL has no min(uuid).
                Grouping(
                    sa.func.array_agg(frontier.c.source, type_=UUIDS).aggregate_order_by(frontier.c.source)
                )[1].label("source"),
            )
            .select_from(frontier.join(d, prev == frontier.c.id))
            .where(unseen)
            .group_by(nxt)
            .subquery("nearest")
        )
        found = sa.select(
            sa.func.array_agg(nearest.c.id, type_=UUIDS).label("ids"),
            sa.func.array_agg(nearest.c.source, type_=UUIDS).label("sources"),
        ).lateral(f"{direction}_found")
    else:
        found = (
            sa.select(sa.func.array_agg(sa.distinct(nxt), type_=UUIDS).label("ids"))
            .where(
                prev == sa.any_(cte.c.frontier),
                unseen,
                *([] if project is None else [_in_project(nxt, project)]),
            )
            .lateral(f"{direction}_found")
        )
    step: list[Any] = [cte.c.depth + 1, found.c.ids, cte.c.seen.op("||")(found.c.ids)]
    if with_source:
        step.append(found.c.sources)
    return cte.union_all(
        sa.select(*step)
        .select_from(cte.join(found, sa.true()))
        .where(cte.c.depth < max_depth, found.c.ids.is_not(None))
    )


def nearest(
    seed: sa.Select[Any],
    direction: Direction,
    max_depth: int | sa.ColumnElement[int],
    *,
    postgres: bool,
    with_source: bool = False,
    project: sa.ColumnElement[str] | None = None,
) -> sa.Subquery:
    """Every record reachable from the seed records within ``max_depth`` edges, once: ``id``,
    ``depth`` (its distance; the seed records at 0) and, ``with_source``, ``source`` (the seed
    it is nearest to, the smallest id of a tie; walks never re-enter a seed record).
    ``project`` (without ``with_source``): only through records of this project."""
    if postgres:
        walked = levels(seed, direction, max_depth, with_source=with_source, project=project)
        if not with_source:
            return sa.select(
                sa.func.unnest(walked.c.frontier, type_=sa.Uuid()).label("id"), walked.c.depth
            ).subquery(f"{direction}_reached")
        level = (
            sa.func.unnest(walked.c.frontier, walked.c.sources)
            .table_valued(sa.column("id", sa.Uuid()), sa.column("source", sa.Uuid()))
            .render_derived(name="level")
        )
        return (
            sa.select(level.c.id, walked.c.depth, level.c.source)
            .select_from(walked.join(level, sa.true()))
            .subquery(f"{direction}_reached")
        )
    if not with_source:
        reached = distances(walk(seed, direction, max_depth, project=project))
        return sa.select(reached.c.id, reached.c.depth).subquery(f"{direction}_reached")
    walked = walk(seed, direction, max_depth, with_source=True, through_seed=False)
    ranked = sa.select(
        walked.c.id,
        walked.c.depth,
        walked.c.source,
        sa.func.row_number()
        .over(partition_by=walked.c.id, order_by=(walked.c.depth, walked.c.source))
        .label("rank"),
    ).subquery("ranked")
    return (
        sa.select(ranked.c.id, ranked.c.depth, ranked.c.source)
        .where(ranked.c.rank == 1)
        .subquery(f"{direction}_reached")
    )


_ASYNCPG: Dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


# -- statements built once --------------------------------------------------------------------
# The graph answers (lineage, impact) are the hottest reads: building their statements cost
# about as much CPU as PostgreSQL spent running them, and reading rows through the result
# layer more. So each is built once, with bind parameters; on PostgreSQL it is compiled once
# to SQL text and run on the asyncpg connection under the SQLAlchemy one (a prepared
# statement, cached per connection). SQLite runs the same constructs through SQLAlchemy.
@dataclass(frozen=True, slots=True)
class PgStatement:
    """A statement compiled for asyncpg: ``$n`` placeholders filled from named values, and the
    constants (literals SQLAlchemy made parameters of) as compiled."""

    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]

    @classmethod
    def compile(cls, stmt: sa.Select[Any]) -> PgStatement:
        compiled = stmt.compile(dialect=_ASYNCPG)
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def args(self, **values: Any) -> list[Any]:
        return [values[n] if n in values else self.constants[n] for n in self.names]


# The columns of a graph answer row (:meth:`ProvenanceRepository.graph`), by position;
# ``outputs`` is the JSON text. On PostgreSQL a last column, ``truncated``, is the same in
# every row: whether the depth limit cut the walk.
GRAPH_COLUMNS = (
    "depth",
    "id",
    "task_id",
    "project_id",
    "created_at",
    "verification_status",
    "is_tainted",
    "is_suspect",
    "outputs",
)


@functools.cache
def graph_select(direction: Direction, postgres: bool) -> sa.Select[Any]:
    """The root record (``:root``, at depth 0; no row when it does not exist) and every record
    reachable from it within ``:max_depth`` edges, once, at its distance: GRAPH_COLUMNS,
    nearest first (then oldest). PostgreSQL also answers ``truncated``: a record at the limit
    has a neighbour the walk did not reach."""
    root = sa.bindparam("root", type_=sa.Uuid())
    max_depth = sa.bindparam("max_depth", type_=sa.Integer())
    seed = sa.select(pr.c.id).where(pr.c.id == root)
    columns: list[Any] = [*_SUMMARY_PLAIN, sa.cast(pr.c.outputs, sa.Text()).label("outputs")]
    if not postgres:
        reached = nearest(seed, direction, max_depth, postgres=False)
        return (
            sa.select(reached.c.depth, *columns)
            .select_from(reached.join(pr, pr.c.id == reached.c.id))
            .order_by(reached.c.depth, pr.c.created_at, pr.c.id)
        )
    # One level more than asked: the walk was cut when that level is not empty. (The check
    # is one more step of the walk, with its hash anti-join, whatever the width at the limit.)
    walked = levels(seed, direction, max_depth + 1)
    level = (
        sa.select(sa.func.unnest(walked.c.frontier, type_=sa.Uuid()).label("id"), walked.c.depth)
        .where(walked.c.depth <= max_depth)
        .subquery(f"{direction}_reached")
    )
    cut = sa.exists().where(walked.c.depth > max_depth)
    return (
        sa.select(level.c.depth, *columns, cut.label("truncated"))
        .select_from(level.join(pr, pr.c.id == level.c.id))
        .order_by(level.c.depth, pr.c.created_at, pr.c.id)
    )


@functools.cache
def tainted_select(direction: Direction, postgres: bool) -> sa.Select[Any]:
    """:meth:`ProvenanceRepository.reached_tainted` (``:root``, ``:max_depth``, ``:project``:
    the walk passes only through the records of this project)."""
    seed = sa.select(pr.c.id).where(pr.c.id == sa.bindparam("root", type_=sa.Uuid()))
    reached = nearest(
        seed,
        direction,
        sa.bindparam("max_depth", type_=sa.Integer()),
        postgres=postgres,
        project=sa.bindparam("project", type_=sa.String()),
    )
    return (
        sa.select(reached.c.id, reached.c.depth, *(c for c in SUMMARY_COLUMNS if c.key != "id"))
        .select_from(reached.outerjoin(pr, sa.and_(pr.c.id == reached.c.id, pr.c.is_tainted)))
        .order_by(reached.c.depth, reached.c.id)
    )


@functools.cache
def summary_select() -> sa.Select[Any]:
    """A record's summary columns (``:id``)."""
    return sa.select(*SUMMARY_COLUMNS).where(pr.c.id == sa.bindparam("id", type_=sa.Uuid()))


@functools.cache
def pg_graph(direction: Direction) -> PgStatement:
    return PgStatement.compile(graph_select(direction, True))


STRINGS = postgresql.ARRAY(sa.String())


@functools.cache
def pg_waiting_tasks(scoped: bool) -> PgStatement:
    """:meth:`ProvenanceRepository.waiting_tasks` on PostgreSQL: ``:record_ids``,
    ``:statuses`` and, ``scoped``, ``:project_ids`` (arrays)."""
    td = task_dependencies
    producers = sa.select(tasks.c.id).where(
        tasks.c.provenance_id == sa.any_(sa.bindparam("record_ids", type_=UUIDS))
    )
    waiting = sa.select(td.c.task_id.label("id")).where(td.c.depends_on_id.in_(producers))
    waiting_cte = waiting.cte("waiting", recursive=True)
    waiting_cte = waiting_cte.union(
        sa.select(td.c.task_id).select_from(td.join(waiting_cte, td.c.depends_on_id == waiting_cte.c.id))
    )
    stmt = sa.select(tasks.c.id, tasks.c.project_id, tasks.c.status, tasks.c.created_at).where(
        tasks.c.id.in_(sa.select(waiting_cte.c.id)),
        tasks.c.status == sa.any_(sa.bindparam("statuses", type_=STRINGS)),
    )
    if scoped:
        stmt = stmt.where(tasks.c.project_id == sa.any_(sa.bindparam("project_ids", type_=STRINGS)))
    return PgStatement.compile(stmt)


@functools.cache
def pg_in_flight_by_project() -> PgStatement:
    return PgStatement.compile(
        sa.select(tasks.c.project_id, sa.func.count())
        .where(
            tasks.c.project_id == sa.any_(sa.bindparam("project_ids", type_=STRINGS)),
            tasks.c.status == sa.any_(sa.bindparam("statuses", type_=STRINGS)),
        )
        .group_by(tasks.c.project_id)
    )


class ProvenanceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def _id_batches(
        self, column: sa.ColumnElement[Any], ids: Sequence[uuid.UUID]
    ) -> Iterable[sa.ColumnElement[bool]]:
        """``column`` is one of these ids: on PostgreSQL one condition on an array parameter
        (however many ids), on SQLite one IN list per chunk."""
        if not ids:
            return
        if self.is_postgres:
            yield column == sa.any_(sa.bindparam(None, list(ids), type_=UUIDS))
            return
        for batch in _chunks(ids):
            yield column.in_(batch)

    async def _driver(self) -> Any:
        """PostgreSQL: the asyncpg connection under this one, for statements compiled once."""
        raw = await self.conn.get_raw_connection()
        return raw.driver_connection

    # -- records ---------------------------------------------------------------------------
    async def get(self, record_id: uuid.UUID, *, for_update: bool = False) -> RowMapping | None:
        stmt = sa.select(pr).where(pr.c.id == record_id)
        if for_update and self.is_postgres:
            stmt = stmt.with_for_update()
        return (await self.conn.execute(stmt)).mappings().first()

    async def summary(self, record_id: uuid.UUID) -> RowMapping | None:
        """The summary columns of a record (what graph answers say about it)."""
        row: RowMapping | None = (
            (await self.conn.execute(summary_select(), {"id": record_id})).mappings().first()
        )
        return row

    async def get_many(self, record_ids: Sequence[uuid.UUID]) -> list[RowMapping]:
        rows: list[RowMapping] = []
        for batch in _chunks(record_ids):
            rows.extend((await self.conn.execute(sa.select(pr).where(pr.c.id.in_(batch)))).mappings())
        return rows

    def _where(self, f: ProvenanceFilter) -> list[sa.ColumnElement[bool]]:
        clauses = _scoped(pr.c.project_id, f.project_ids)
        if f.task_id:
            clauses.append(pr.c.task_id == f.task_id)
        if f.artifact_id:
            clauses.append(
                pr.c.id.in_(
                    sa.select(provenance_artifacts.c.provenance_id).where(
                        provenance_artifacts.c.artifact_id == f.artifact_id
                    )
                )
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
    ) -> Sequence[RowMapping]:
        """Newest first; ``after`` (the last row of the previous page) is the keyset cursor."""
        stmt = sa.select(pr).where(*self._where(f))
        if after is not None:
            stmt = stmt.where(sa.tuple_(pr.c.created_at, pr.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(pr.c.created_at.desc(), pr.c.id.desc()).limit(limit).offset(offset)
        return (await self.conn.execute(stmt)).mappings().all()

    async def count(self, f: ProvenanceFilter, *, cap: int | None = None) -> int:
        """How many records match, counting no further than ``cap`` + 1."""
        return await self._count(sa.select(sa.literal(1)).select_from(pr).where(*self._where(f)), cap)

    async def _count(self, matching: sa.Select[Any], cap: int | None) -> int:
        if cap is not None:
            matching = matching.limit(cap + 1)
        stmt = sa.select(sa.func.count()).select_from(matching.subquery())
        return int((await self.conn.execute(stmt)).scalar_one())

    async def insert(self, record: dict[str, Any]) -> None:
        await self.conn.execute(pr.insert(), record)

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
        """The record of ``project_id`` that produced each of these artifacts (an artifact id
        is its project's: another project's producer of the same id is not this one's)."""
        pa = provenance_artifacts
        found: dict[str, uuid.UUID] = {}
        for batch in _chunks(artifact_ids):
            stmt = sa.select(pa.c.artifact_id, pa.c.provenance_id).where(
                pa.c.project_id == project_id, pa.c.artifact_id.in_(batch)
            )
            found.update({row[0]: row[1] for row in await self.conn.execute(stmt)})
        return found

    async def artifact_projects(self, artifact_id: str, project_ids: Sequence[str] | None) -> list[str]:
        """The projects (of these; None = all) that have a producer of this artifact id."""
        pa = provenance_artifacts
        stmt = (
            sa.select(pa.c.project_id)
            .where(pa.c.artifact_id == artifact_id, *_scoped(pa.c.project_id, project_ids))
            .order_by(pa.c.project_id)
            .limit(CHUNK)
        )
        return list((await self.conn.execute(stmt)).scalars())

    async def add_dependencies(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(artifact_dependencies.insert(), rows)

    async def add_unresolved(
        self, project_id: str, record_id: uuid.UUID, inputs: Sequence[tuple[str, str]]
    ) -> None:
        """Inputs (artifact id, relationship) no record of the project produced yet."""
        if inputs:
            await self.conn.execute(
                insert_ignoring_conflicts(self.conn, provenance_unresolved_inputs),
                [
                    {"record_id": record_id, "project_id": project_id, "artifact_id": a, "relationship": rel}
                    for a, rel in inputs
                ],
            )

    async def resolve_waiting(
        self, project_id: str, record_id: uuid.UUID, artifact_ids: Sequence[str]
    ) -> None:
        """This record now produces these artifacts: earlier records of its project that used
        them get their dependency edge, and the inputs are no longer unresolved."""
        u = provenance_unresolved_inputs
        for batch in _chunks(artifact_ids):
            mine = sa.and_(u.c.project_id == project_id, u.c.artifact_id.in_(batch))
            waiting = sa.select(
                u.c.record_id, sa.literal(record_id, sa.Uuid()), u.c.relationship, u.c.artifact_id
            ).where(mine, u.c.record_id != record_id)
            await self.conn.execute(
                insert_ignoring_conflicts(self.conn, artifact_dependencies).from_select(
                    ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"], waiting
                )
            )
            await self.conn.execute(u.delete().where(mine))

    # -- the graph -------------------------------------------------------------------------
    async def graph(
        self, root: uuid.UUID, direction: Direction, max_depth: int
    ) -> tuple[Sequence[Sequence[Any]], bool]:
        """The root record (depth 0) and every record reachable from it within ``max_depth``
        edges, rows of GRAPH_COLUMNS by position, nearest first; no rows when the root does not
        exist. And whether the depth limit cut the walk (a record at the limit has a neighbour
        that was not reached). Unscoped: a path may pass through any project."""
        if self.is_postgres:
            stmt = pg_graph(direction)
            driver = await self._driver()
            rows = await driver.fetch(stmt.sql, *stmt.args(root=root, max_depth=max_depth))
            return rows, bool(rows) and rows[0][len(GRAPH_COLUMNS)]
        found = list(
            await self.conn.execute(graph_select(direction, False), {"root": root, "max_depth": max_depth})
        )
        edge = [r[1] for r in found if r[0] == max_depth]
        return found, bool(edge) and await self.beyond(edge, direction, {r[1] for r in found})

    async def reached_tainted(
        self, root: uuid.UUID, direction: Direction, max_depth: int, project_id: str
    ) -> list[RowMapping]:
        """The root record (depth 0) and every record reachable from it through records of
        ``project_id``, each with its distance, nearest first; the summary columns only of the
        tainted ones (``is_tainted`` NULL for the others: they are found from the partial
        index, the others' rows are not read)."""
        stmt = tainted_select(direction, self.is_postgres)
        params = {"root": root, "max_depth": max_depth, "project": project_id}
        return list((await self.conn.execute(stmt, params)).mappings())

    async def cascade_targets(
        self, seed: sa.Select[Any], max_depth: int, project_id: str, *, only_root: uuid.UUID | None = None
    ) -> list[RowMapping]:
        """Every record of ``project_id`` downstream of the seed records (not re-entering
        them), with its distance and the seed record it is nearest to (``source``), and whether
        it is tainted. ``only_root``: the seed is this one record, the source of every target
        (a plain walk)."""
        reached = nearest(seed, "down", max_depth, postgres=self.is_postgres, with_source=only_root is None)
        source = reached.c.source if only_root is None else sa.literal(only_root, sa.Uuid()).label("source")
        stmt = (
            sa.select(
                reached.c.id,
                reached.c.depth,
                source,
                pr.c.project_id,
                _json_text(pr.c.outputs),
                pr.c.is_tainted,
            )
            .select_from(reached.join(pr, pr.c.id == reached.c.id))
            .where(reached.c.depth > 0, pr.c.project_id == project_id)
            .order_by(reached.c.depth, pr.c.created_at, pr.c.id)
        )
        return list((await self.conn.execute(stmt)).mappings())

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

    async def edges_between(self, record_ids: Sequence[uuid.UUID]) -> list[RowMapping]:
        """Edges whose dependent is one of these records (to rebuild a path)."""
        d = artifact_dependencies
        rows: list[RowMapping] = []
        for batch in self._id_batches(d.c.artifact_id, record_ids):
            stmt = sa.select(d.c.artifact_id, d.c.depends_on, d.c.via_artifact_id).where(batch)
            rows.extend((await self.conn.execute(stmt)).mappings())
        return rows

    async def waiting_tasks(
        self, record_ids: Sequence[uuid.UUID], statuses: Sequence[str], project_ids: Sequence[str] | None
    ) -> list[Any]:
        """Unfinished tasks that depend, through task_dependencies (transitively), on a task
        whose provenance record is one of these: id, project_id, status, created_at."""
        if self.is_postgres:
            pg = pg_waiting_tasks(project_ids is not None)
            args = pg.args(
                record_ids=list(record_ids),
                statuses=list(statuses),
                project_ids=None if project_ids is None else list(project_ids),
            )
            rows = await (await self._driver()).fetch(pg.sql, *args)
            return sorted(rows, key=lambda r: (r["created_at"], str(r["id"])))
        found: dict[Any, RowMapping] = {}
        td = task_dependencies
        for batch in self._id_batches(tasks.c.provenance_id, record_ids):
            producers = sa.select(tasks.c.id).where(batch)
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
                *_scoped(tasks.c.project_id, project_ids),
            )
            for row in (await self.conn.execute(stmt)).mappings():
                found[row["id"]] = row
        return sorted(found.values(), key=lambda r: (r["created_at"], str(r["id"])))

    async def in_flight_by_project(
        self, project_ids: Sequence[str], statuses: Sequence[str]
    ) -> dict[str, int]:
        if self.is_postgres:
            pg = pg_in_flight_by_project()
            args = pg.args(project_ids=list(project_ids), statuses=list(statuses))
            return {p: int(n) for p, n in await (await self._driver()).fetch(pg.sql, *args)}
        counts: dict[str, int] = {}
        for batch in _chunks(project_ids):
            stmt = (
                sa.select(tasks.c.project_id, sa.func.count())
                .where(tasks.c.project_id.in_(batch), tasks.c.status.in_(list(statuses)))
                .group_by(tasks.c.project_id)
            )
            counts.update({p: int(n) for p, n in await self.conn.execute(stmt)})
        return counts

    # -- taint -----------------------------------------------------------------------------
    def _locked_in_order(self, ids: sa.Select[Any] | sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """PostgreSQL: the condition "``pr.id`` is one of these" that, in an UPDATE, first locks
        the rows in id order, so two cascades over overlapping records queue on the first
        common row instead of each holding some rows the other waits for (a deadlock)."""
        where = pr.c.id.in_(ids) if isinstance(ids, sa.Select) else ids
        return pr.c.id.in_(sa.select(pr.c.id).where(where).order_by(pr.c.id).with_for_update())

    async def mark_tainted(
        self, seed: sa.Select[Any], *, at: datetime, reason: str, tainted_by: str | None
    ) -> None:
        await self.conn.execute(
            pr.update()
            .where(self._locked_in_order(seed) if self.is_postgres else pr.c.id.in_(seed))
            .values(
                is_tainted=True,
                tainted_at=at,
                tainted_reason=reason,
                tainted_by=tainted_by,
                verification_status="tainted",
            )
        )

    async def mark_suspect(self, sources: dict[uuid.UUID, str], *, at: datetime) -> None:
        """Mark these records suspect, each with its source (the tainted artifact it depends
        on). PostgreSQL: one statement, rows locked in id order."""
        if not sources:
            return
        if self.is_postgres:
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
                .where(pr.c.id == suspect.c.id, self._locked_in_order(pr.c.id == sa.any_(ids)))
                .values(is_suspect=True, suspect_since=at, suspect_source=suspect.c.source)
            )
            return
        by_source: dict[str, list[uuid.UUID]] = {}
        for record_id, source in sources.items():
            by_source.setdefault(source, []).append(record_id)
        for source, record_ids in by_source.items():
            for batch in _chunks(record_ids):
                await self.conn.execute(
                    pr.update()
                    .where(pr.c.id.in_(batch))
                    .values(is_suspect=True, suspect_since=at, suspect_source=source)
                )

    async def clear_suspect(self, record_id: uuid.UUID) -> None:
        await self.conn.execute(
            pr.update()
            .where(pr.c.id == record_id)
            .values(is_suspect=False, suspect_since=None, suspect_source=None)
        )

    async def add_taint_events(self, rows: Sequence[dict[str, Any]]) -> None:
        await self._insert_all(taint_events, rows)

    async def _insert_all(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert many rows (all with the same keys). PostgreSQL: one ``INSERT … SELECT FROM
        unnest(<one array per column>)``, a single round trip and no per-row statement;
        columns that are None in every row are left out (NULL). JSON values and SQLite take
        an executemany per chunk."""
        if not rows:
            return
        columns = [c for c in table.columns if any(r.get(c.key) is not None for r in rows)]
        if not self.is_postgres or any(isinstance(c.type, sa.JSON) for c in columns):
            for batch in _chunks(rows):
                await self.conn.execute(table.insert(), batch)
            return
        values = (
            sa.func.unnest(
                *(
                    sa.bindparam(None, [r.get(c.key) for r in rows], type_=postgresql.ARRAY(c.type))
                    for c in columns
                )
            )
            .table_valued(*(sa.column(c.key, c.type) for c in columns))
            .render_derived(name="v")
        )
        await self.conn.execute(table.insert().from_select([c.key for c in columns], sa.select(values)))

    def _taint_where(self, f: TaintEventFilter) -> list[sa.ColumnElement[bool]]:
        te = taint_events
        clauses = _scoped(te.c.project_id, f.project_ids)
        if f.cascade_id is not None:
            clauses.append(te.c.cascade_id == f.cascade_id)
        if f.provenance_id is not None:
            clauses.append(te.c.provenance_id == f.provenance_id)
        if f.artifact_id is not None:
            clauses.append(te.c.artifact_id == f.artifact_id)
        if f.action is not None:
            clauses.append(te.c.action == f.action)
        return clauses

    async def find_taint_events(
        self, f: TaintEventFilter, *, limit: int, offset: int = 0, after: tuple[datetime, str] | None = None
    ) -> Sequence[RowMapping]:
        te = taint_events
        stmt = sa.select(te).where(*self._taint_where(f))
        if after is not None:
            stmt = stmt.where(sa.tuple_(te.c.timestamp, te.c.id) < sa.tuple_(*after))
        stmt = stmt.order_by(te.c.timestamp.desc(), te.c.id.desc()).limit(limit).offset(offset)
        return (await self.conn.execute(stmt)).mappings().all()

    async def count_taint_events(self, f: TaintEventFilter, *, cap: int | None = None) -> int:
        matching = sa.select(sa.literal(1)).select_from(taint_events).where(*self._taint_where(f))
        return await self._count(matching, cap)

    async def taint_flags(self, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RowMapping]:
        """Taint state of these records (id → is_tainted, is_suspect, suspect_source).
        PostgreSQL: read FOR SHARE, in id order, so that a taint being applied to one of
        them is waited for, and one not yet begun waits for the caller's commit."""
        stmt = sa.select(pr.c.id, pr.c.is_tainted, pr.c.is_suspect, pr.c.suspect_source).where(
            pr.c.id.in_(sorted(record_ids, key=str))
        )
        if self.is_postgres:
            stmt = stmt.order_by(pr.c.id).with_for_update(read=True)
        return {r["id"]: r for r in (await self.conn.execute(stmt)).mappings()}

    async def last_trail_event(
        self, record_id: uuid.UUID, actions: Sequence[str] = ("taint", "suspect")
    ) -> RowMapping | None:
        """The record's latest trail entry of these actions (its cascade, depth and source)."""
        te = taint_events
        stmt = (
            sa.select(te)
            .where(te.c.provenance_id == record_id, te.c.action.in_(list(actions)))
            .order_by(te.c.timestamp.desc(), te.c.id.desc())
            .limit(1)
        )
        return (await self.conn.execute(stmt)).mappings().first()

    # Cascade and rollback ids are the project's: the same id in another project is another
    # cascade, and invisible here.
    async def cascade_known(self, project_id: str, cascade_id: str) -> bool:
        """A cascade of this project already applied here, or imported from the legacy files."""
        tc, te = taint_cascades, taint_events
        stmt = sa.select(tc.c.id).where(tc.c.project_id == project_id, tc.c.id == cascade_id)
        if (await self.conn.execute(stmt)).first():
            return True
        stmt = sa.select(te.c.id).where(te.c.cascade_id == cascade_id, te.c.project_id == project_id).limit(1)
        return (await self.conn.execute(stmt)).first() is not None

    async def claim_cascade(self, row: dict[str, Any]) -> bool:
        """Insert the cascade's row; False when its id (or rollback id) was already claimed in
        its project. On PostgreSQL a concurrent claim of the same id waits for the first to
        commit."""
        result = await self.conn.execute(insert_ignoring_conflicts(self.conn, taint_cascades).values(**row))
        return bool(result.rowcount)

    async def set_cascade_result(self, project_id: str, cascade_id: str, result: dict[str, Any]) -> None:
        tc = taint_cascades
        await self.conn.execute(
            tc.update().where(tc.c.project_id == project_id, tc.c.id == cascade_id).values(result=result)
        )

    async def get_cascade(self, project_id: str, cascade_id: str) -> RowMapping | None:
        tc = taint_cascades
        stmt = sa.select(tc).where(tc.c.project_id == project_id, tc.c.id == cascade_id)
        return (await self.conn.execute(stmt)).mappings().first()

    async def cascade_by_rollback(self, project_id: str, rollback_id: str) -> RowMapping | None:
        tc = taint_cascades
        stmt = sa.select(tc).where(tc.c.project_id == project_id, tc.c.rollback_id == rollback_id)
        return (await self.conn.execute(stmt)).mappings().first()

    async def cascade_summary(self, project_id: str, cascade_id: str) -> dict[str, int]:
        te = taint_events
        stmt = (
            sa.select(te.c.action, sa.func.count(sa.distinct(te.c.provenance_id)))
            .where(te.c.cascade_id == cascade_id, te.c.project_id == project_id)
            .group_by(te.c.action)
        )
        return {action: int(n) for action, n in await self.conn.execute(stmt)}

    # -- projects --------------------------------------------------------------------------
    async def project_counts(self, project_id: str) -> dict[str, int]:
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
        total, tainted, suspect, affected, pending = (await self.conn.execute(stmt)).one()
        return {
            "total": int(total),
            "tainted": int(tainted),
            "suspect": int(suspect),
            "affected": int(affected),
            "pending_revalidation": int(pending),
        }

    async def orphaned_inputs(self, project_id: str) -> int:
        """Distinct artifact ids the project's records consumed or referenced that no record
        of the project produced."""
        u = provenance_unresolved_inputs
        stmt = sa.select(sa.func.count(sa.distinct(u.c.artifact_id))).where(u.c.project_id == project_id)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def project_snapshot(self, project_id: str) -> dict[str, Any]:
        """What a new checkpoint records: counts and the newest record."""
        records = int(
            (
                await self.conn.execute(sa.select(sa.func.count()).where(pr.c.project_id == project_id))
            ).scalar_one()
        )
        artifacts = int(
            (
                await self.conn.execute(
                    sa.select(sa.func.count())
                    .select_from(provenance_artifacts)
                    .where(provenance_artifacts.c.project_id == project_id)
                )
            ).scalar_one()
        )
        last = (
            await self.conn.execute(
                sa.select(pr.c.id, pr.c.task_id)
                .where(pr.c.project_id == project_id)
                .order_by(pr.c.created_at.desc(), pr.c.id.desc())
                .limit(1)
            )
        ).first()
        return {
            "provenance_count": records,
            "artifact_count": artifacts,
            "last_provenance_id": str(last[0]) if last else "",
            "last_task_id": str(last[1]) if last else "",
        }

    # -- checkpoints -----------------------------------------------------------------------
    async def get_checkpoint(self, checkpoint_id: str) -> RowMapping | None:
        stmt = sa.select(checkpoints).where(checkpoints.c.id == checkpoint_id)
        return (await self.conn.execute(stmt)).mappings().first()

    async def add_checkpoint(self, row: dict[str, Any]) -> None:
        await self.conn.execute(checkpoints.insert(), row)

    async def list_checkpoints(
        self, project_id: str, *, include_invalid: bool, limit: int, offset: int
    ) -> tuple[Sequence[RowMapping], int]:
        where = [checkpoints.c.project_id == project_id]
        if not include_invalid:
            where.append(checkpoints.c.is_valid)
        rows = (
            (
                await self.conn.execute(
                    sa.select(checkpoints)
                    .where(*where)
                    .order_by(checkpoints.c.created_at.desc(), checkpoints.c.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            .mappings()
            .all()
        )
        total = (
            await self.conn.execute(sa.select(sa.func.count()).select_from(checkpoints).where(*where))
        ).scalar_one()
        return rows, int(total)

    async def invalidate_checkpoints_after(
        self, project_id: str, after: datetime, *, at: datetime, by: str
    ) -> int:
        result = await self.conn.execute(
            checkpoints.update()
            .where(
                checkpoints.c.project_id == project_id,
                checkpoints.c.created_at > after,
                checkpoints.c.is_valid,
            )
            .values(is_valid=False, invalidated_at=at, invalidated_by=by)
        )
        return int(result.rowcount)


def _chunks(items: Iterable[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
