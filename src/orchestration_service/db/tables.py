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
    sa.Column("published_at", UTCDateTime()),
    sa.Index(
        "ix_outbox_unsequenced",
        "id",
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    ),
    sa.Index(
        "ix_outbox_unpublished",
        "seq",
        postgresql_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
        sqlite_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
    ),
    sa.Index("ix_outbox_created", "created_at"),
)

# Idempotency for consumed events (broker and HTTP ingress share it).
processed_events = sa.Table(
    "processed_events",
    metadata,
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
    sa.Index("ix_provenance_records_status", "status"),
    sa.Index("ix_provenance_records_created", "created_at", "id"),
)

# Which record produced which artifact: find a record by any artifact it produced.
provenance_artifacts = sa.Table(
    "provenance_artifacts",
    metadata,
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
    sa.Index("ix_artifact_dependencies_depends_on", "depends_on"),
)
