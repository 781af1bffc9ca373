"""provenance graph: taint events, checkpoints, applied cascades, and the query indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# JSONB on PostgreSQL; JSON (text) on SQLite.
JSON = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    # New indexes only: no table rewrite on either database.
    op.create_index(
        "ix_provenance_records_tainted",
        "provenance_records",
        ["project_id", "created_at", "id"],
        postgresql_where=sa.text("is_tainted"),
        sqlite_where=sa.text("is_tainted = 1"),
    )
    op.create_index(
        "ix_provenance_records_suspect",
        "provenance_records",
        ["project_id", "created_at", "id"],
        postgresql_where=sa.text("is_suspect"),
        sqlite_where=sa.text("is_suspect = 1"),
    )
    op.create_index(
        "ix_provenance_records_verification",
        "provenance_records",
        ["verification_status", "created_at", "id"],
    )
    op.create_index("ix_provenance_records_model", "provenance_records", ["model_used", "created_at", "id"])
    op.create_index("ix_provenance_records_worker", "provenance_records", ["worker_id", "created_at", "id"])
    op.create_index("ix_provenance_records_tier", "provenance_records", ["tier", "created_at", "id"])
    op.create_index("ix_provenance_records_domain", "provenance_records", ["domain", "created_at", "id"])
    # Walking down the graph reads (depends_on -> artifact_id) from the index alone.
    op.create_index(
        "ix_artifact_dependencies_dependents", "artifact_dependencies", ["depends_on", "artifact_id"]
    )
    op.drop_index("ix_artifact_dependencies_depends_on", table_name="artifact_dependencies")

    op.create_table(
        "provenance_unresolved_inputs",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.String(length=255), nullable=False),
        sa.Column("relationship", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["provenance_records.id"],
            name=op.f("fk_provenance_unresolved_inputs_record_id_provenance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", "artifact_id", name=op.f("pk_provenance_unresolved_inputs")),
    )
    op.create_index(
        "ix_provenance_unresolved_inputs_artifact", "provenance_unresolved_inputs", ["artifact_id"]
    )

    op.create_table(
        "taint_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("artifact_id", sa.String(length=255), nullable=False),
        sa.Column("provenance_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source_artifact_id", sa.String(length=255), nullable=True),
        sa.Column("source_provenance_id", sa.Uuid(), nullable=True),
        sa.Column("cascade_depth", sa.Integer(), nullable=False),
        sa.Column("cascade_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taint_events")),
    )
    op.create_index("ix_taint_events_cascade", "taint_events", ["cascade_id"])
    op.create_index("ix_taint_events_project_time", "taint_events", ["project_id", "timestamp", "id"])
    op.create_index("ix_taint_events_time", "taint_events", ["timestamp", "id"])
    op.create_index("ix_taint_events_record", "taint_events", ["provenance_id"])

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("git_ref", sa.Text(), nullable=False),
        sa.Column("provenance_count", sa.BigInteger(), nullable=False),
        sa.Column("artifact_count", sa.BigInteger(), nullable=False),
        sa.Column("last_provenance_id", sa.String(length=255), nullable=False),
        sa.Column("last_task_id", sa.String(length=255), nullable=False),
        sa.Column("rag_state_ref", sa.Text(), nullable=False),
        sa.Column("work_product_ref", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("is_valid", sa.Boolean(), nullable=False),
        sa.Column("invalidated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invalidated_by", sa.String(length=255), nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index("ix_checkpoints_project_created", "checkpoints", ["project_id", "created_at"])

    op.create_table(
        "taint_cascades",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rollback_id", sa.String(length=255), nullable=True),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("provenance_id", sa.Uuid(), nullable=True),
        sa.Column("checkpoint_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taint_cascades")),
        sa.UniqueConstraint("rollback_id", name=op.f("uq_taint_cascades_rollback_id")),
    )


def downgrade() -> None:
    op.drop_table("taint_cascades")
    op.drop_index("ix_provenance_unresolved_inputs_artifact", table_name="provenance_unresolved_inputs")
    op.drop_table("provenance_unresolved_inputs")
    op.drop_index("ix_checkpoints_project_created", table_name="checkpoints")
    op.drop_table("checkpoints")
    for name in (
        "ix_taint_events_record",
        "ix_taint_events_time",
        "ix_taint_events_project_time",
        "ix_taint_events_cascade",
    ):
        op.drop_index(name, table_name="taint_events")
    op.drop_table("taint_events")
    op.create_index("ix_artifact_dependencies_depends_on", "artifact_dependencies", ["depends_on"])
    op.drop_index("ix_artifact_dependencies_dependents", table_name="artifact_dependencies")
    for name in (
        "ix_provenance_records_domain",
        "ix_provenance_records_tier",
        "ix_provenance_records_worker",
        "ix_provenance_records_model",
        "ix_provenance_records_verification",
        "ix_provenance_records_suspect",
        "ix_provenance_records_tainted",
    ):
        op.drop_index(name, table_name="provenance_records")
