"""The outbox (also the ordered event log), the relay's progress and the consumed events
already processed.
"""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.types import BigIntPK, UTCDateTime, json_col, metadata

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
