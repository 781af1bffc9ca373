"""Workers on SQLite: INSERT … ON CONFLICT and the two-argument max()."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from orchestration_service.repositories.workers.sql import SqlWorkers


class SqliteWorkers(SqlWorkers):
    def _insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    def _greatest(self, a: Any, b: Any) -> sa.ColumnElement[Any]:
        # Timestamps are stored as ISO text of one format: text order is time order.
        return sa.func.max(a, b)
