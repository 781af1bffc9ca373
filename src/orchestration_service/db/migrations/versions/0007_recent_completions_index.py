"""tasks: an index of recent completions, for the completion estimate

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

``estimated_completion`` is the median time of the latest 100 completed tasks of a kind
(``TaskRepository.recent_durations``). Without an index on ``completed_at`` each refresh
read and sorted every completed task; this partial index is walked from its newest end.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_recent_completed",
        "tasks",
        ["completed_at"],
        postgresql_where=sa.text("status = 'completed' AND started_at IS NOT NULL"),
        sqlite_where=sa.text("status = 'completed' AND started_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_recent_completed", table_name="tasks")
