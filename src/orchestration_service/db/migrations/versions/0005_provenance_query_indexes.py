"""provenance query indexes: tainted records by id, tasks by provenance record

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New partial indexes only (few rows each): no table rewrite on either database.
    # Root cause: which records of an upstream walk are tainted, without reading the others.
    op.create_index(
        "ix_provenance_records_tainted_id",
        "provenance_records",
        ["id"],
        postgresql_where=sa.text("is_tainted"),
        sqlite_where=sa.text("is_tainted = 1"),
    )
    # Impact: the tasks that produced the affected records (then those waiting on them).
    op.create_index(
        "ix_tasks_provenance",
        "tasks",
        ["provenance_id"],
        postgresql_where=sa.text("provenance_id IS NOT NULL"),
        sqlite_where=sa.text("provenance_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_provenance", table_name="tasks")
    op.drop_index("ix_provenance_records_tainted_id", table_name="provenance_records")
