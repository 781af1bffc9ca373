"""The fleet: workers seen, their task attempts, stored dead letters; an index of failures

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])
    op.create_table(
        "worker_tasks",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "attempt", name=op.f("pk_worker_tasks")),
    )
    op.create_index(
        "ix_worker_tasks_worker_outcome", "worker_tasks", ["worker_id", "outcome", "tier", "model"]
    )
    op.create_index(
        "ix_worker_tasks_open",
        "worker_tasks",
        ["worker_id", "task_id", "attempt"],
        postgresql_where=sa.text("outcome IS NULL"),
        sqlite_where=sa.text("outcome IS NULL"),
    )
    op.create_index("ix_worker_tasks_project_worker", "worker_tasks", ["project_id", "worker_id"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("replays", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_replayed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at", "id"])
    op.create_index("ix_dead_letters_project_created", "dead_letters", ["project_id", "created_at", "id"])
    op.create_index(
        "ix_tasks_failed_completed",
        "tasks",
        ["completed_at", "id"],
        postgresql_where=sa.text("status = 'failed'"),
        sqlite_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_failed_completed", table_name="tasks")
    op.drop_table("dead_letters")
    op.drop_table("worker_tasks")
    op.drop_table("workers")
