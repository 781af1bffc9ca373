"""The graph walks as SQLAlchemy Core, and the statements built once.

Graph walks are recursive CTEs with a depth limit, which also ends walks around cycles in
bad data. On PostgreSQL the walk is breadth-first, one row per level (:func:`levels`): each
record is expanded once, at its distance, however many paths of other lengths lead to it
(diamonds). SQLite has no arrays: there :func:`walk` follows every path (``UNION`` drops a
(record, depth) pair met twice) and the smallest depth at which a record is met is its
distance. Both answer the same.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import Grouping

from orchestration_service.db.tables import (
    artifact_dependencies,
    provenance_records,
    task_dependencies,
    tasks,
)
from orchestration_service.domain.provenance import rules
from orchestration_service.repositories.provenance.port import Direction

CHUNK = 1000  # ids per IN list (well under SQLite's and asyncpg's parameter limits)

pr = provenance_records


class JSONText(sa.types.TypeDecorator[Any]):
    """A JSON document read as its text and parsed with orjson: graph answers read thousands
    of small ``outputs`` lists, which orjson parses several times faster than the driver."""

    impl = sa.Text()
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


def json_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
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
SUMMARY_COLUMNS = (*_SUMMARY_PLAIN, json_text(pr.c.outputs))


def insert_ignoring_conflicts(table: sa.Table, *, postgres: bool) -> Any:
    """INSERT … ON CONFLICT DO NOTHING (any unique constraint) in the backend's dialect."""
    return (postgresql.insert(table) if postgres else sqlite.insert(table)).on_conflict_do_nothing()


def scoped(column: sa.ColumnElement[Any], project_ids: Sequence[str] | None) -> list[sa.ColumnElement[bool]]:
    return [] if project_ids is None else [column.in_(list(project_ids))]


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
    ranked, cut, _ = pg_ranked(seed, direction, max_depth)
    listed = sa.bindparam("listed", type_=sa.BigInteger())
    return sa.select(
        *(ranked.c[c] for c in GRAPH_COLUMNS[:-1]),
        sa.case((ranked.c.n <= listed, sa.cast(ranked.c.outputs, sa.Text()))).label("outputs"),
        cut.label("truncated"),
    ).order_by(ranked.c.n)


def pg_ranked(
    seed: sa.Select[Any],
    direction: Direction,
    max_depth: sa.ColumnElement[int],
    *,
    upto: sa.ColumnElement[int] | None = None,
) -> tuple[sa.Subquery, sa.ColumnElement[bool], sa.CTE]:
    """PostgreSQL: the records a walk reaches, ``ranked`` by ``n`` (nearest first, then
    oldest; the root is 1), with their summary columns and ``outputs`` as jsonb; ``cut``,
    whether the depth limit cut the walk; and the walk's ``levels``. ``upto``: only the
    records of the levels up to the first that makes ``upto`` records (the ``upto`` nearest
    are among them; the others are not read)."""
    # One level more than asked: the walk was cut when that level is not empty. (The check
    # is one more step of the walk, with its hash anti-join, whatever the width at the limit.)
    walked = levels(seed, direction, max_depth + 1)
    level = (
        sa.select(sa.func.unnest(walked.c.frontier, type_=sa.Uuid()).label("id"), walked.c.depth)
        .where(walked.c.depth <= max_depth)
        .subquery(f"{direction}_reached")
    )
    cut = sa.exists().where(walked.c.depth > max_depth)
    order: tuple[Any, ...] = (walked.c.depth.desc(),)
    if upto is not None:  # the first level with enough records, else the last
        enough = sa.func.cardinality(walked.c.seen) >= upto
        order = (enough.desc(), sa.case((enough, walked.c.depth), else_=-walked.c.depth))
    last_seen = (
        sa.select(walked.c.seen)
        .where(walked.c.depth <= max_depth)
        .order_by(*order)
        .limit(1)
        .scalar_subquery()
    )
    # The answers list the nearest ``:listed`` records only: the others' outputs are not turned
    # into JSON text (the costliest column; PostgreSQL renders jsonb as text row by row).
    ranked = (
        sa.select(
            level.c.depth,
            *_SUMMARY_PLAIN,
            pr.c.outputs,
            sa.func.row_number().over(order_by=(level.c.depth, pr.c.created_at, pr.c.id)).label("n"),
        )
        .select_from(level.join(pr, pr.c.id == level.c.id))
        # The same records again, as one array: PostgreSQL then reads them in one index scan
        # (keys sorted) and hash-joins the levels, instead of one index probe per record.
        .where(pr.c.id == sa.any_(sa.cast(last_seen, UUIDS)))
        .subquery("ranked")
    )
    return ranked, cut, walked


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


def chunks(items: Iterable[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    """Statement-sized batches (bound parameters are limited per statement)."""
    return rules.chunks(items, size)
