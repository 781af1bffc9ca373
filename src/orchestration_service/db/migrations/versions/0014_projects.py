"""projects: a project's own settings and its versioned constitution

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

A project was only a string on its tasks. ``projects`` holds its name, its settings (each
unset one falls back to the configuration) and whether it is archived;
``project_constitutions`` every version of its constitution; ``projects_generation`` one
number raised by every change of settings, which each process's cache of them checks.
Every project that has tasks gets its row, so a project exists exactly when it has a row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("description", sa.Text()),
        sa.Column("max_concurrent", sa.Integer()),
        sa.Column("default_priority", sa.String(16)),
        sa.Column("default_qa_profile", sa.String(32)),
        sa.Column("timeout_default_seconds", sa.Integer()),
        sa.Column("max_attempts_default", sa.Integer()),
        sa.Column("constitution_version", sa.Integer()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "project_constitutions",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_table(
        "projects_generation",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO projects (project_id, created_at, updated_at) "
        "SELECT project_id, min(created_at), max(updated_at) FROM tasks GROUP BY project_id"
    )


def downgrade() -> None:
    op.drop_table("projects_generation")
    op.drop_table("project_constitutions")
    op.drop_table("projects")
