"""Provenance records, their artifacts and graph, taint events, checkpoints and cascades."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.tasks import tasks
from orchestration_service.db.tables.types import BigIntPK, UTCDateTime, json_col, metadata

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
