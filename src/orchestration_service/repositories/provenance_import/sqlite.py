"""The legacy import on SQLite: batches by executemany (one prepared statement, in-process),
and ANALYZE after the load."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from orchestration_service.repositories.provenance_import.port import ImportedPart, RecordLinks
from orchestration_service.repositories.provenance_import.sql import (
    PARTS,
    SqlProvenanceImport,
    input_rows,
    output_rows,
    stage_inputs,
    stage_outputs,
)


class SqliteProvenanceImport(SqlProvenanceImport):
    def _insert_ignoring_conflicts(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table).on_conflict_do_nothing()

    async def _stage(self, links: Sequence[RecordLinks]) -> None:
        for table, rows in ((stage_outputs, output_rows(links)), (stage_inputs, input_rows(links))):
            if rows:
                names = [c.name for c in table.columns]
                await self.conn.execute(table.insert(), [dict(zip(names, r, strict=True)) for r in rows])

    async def refresh_statistics(self, part: ImportedPart) -> None:
        for table in PARTS[part]:
            await self.conn.exec_driver_sql(f"ANALYZE {table.name}")
