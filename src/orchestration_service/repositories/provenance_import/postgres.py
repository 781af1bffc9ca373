"""The legacy import on PostgreSQL: records and staging rows go in by COPY (one round trip
per batch, no per-row statement), and statistics refreshed after the load."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from orchestration_service.db.tables import JSONType, provenance_records
from orchestration_service.repositories.provenance_import.port import (
    ImportedPart,
    LegacyRow,
    LegacyTable,
    RecordLinks,
)
from orchestration_service.repositories.provenance_import.sql import (
    PARTS,
    SqlProvenanceImport,
    input_rows,
    output_rows,
    stage_inputs,
    stage_outputs,
)

_RECORD_COLUMNS = tuple(c.name for c in provenance_records.columns)
_PRESENT = f"SELECT id FROM {provenance_records.name} WHERE id = ANY($1::uuid[])"
_JSON_COLUMNS = frozenset(c.name for c in provenance_records.columns if c.type is JSONType)


def _json(value: Any) -> str | None:
    """JSONB text (None is SQL NULL, as the column type stores it)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond orjson (an integer past 64 bits): the standard library's
        return json.dumps(value)


_PLAIN = tuple(c for c in _RECORD_COLUMNS if c not in _JSON_COLUMNS)
# The records' queries read their rows from the heap (no index-only scan to gain from a
# visibility map) and filter on no JSONB column: statistics of the plain columns are all the
# planner needs. ANALYZE of those took 0.1 s at 20,000 rows where VACUUM (ANALYZE) took ~0.7 s
# (most of it sampling the JSONB); autovacuum does the rest later. The graph's walks do use
# index-only scans and its tables are small: VACUUM (ANALYZE) them.
_REFRESH = {provenance_records.name: f"ANALYZE {provenance_records.name} ({', '.join(_PLAIN)})"}
_ENCODED = tuple(c for c in _RECORD_COLUMNS if c in _JSON_COLUMNS)
# COPY's column order: the plain columns, then the JSONB ones (encoded here).
_COPY_COLUMNS = _PLAIN + _ENCODED


_plain_values = operator.itemgetter(*_PLAIN)  # the plain columns' values, picked in C


def _copy_row(row: LegacyRow) -> tuple[Any, ...]:
    return (*_plain_values(row), *[_json(row[c]) for c in _ENCODED])


class PostgresProvenanceImport(SqlProvenanceImport):
    def _among(self, column: sa.ColumnElement[Any], ids: Sequence[Any]) -> sa.ColumnElement[bool]:
        # One array parameter, not one per id: the statement is the same for any number of
        # ids, so it is planned once per connection (an IN list of 1,000 is planned each time).
        return column == sa.any_(sa.bindparam(None, list(ids), type_=postgresql.ARRAY(column.type)))

    def _insert_ignoring_conflicts(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table).on_conflict_do_nothing()

    async def stored(self, table: LegacyTable, ids: Sequence[Any]) -> dict[Any, LegacyRow]:
        if table != "records" or not ids:
            return await super().stored(table, ids)
        # Which exist, in one array-bound statement: a first import finds none and reads no row.
        driver = await self.tx.driver()
        present = [r[0] for r in await driver.fetch(_PRESENT, list(ids))]
        return await super().stored(table, present) if present else {}

    async def insert(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        if table != "records" or not rows:
            await super().insert(table, rows)  # few rows: taint events, checkpoints
            return
        driver = await self.tx.driver()
        await driver.copy_records_to_table(
            provenance_records.name, records=[_copy_row(r) for r in rows], columns=_COPY_COLUMNS
        )

    async def _stage(self, links: Sequence[RecordLinks]) -> None:
        driver = await self.tx.driver()
        for table, rows in ((stage_outputs, output_rows(links)), (stage_inputs, input_rows(links))):
            if rows:
                await driver.copy_records_to_table(
                    table.name, records=rows, columns=[c.name for c in table.columns]
                )

    async def refresh_statistics(self, part: ImportedPart) -> None:
        # VACUUM cannot run inside a transaction: this unit of work is a ``read()`` (autocommit).
        for table in PARTS[part]:
            await self.conn.exec_driver_sql(_REFRESH.get(table.name, f"VACUUM (ANALYZE) {table.name}"))
