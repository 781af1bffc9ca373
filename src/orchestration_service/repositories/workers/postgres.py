"""Workers on PostgreSQL: INSERT … ON CONFLICT and GREATEST."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from orchestration_service.repositories.workers.sql import SqlWorkers


class PostgresWorkers(SqlWorkers):
    def _insert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    def _greatest(self, a: Any, b: Any) -> sa.ColumnElement[Any]:
        return sa.func.greatest(a, b)
