"""Human reviews."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.types import UTCDateTime, json_col, metadata

# Human reviews (issue 18): QA's review.requested opens one; a decision (HTTP, or another
# team's review.completed) closes it. ``status``: open | decided | closed (the task left
# review without a decision: cancelled, failed). At most one open review per task.
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("task_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    # QA's own ids, when it sent them: a review.completed may name the review by QA's id.
    sa.Column("qa_review_id", sa.String(255)),
    sa.Column("qa_result_id", sa.String(255)),
    sa.Column("reason", sa.Text()),
    json_col("request", nullable=False),  # artifacts, checklist, details as QA sent them
    sa.Column("requested_at", UTCDateTime(), nullable=False),
    sa.Column("decision", sa.String(32)),
    sa.Column("reviewer", sa.String(255)),
    sa.Column("decision_text", sa.Text()),  # the comment, reason or feedback
    sa.Column("decided_at", UTCDateTime()),
    sa.Column("decided_via", sa.String(255)),  # "api", or the event that decided it
    sa.Column("closed_reason", sa.Text()),
    sa.Index("ix_reviews_status_requested", "status", "requested_at", "id"),
    sa.Index("ix_reviews_project_status_requested", "project_id", "status", "requested_at", "id"),
    sa.Index("ix_reviews_task", "task_id"),
    sa.Index(
        "uq_reviews_open_task",
        "task_id",
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        sqlite_where=sa.text("status = 'open'"),
    ),
)
