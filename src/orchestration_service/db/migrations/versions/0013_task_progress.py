"""tasks: a task's latest progress and its heartbeat deadline

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

Workers may report ``task.progress``; the task keeps only the latest report (``progress``,
and ``progress_at``, its time, which decides which of two reports is the later one). A
running task with a heartbeat timeout (``heartbeat_seconds``, set when its attempt starts)
is timed out at ``heartbeat_due_at`` unless progress or output comes first; the sweep finds
those through a partial index over running tasks only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("progress", JSON, nullable=True))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("heartbeat_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("heartbeat_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_tasks_heartbeat_due",
        "tasks",
        ["heartbeat_due_at"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_heartbeat_due", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("heartbeat_due_at")
        batch.drop_column("heartbeat_seconds")
        batch.drop_column("progress_at")
        batch.drop_column("progress")
