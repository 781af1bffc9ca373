"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# JSONB on PostgreSQL; JSON (text) on SQLite.
JSON = sa.JSON().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# BIGINT identity on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite.
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("exchange", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("envelope", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        sa.UniqueConstraint("seq", name=op.f("uq_outbox_seq")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_outbox_unpublished",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
            sqlite_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_outbox_unsequenced",
            ["id"],
            unique=False,
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        )

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index("ix_processed_events_processed_at", ["processed_at"], unique=False)

    op.create_table(
        "provenance_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("model_used", sa.String(length=100), nullable=True),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        sa.Column("tier", sa.String(length=20), nullable=True),
        sa.Column("domain", sa.String(length=50), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tokens_input", sa.Integer(), nullable=True),
        sa.Column("tokens_output", sa.Integer(), nullable=True),
        sa.Column("execution_time_ms", sa.BigInteger(), nullable=True),
        sa.Column("confidence", sa.Numeric(precision=3, scale=2), nullable=True),
        sa.Column("verification_status", sa.String(length=32), server_default="pending", nullable=False),
        sa.Column("is_tainted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("tainted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tainted_reason", sa.Text(), nullable=True),
        sa.Column("tainted_by", sa.String(length=255), nullable=True),
        sa.Column("is_suspect", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("suspect_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suspect_source", sa.String(length=255), nullable=True),
        sa.Column("outputs", JSON, nullable=True),
        sa.Column("inputs", JSON, nullable=True),
        sa.Column("inputs_consumed", JSON, nullable=True),
        sa.Column("execution", JSON, nullable=True),
        sa.Column("verification", JSON, nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provenance_records")),
    )
    with op.batch_alter_table("provenance_records", schema=None) as batch_op:
        batch_op.create_index("ix_provenance_records_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_provenance_records_project_created", ["project_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_provenance_records_status", ["status"], unique=False)
        batch_op.create_index("ix_provenance_records_task_id", ["task_id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("priority_rank", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("domain", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("qa_profile", sa.String(length=32), nullable=True),
        sa.Column("options", JSON, nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("depth", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("routing", JSON, nullable=True),
        sa.Column("context", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("execution_time_ms", sa.BigInteger(), nullable=True),
        sa.Column("artifacts", JSON, nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("feedback", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("provenance_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["tasks.id"], name=op.f("fk_tasks_parent_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("project_id", "idempotency_key", name="uq_tasks_project_idempotency"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_tasks_deadline",
            ["deadline_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('running', 'validating')"),
            sqlite_where=sa.text("status IN ('running', 'validating')"),
        )
        batch_op.create_index("ix_tasks_parent", ["parent_id"], unique=False)
        batch_op.create_index("ix_tasks_project_created", ["project_id", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_project_status", ["project_id", "status"], unique=False)
        batch_op.create_index("ix_tasks_status_created", ["status", "created_at"], unique=False)
    # The dispatch queue: pending tasks of a project, highest priority then oldest first.
    op.create_index(
        "ix_tasks_dispatch_queue",
        "tasks",
        ["project_id", sa.text("priority_rank DESC"), "created_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    # Tasks the routing step has not decided yet.
    op.create_index(
        "ix_tasks_unrouted",
        "tasks",
        ["created_at"],
        postgresql_where=sa.text("status = 'pending' AND routed_at IS NULL"),
        sqlite_where=sa.text("status = 'pending' AND routed_at IS NULL"),
    )

    op.create_table(
        "artifact_dependencies",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("depends_on", sa.Uuid(), nullable=False),
        sa.Column("dependency_type", sa.String(length=50), nullable=True),
        sa.Column("via_artifact_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["provenance_records.id"],
            name=op.f("fk_artifact_dependencies_artifact_id_provenance_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["depends_on"],
            ["provenance_records.id"],
            name=op.f("fk_artifact_dependencies_depends_on_provenance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_dependencies")),
        sa.UniqueConstraint(
            "artifact_id", "depends_on", "via_artifact_id", name="uq_artifact_dependencies_edge"
        ),
    )
    with op.batch_alter_table("artifact_dependencies", schema=None) as batch_op:
        batch_op.create_index("ix_artifact_dependencies_depends_on", ["depends_on"], unique=False)

    op.create_table(
        "provenance_artifacts",
        sa.Column("artifact_id", sa.String(length=255), nullable=False),
        sa.Column("provenance_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provenance_id"],
            ["provenance_records.id"],
            name=op.f("fk_provenance_artifacts_provenance_id_provenance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("artifact_id", name=op.f("pk_provenance_artifacts")),
    )
    with op.batch_alter_table("provenance_artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_provenance_artifacts_record", ["provenance_id"], unique=False)

    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("depends_on_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["depends_on_id"],
            ["tasks.id"],
            name=op.f("fk_task_dependencies_depends_on_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_dependencies_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "depends_on_id", name=op.f("pk_task_dependencies")),
    )
    with op.batch_alter_table("task_dependencies", schema=None) as batch_op:
        batch_op.create_index("ix_task_dependencies_depends_on", ["depends_on_id"], unique=False)

    op.create_table(
        "task_history",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cause", sa.String(length=255), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_history_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_history")),
    )
    with op.batch_alter_table("task_history", schema=None) as batch_op:
        batch_op.create_index("ix_task_history_task", ["task_id", "id"], unique=False)


def downgrade() -> None:
    for table in (
        "task_history",
        "task_dependencies",
        "provenance_artifacts",
        "artifact_dependencies",
        "tasks",
        "provenance_records",
        "processed_events",
        "outbox",
    ):
        op.drop_table(table)
