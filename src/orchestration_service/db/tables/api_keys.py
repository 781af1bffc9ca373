"""API keys."""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.types import UTCDateTime, json_col, metadata

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
