"""Table definitions (SQLAlchemy Core). Migrations own the real schema; these mirror it.

The same definitions serve PostgreSQL (JSONB, native UUID, timestamptz) and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite, naive UTC stored and tz-aware UTC returned."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid alias


def json_col(name: str, nullable: bool = True, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, JSONType, nullable=nullable, **kw)


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

# The transactional outbox, which is also the ordered event log behind the SSE feed.
# `id` orders inserts; `seq` is given after commit by the single relay leader, so readers
# paging by `seq` never step past a transaction that has not committed yet.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("exchange", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(255)),
    sa.Column("project_id", sa.String(255)),
    json_col("envelope", nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("seq", sa.BigInteger(), unique=True),
    sa.Index(
        "ix_outbox_unsequenced",
        "id",
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    ),
)

# How far the relay has published the log: every row with ``seq <= published_seq`` was sent
# (one row, id 1). Publishing goes in ``seq`` order, so this one number replaces a mark per
# event.
relay_progress = sa.Table(
    "relay_progress",
    metadata,
    sa.Column("id", sa.SmallInteger(), primary_key=True),
    sa.Column("published_seq", sa.BigInteger(), nullable=False),
)

# Idempotency for consumed events (broker and HTTP ingress share it), per project: the same
# CloudEvent id in two projects is two events, so one project's sender cannot use up an id
# that another project's worker will send. ``project_id``: the task's project for a task
# event, the named record's (or else the event's) for a rollback; '' for rows older than
# the column that could not be attributed (migration 0009; no project is named '').
processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("source", sa.String(255)),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("processed_at", UTCDateTime(), nullable=False),
    sa.Index("ix_processed_events_processed_at", "processed_at"),
)

provenance_records = sa.Table(
    "provenance_records",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("task_id", sa.String(255), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(50), nullable=False),
    sa.Column("model_used", sa.String(100)),
    sa.Column("worker_id", sa.String(100)),
    sa.Column("tier", sa.String(20)),
    sa.Column("domain", sa.String(50)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("tokens_input", sa.Integer()),
    sa.Column("tokens_output", sa.Integer()),
    sa.Column("execution_time_ms", sa.BigInteger()),
    sa.Column("confidence", sa.Numeric(3, 2)),
    sa.Column("verification_status", sa.String(32), nullable=False, server_default="pending"),
    sa.Column("is_tainted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("tainted_at", UTCDateTime()),
    sa.Column("tainted_reason", sa.Text()),
    sa.Column("tainted_by", sa.String(255)),
    sa.Column("is_suspect", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("suspect_since", UTCDateTime()),
    sa.Column("suspect_source", sa.String(255)),
    json_col("outputs"),
    json_col("inputs"),
    json_col("inputs_consumed"),
    json_col("execution"),
    json_col("verification"),
    json_col("metrics"),
    # Fields of a legacy file this schema has no column for, kept for a lossless export.
    json_col("extra"),
    sa.Index("ix_provenance_records_task_id", "task_id"),
    sa.Index("ix_provenance_records_project_created", "project_id", "created_at", "id"),
    sa.Index("ix_provenance_records_created", "created_at", "id"),
)

# Which record produced which artifact: find a record by any artifact it produced. An artifact
# id is its project's (migration 0008): the same id in two projects names two artifacts.
provenance_artifacts = sa.Table(
    "provenance_artifacts",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("artifact_id", sa.String(255), primary_key=True),
    sa.Column(
        "provenance_id",
        sa.Uuid(),
        sa.ForeignKey("provenance_records.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Index("ix_provenance_artifacts_record", "provenance_id"),
)

# The seed's dependency graph between records: `artifact_id` (the dependent record)
# depends on `depends_on` (the record that produced an input it consumed or referenced).
artifact_dependencies = sa.Table(
    "artifact_dependencies",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column(
        "artifact_id",
        sa.Uuid(),
        sa.ForeignKey("provenance_records.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "depends_on",
        sa.Uuid(),
        sa.ForeignKey("provenance_records.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("dependency_type", sa.String(50)),
    sa.Column("via_artifact_id", sa.String(255)),
    sa.UniqueConstraint("artifact_id", "depends_on", "via_artifact_id", name="uq_artifact_dependencies_edge"),
    # Walking down the graph reads (depends_on -> artifact_id) from the index alone.
    sa.Index("ix_artifact_dependencies_dependents", "depends_on", "artifact_id"),
)

# -- provenance graph (migration 0003) ----------------------------------------------------
# Listing filters, newest first; the tainted/suspect ones are partial (few rows).
sa.Index(
    "ix_provenance_records_tainted",
    provenance_records.c.project_id,
    provenance_records.c.created_at,
    provenance_records.c.id,
    postgresql_where=sa.text("is_tainted"),
    sqlite_where=sa.text("is_tainted = 1"),
)
sa.Index(
    "ix_provenance_records_suspect",
    provenance_records.c.project_id,
    provenance_records.c.created_at,
    provenance_records.c.id,
    postgresql_where=sa.text("is_suspect"),
    sqlite_where=sa.text("is_suspect = 1"),
)
sa.Index(
    "ix_provenance_records_verification",
    provenance_records.c.verification_status,
    provenance_records.c.created_at,
    provenance_records.c.id,
)
sa.Index(
    "ix_provenance_records_model",
    provenance_records.c.model_used,
    provenance_records.c.created_at,
    provenance_records.c.id,
)
sa.Index(
    "ix_provenance_records_worker",
    provenance_records.c.worker_id,
    provenance_records.c.created_at,
    provenance_records.c.id,
)
sa.Index(
    "ix_provenance_records_tier",
    provenance_records.c.tier,
    provenance_records.c.created_at,
    provenance_records.c.id,
)
sa.Index(
    "ix_provenance_records_domain",
    provenance_records.c.domain,
    provenance_records.c.created_at,
    provenance_records.c.id,
)

# -- provenance query indexes (migration 0005) --------------------------------------------
# Root cause: the tainted records among those an upstream walk reached, by id.
sa.Index(
    "ix_provenance_records_tainted_id",
    provenance_records.c.id,
    postgresql_where=sa.text("is_tainted"),
    sqlite_where=sa.text("is_tainted = 1"),
)
# Impact: the tasks whose provenance record is one of the affected ones.
sa.Index(
    "ix_tasks_provenance",
    tasks.c.provenance_id,
    postgresql_where=sa.text("provenance_id IS NOT NULL"),
    sqlite_where=sa.text("provenance_id IS NOT NULL"),
)
# Completion estimates (migration 0007): the newest completed tasks that ran, without
# reading every completed task of the table to sort them.
sa.Index(
    "ix_tasks_recent_completed",
    tasks.c.completed_at,
    postgresql_where=sa.text("status = 'completed' AND started_at IS NOT NULL"),
    sqlite_where=sa.text("status = 'completed' AND started_at IS NOT NULL"),
)

# Inputs whose artifact no record (yet) produced: the project's orphaned artifacts, and the
# edges to add when a later record (or import) produces them.
provenance_unresolved_inputs = sa.Table(
    "provenance_unresolved_inputs",
    metadata,
    sa.Column(
        "record_id",
        sa.Uuid(),
        sa.ForeignKey("provenance_records.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("artifact_id", sa.String(255), primary_key=True),
    sa.Column("relationship", sa.String(16), nullable=False),
    # The record's project: an input resolves only to a producer of the same project.
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Index("ix_provenance_unresolved_inputs_project_artifact", "project_id", "artifact_id"),
)

# The audit trail of taint changes (legacy `taint_events.json`). `extra` keeps unknown fields
# and what a lossless export needs (see domain/provenance.py).
taint_events = sa.Table(
    "taint_events",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("provenance_id", sa.Uuid()),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("source_artifact_id", sa.String(255)),
    sa.Column("source_provenance_id", sa.Uuid()),
    sa.Column("cascade_depth", sa.Integer(), nullable=False),
    sa.Column("cascade_id", sa.String(255), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("project_id", sa.String(255)),
    # Position in the imported taint_events.json: an export keeps the file's order.
    sa.Column("seq", sa.Integer()),
    json_col("extra"),
    sa.Index("ix_taint_events_cascade", "cascade_id"),
    sa.Index("ix_taint_events_project_time", "project_id", "timestamp", "id"),
    sa.Index("ix_taint_events_time", "timestamp", "id"),
    sa.Index("ix_taint_events_record", "provenance_id"),
)

# Project checkpoints (legacy `checkpoints.json`); a rollback invalidates the later ones.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("git_ref", sa.Text(), nullable=False),
    sa.Column("provenance_count", sa.BigInteger(), nullable=False),
    sa.Column("artifact_count", sa.BigInteger(), nullable=False),
    sa.Column("last_provenance_id", sa.String(255), nullable=False),
    sa.Column("last_task_id", sa.String(255), nullable=False),
    sa.Column("rag_state_ref", sa.Text(), nullable=False),
    sa.Column("work_product_ref", sa.Text(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("is_valid", sa.Boolean(), nullable=False),
    sa.Column("invalidated_at", UTCDateTime()),
    sa.Column("invalidated_by", sa.String(255)),
    json_col("extra"),
    sa.Index("ix_checkpoints_project_created", "project_id", "created_at"),
)

# One row per applied taint cascade or rollback: claimed first, so re-applying the same
# cascade_id / rollback_id (another event id, a retried request) changes nothing. Both ids
# are the project's (migration 0008): the same id in two projects names two cascades.
taint_cascades = sa.Table(
    "taint_cascades",
    metadata,
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # taint | rollback
    sa.Column("rollback_id", sa.String(255)),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("provenance_id", sa.Uuid()),
    sa.Column("checkpoint_id", sa.String(255)),
    sa.Column("reason", sa.Text()),
    sa.Column("requested_by", sa.String(255)),
    sa.Column("event_id", sa.String(255)),
    json_col("result"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("project_id", "id", name="pk_taint_cascades"),
    sa.UniqueConstraint("project_id", "rollback_id", name="uq_taint_cascades_project_rollback"),
)

# API keys: only the SHA-256 of a key is stored; `key_hint` is its first characters, to tell
# keys apart in listings.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("all_projects", sa.Boolean(), nullable=False),
    json_col("projects", nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
)

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
