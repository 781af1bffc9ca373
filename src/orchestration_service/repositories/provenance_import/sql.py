"""The legacy import and export in SQL: one statement set (SQLAlchemy Core) shared by both
backends; ``postgres.py`` and ``sqlite.py`` add their conflict clause, bulk loading and
statistics refresh."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from orchestration_service.db.engine import Transaction
from orchestration_service.db.tables import (
    artifact_dependencies,
    checkpoints,
    provenance_artifacts,
    provenance_records,
    provenance_unresolved_inputs,
    taint_events,
)
from orchestration_service.repositories.provenance_import.port import (
    GraphLinks,
    ImportedPart,
    LegacyRow,
    LegacyTable,
    RecordLinks,
)

TABLES: dict[LegacyTable, sa.Table] = {
    "records": provenance_records,
    "taint_events": taint_events,
    "checkpoints": checkpoints,
}
# The tables of each part the import writes (their statistics are refreshed after it).
PARTS: dict[ImportedPart, tuple[sa.Table, ...]] = {
    "records": (provenance_records,),
    "graph": (provenance_artifacts, artifact_dependencies, provenance_unresolved_inputs),
    "taint_events": (taint_events,),
    "checkpoints": (checkpoints,),
}
IN_LIST = 1000  # ids per IN (...) lookup

# Staging (temporary, this transaction's): what each imported record produced and used.
staging = sa.MetaData()
stage_outputs = sa.Table(
    "provenance_import_outputs",
    staging,
    sa.Column("record_id", sa.Uuid(), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    prefixes=["TEMPORARY"],
)
stage_inputs = sa.Table(
    "provenance_import_inputs",
    staging,
    sa.Column("record_id", sa.Uuid(), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("relationship", sa.String(16), nullable=False),
    prefixes=["TEMPORARY"],
)


def output_rows(links: Sequence[RecordLinks]) -> list[tuple[uuid.UUID, str, str, datetime]]:
    return [(r.record_id, r.project_id, a, r.created_at) for r in links for a in r.output_ids]


def input_rows(links: Sequence[RecordLinks]) -> list[tuple[uuid.UUID, str, str, str]]:
    return [(r.record_id, r.project_id, a, rel) for r in links for a, rel in r.input_refs]


def _rows(result: sa.CursorResult[Any]) -> list[LegacyRow]:
    # RowMapping is a read-only Mapping keyed by column name: the row as the port promises it.
    return cast(list[LegacyRow], result.mappings().all())


def _update(table: sa.Table) -> Any:
    """UPDATE table SET every column = :column WHERE id = :b_id (for executemany)."""
    return (
        table.update()
        .where(table.c.id == sa.bindparam("b_id"))
        .values({c.name: sa.bindparam(c.name) for c in table.columns if c.name != "id"})
    )


def _keyset(
    table: sa.Table, project_id: str | None, after: tuple[Any, Any] | None, limit: int
) -> sa.Select[Any]:
    stmt = sa.select(table)
    if project_id is not None:
        stmt = stmt.where(table.c.project_id == project_id)
    if after is not None:
        stmt = stmt.where(sa.tuple_(table.c.created_at, table.c.id) > sa.tuple_(*after))
    return stmt.order_by(table.c.created_at, table.c.id).limit(limit)


class SqlProvenanceImport:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.conn = tx.conn

    # -- backend specifics -----------------------------------------------------------------------
    def _among(self, column: sa.ColumnElement[Any], ids: Sequence[Any]) -> sa.ColumnElement[bool]:
        """``column IN (ids)``."""
        return column.in_(ids)

    def _insert_ignoring_conflicts(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        raise NotImplementedError

    async def _stage(self, links: Sequence[RecordLinks]) -> None:
        """Fill the (just created) staging tables."""
        raise NotImplementedError

    async def refresh_statistics(self, part: ImportedPart) -> None:
        raise NotImplementedError

    # -- import ------------------------------------------------------------------------------------
    async def stored(self, table: LegacyTable, ids: Sequence[Any]) -> dict[Any, LegacyRow]:
        t = TABLES[table]
        found: dict[Any, LegacyRow] = {}
        for start in range(0, len(ids), IN_LIST):
            stmt = sa.select(t).where(self._among(t.c.id, ids[start : start + IN_LIST]))
            found.update((r["id"], r) for r in _rows(await self.conn.execute(stmt)))
        return found

    async def insert(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        if rows:
            await self.conn.execute(TABLES[table].insert(), list(rows))

    async def update(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        if rows:
            await self.conn.execute(_update(TABLES[table]), [{**r, "b_id": r["id"]} for r in rows])

    async def forget_links(self, record_ids: Sequence[uuid.UUID]) -> None:
        for start in range(0, len(record_ids), IN_LIST):
            ids = record_ids[start : start + IN_LIST]
            await self.conn.execute(
                artifact_dependencies.delete().where(self._among(artifact_dependencies.c.artifact_id, ids))
            )
            await self.conn.execute(
                provenance_artifacts.delete().where(self._among(provenance_artifacts.c.provenance_id, ids))
            )
            u = provenance_unresolved_inputs
            await self.conn.execute(u.delete().where(self._among(u.c.record_id, ids)))

    async def link(self, links: Sequence[RecordLinks]) -> GraphLinks:
        await self.conn.run_sync(lambda sync: staging.create_all(sync, checkfirst=False))
        await self._stage(links)
        try:
            return await self._resolve()
        finally:
            await self.conn.run_sync(lambda sync: staging.drop_all(sync, checkfirst=False))

    async def _resolve(self) -> GraphLinks:
        so, si = stage_outputs, stage_inputs
        pa, ad, u = provenance_artifacts, artifact_dependencies, provenance_unresolved_inputs
        ranked = sa.select(
            so.c.project_id,
            so.c.artifact_id,
            so.c.record_id,
            sa.func.row_number()
            .over(
                partition_by=(so.c.project_id, so.c.artifact_id), order_by=(so.c.created_at, so.c.record_id)
            )
            .label("rank"),
        ).subquery()
        first = sa.select(ranked.c.project_id, ranked.c.artifact_id, ranked.c.record_id).where(
            ranked.c.rank == 1
        )
        result = await self.conn.execute(
            self._insert_ignoring_conflicts(pa).from_select(
                ["project_id", "artifact_id", "provenance_id"], first
            )
        )
        artifacts = max(int(result.rowcount), 0)
        same = sa.and_(pa.c.project_id == si.c.project_id, pa.c.artifact_id == si.c.artifact_id)
        edges = (
            sa.select(si.c.record_id, pa.c.provenance_id, si.c.relationship, si.c.artifact_id)
            .select_from(si.join(pa, same))
            .where(pa.c.provenance_id != si.c.record_id)
        )
        edge_columns = ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"]
        result = await self.conn.execute(self._insert_ignoring_conflicts(ad).from_select(edge_columns, edges))
        dependencies = max(int(result.rowcount), 0)
        # Inputs nothing of their project produced are kept (orphaned artifacts); those an
        # earlier run or the service left unresolved and this run produced become edges now.
        await self.conn.execute(
            self._insert_ignoring_conflicts(u).from_select(
                ["record_id", "project_id", "artifact_id", "relationship"],
                sa.select(si.c.record_id, si.c.project_id, si.c.artifact_id, si.c.relationship).where(
                    ~sa.exists().where(same)
                ),
            )
        )
        waiting = sa.and_(pa.c.project_id == u.c.project_id, pa.c.artifact_id == u.c.artifact_id)
        late = (
            sa.select(u.c.record_id, pa.c.provenance_id, u.c.relationship, u.c.artifact_id)
            .select_from(u.join(pa, waiting))
            .where(pa.c.provenance_id != u.c.record_id)
        )
        result = await self.conn.execute(self._insert_ignoring_conflicts(ad).from_select(edge_columns, late))
        dependencies += max(int(result.rowcount), 0)
        await self.conn.execute(u.delete().where(sa.exists().where(waiting)))
        return GraphLinks(artifacts_added=artifacts, dependencies_added=dependencies)

    async def projects_of(self, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        pr = provenance_records
        found: dict[uuid.UUID, str] = {}
        for start in range(0, len(record_ids), IN_LIST):
            stmt = sa.select(pr.c.id, pr.c.project_id).where(
                self._among(pr.c.id, record_ids[start : start + IN_LIST])
            )
            found.update({row[0]: row[1] for row in await self.conn.execute(stmt)})
        return found

    # -- export ------------------------------------------------------------------------------------
    async def count_records(self, project_id: str | None) -> int:
        pr = provenance_records
        stmt = sa.select(sa.func.count()).select_from(pr)
        if project_id is not None:
            stmt = stmt.where(pr.c.project_id == project_id)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def records_after(
        self, project_id: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[LegacyRow]:
        return _rows(await self.conn.execute(_keyset(provenance_records, project_id, after, limit)))

    async def taint_events_in_order(self, project_id: str | None) -> Sequence[LegacyRow]:
        te = taint_events
        stmt = sa.select(te).order_by(te.c.timestamp, sa.func.coalesce(te.c.seq, -1), te.c.id)
        if project_id is not None:
            stmt = stmt.where(te.c.project_id == project_id)
        return _rows(await self.conn.execute(stmt))

    async def checkpoints_after(
        self, project_id: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[LegacyRow]:
        return _rows(await self.conn.execute(_keyset(checkpoints, project_id, after, limit)))
