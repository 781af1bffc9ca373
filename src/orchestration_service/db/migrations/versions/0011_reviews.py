"""reviews: human review of a task's output (issue 18)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

A new table only; tasks gain the status ``awaiting_review`` (the column is free text, 15
characters fit its 16). Downgrade drops the table; a task still awaiting review then has a
status the older code does not know, so downgrade only after deciding or cancelling them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "task_id",
            sa.Uuid(),
            sa.ForeignKey("tasks.id", ondelete="CASCADE", name="fk_reviews_task_id_tasks"),
            nullable=False,
        ),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("qa_review_id", sa.String(255)),
        sa.Column("qa_result_id", sa.String(255)),
        sa.Column("reason", sa.Text()),
        sa.Column("request", JSON, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(32)),
        sa.Column("reviewer", sa.String(255)),
        sa.Column("decision_text", sa.Text()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_via", sa.String(255)),
        sa.Column("closed_reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_status_requested", "reviews", ["status", "requested_at", "id"])
    op.create_index(
        "ix_reviews_project_status_requested", "reviews", ["project_id", "status", "requested_at", "id"]
    )
    op.create_index("ix_reviews_task", "reviews", ["task_id"])
    op.create_index(
        "uq_reviews_open_task",
        "reviews",
        ["task_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        sqlite_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_table("reviews")
