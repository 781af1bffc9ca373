"""Tables of the fleet view (workers, their task attempts) and of stored dead letters.

Migration 0012 owns the schema; these mirror it.
"""

from __future__ import annotations

import sqlalchemy as sa

from orchestration_service.db.tables.tasks import tasks
from orchestration_service.db.tables.types import UTCDateTime, metadata

# One row per worker ever seen: written at most once a second per worker and process (the
# fleet use case debounces), so a chatty worker does not queue its events on this row's lock.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(255), primary_key=True),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Index("ix_workers_last_seen", "last_seen"),
)

# One row per task attempt a worker reported on: written in the event's own transaction,
# where the task's row is already locked, so it adds no lock of its own. The counts of
# GET /workers (in flight, completed, failed, rejected) are read from here.
worker_tasks = sa.Table(
    "worker_tasks",
    metadata,
    sa.Column("task_id", sa.Uuid(), primary_key=True),
    sa.Column("attempt", sa.Integer(), primary_key=True),
    sa.Column("worker_id", sa.String(255), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("tier", sa.String(16)),
    sa.Column("model", sa.String(255)),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    # null while the attempt is the worker's; completed | failed | rejected afterwards
    sa.Column("outcome", sa.String(16)),
    # GET /workers reads a page's counts, tiers and models from this index alone.
    sa.Index("ix_worker_tasks_worker_outcome", "worker_id", "outcome", "tier", "model"),
    # … and its open attempts (joined with the tasks in flight) from this one.
    sa.Index(
        "ix_worker_tasks_open",
        "worker_id",
        "task_id",
        "attempt",
        postgresql_where=sa.text("outcome IS NULL"),
        sqlite_where=sa.text("outcome IS NULL"),
    ),
    sa.Index("ix_worker_tasks_project_worker", "project_id", "worker_id"),
)

# Events this service dead-lettered (broker deliveries and ingress requests), kept to be
# looked at, replayed once their cause is fixed, or discarded. ``payload`` is the event as
# received, cut at the configured size (``payload_truncated``: then it cannot be replayed).
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("event_id", sa.String(255)),
    sa.Column("event_type", sa.String(255)),
    sa.Column("source", sa.String(16), nullable=False),  # broker | ingress
    sa.Column("kind", sa.String(32), nullable=False),  # EventRejected.kind, or "crash"
    sa.Column("reason", sa.Text(), nullable=False),
    # The task's project when the event names a known one; null: only an all-projects key sees it.
    sa.Column("project_id", sa.String(255)),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("payload_truncated", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("replays", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_replayed_at", UTCDateTime()),
    sa.Index("ix_dead_letters_created", "created_at", "id"),
    sa.Index("ix_dead_letters_project_created", "project_id", "created_at", "id"),
)

# GET /failures: the newest failed tasks without sorting every failure.
sa.Index(
    "ix_tasks_failed_completed",
    tasks.c.completed_at,
    tasks.c.id,
    postgresql_where=sa.text("status = 'failed'"),
    sqlite_where=sa.text("status = 'failed'"),
)
