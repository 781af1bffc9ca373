"""Tasks, their dependencies and their history."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.types import BigIntPK, UTCDateTime, json_col, metadata

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("priority_rank", sa.SmallInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(32)),
    sa.Column("domain", sa.String(64)),
    sa.Column("tier", sa.String(16)),
    sa.Column("qa_profile", sa.String(32)),
    json_col("options", nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("timeout_seconds", sa.Integer(), nullable=False),
    sa.Column("parent_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE")),
    sa.Column("depth", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("request_hash", sa.String(64)),
    # Routing: null until the routing step has decided; `routing` says who decided and why.
    sa.Column("routed_at", UTCDateTime()),
    # A router is analysing the task until then (a lease: a crashed router's claim expires).
    sa.Column("routing_claimed_until", UTCDateTime()),
    json_col("routing"),
    json_col("context"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("dispatched_at", UTCDateTime()),
    sa.Column("deadline_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("execution_time_ms", sa.BigInteger()),
    json_col("artifacts"),
    json_col("output"),
    json_col("metrics"),
    json_col("feedback"),
    json_col("error"),
    sa.Column("provenance_id", sa.Uuid()),
    # W3C traceparent of the submission: later work for the task joins the same trace.
    sa.Column("traceparent", sa.String(64)),
    # The latest task.progress of the current attempt, and its time (the later report wins).
    json_col("progress"),
    sa.Column("progress_at", UTCDateTime()),
    # A running task without progress or output for this long is timed out (null: never);
    # the due time moves with each report.
    sa.Column("heartbeat_seconds", sa.Integer()),
    sa.Column("heartbeat_due_at", UTCDateTime()),
    sa.UniqueConstraint("project_id", "idempotency_key", name="uq_tasks_project_idempotency"),
    sa.Index("ix_tasks_project_created", "project_id", "created_at"),
    sa.Index("ix_tasks_status_created", "status", "created_at"),
    sa.Index("ix_tasks_created", "created_at"),
    sa.Index("ix_tasks_project_status", "project_id", "status"),
    sa.Index("ix_tasks_parent", "parent_id"),
    # The dispatch queue and the timeout sweep read only these few rows.
    sa.Index(
        "ix_tasks_dispatch_queue",
        "project_id",
        sa.text("priority_rank DESC"),
        "created_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_tasks_unrouted",
        "created_at",
        postgresql_where=sa.text("status = 'pending' AND routed_at IS NULL"),
        sqlite_where=sa.text("status = 'pending' AND routed_at IS NULL"),
    ),
    sa.Index(
        "ix_tasks_deadline",
        "deadline_at",
        postgresql_where=sa.text("status IN ('running', 'validating')"),
        sqlite_where=sa.text("status IN ('running', 'validating')"),
    ),
    sa.Index(
        "ix_tasks_heartbeat_due",
        "heartbeat_due_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
)

task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("depends_on_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_task_dependencies_depends_on", "depends_on_id"),
)

task_history = sa.Table(
    "task_history",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text()),
    # What caused it: "api", "event:<type>:<id>", "router", "sweeper", "dispatcher" …
    sa.Column("cause", sa.String(255)),
    sa.Column("attempt", sa.Integer()),
    json_col("details"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_task_history_task", "task_id", "id"),
)
