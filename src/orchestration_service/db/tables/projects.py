"""Projects: their own settings (each unset one falls back to the configuration) and every
version of their constitution."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.types import UTCDateTime, metadata

# A project's settings are columns, not a document: the dispatcher's statements join
# ``max_concurrent`` into their per-project limit.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("description", sa.Text()),
    sa.Column("max_concurrent", sa.Integer()),
    sa.Column("default_priority", sa.String(16)),
    sa.Column("default_qa_profile", sa.String(32)),
    sa.Column("timeout_default_seconds", sa.Integer()),
    sa.Column("max_attempts_default", sa.Integer()),
    sa.Column("constitution_version", sa.Integer()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("archived_at", UTCDateTime()),
)

# Every version of a project's constitution is kept; the project names its current one.
project_constitutions = sa.Table(
    "project_constitutions",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(255)),
)

# One row: a number raised by every change of a project's settings or archive state. Each
# process checks it now and then (``projects.cache_seconds``) and forgets the projects it
# cached when it moved: one read per process, however many projects it caches.
projects_generation = sa.Table(
    "projects_generation",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger(), nullable=False),
)
