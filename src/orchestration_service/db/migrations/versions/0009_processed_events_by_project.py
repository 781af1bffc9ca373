"""processed_events: de-duplicate consumed events per project, keyed by (project_id, event_id)

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-06

Keyed by the CloudEvent id alone, a sender of one project could claim an id that another
project's worker would use later (ids such as ``task-<id>-output-1`` are guessable), and
that worker's real event was then dropped as a duplicate. The same id in two projects is
now two events.

Existing rows get the project of the event they record, where the database still tells it:

* a task event wrote a ``task_history`` row with cause ``event:<type>:<id>`` on its own
  task first (a transition, or a note when it was ignored); later rows with that cause
  (dependents, a parent) came after it in the same transaction, so the row with the
  lowest id names the event's task. Causes are cut at 255 characters: an id too long for
  its cause to fit is not matched, rather than risk matching another event's prefix.
* a rollback that did something claimed a ``taint_cascades`` row with its event id: the
  targeted part's row (``kind = 'taint'``: the named record's project) wins over the
  project part's (``kind = 'rollback'``: the event's ``project_id``), as at run time.

The rest stay under the project '' (no project can be named so). Those are events whose
task is gone, whose cause was cut, or rollbacks that changed nothing because their cascade
or rollback id had already been applied. Such a row no longer stops a redelivery, so an old
event redelivered after this migration is processed once more, and at most once more (its
new claim is under its real project). For these that changes nothing: a task that no longer
exists is refused as unknown, and a rollback repeating an applied cascade or rollback id is
again "already applied". Redeliveries come within minutes to hours of the first delivery
(an unacknowledged broker message, a client's retry), so in practice only events in flight
around the upgrade are concerned.

Downgrade: the old key cannot hold the same id twice; of such rows the oldest is kept (the
old behaviour: the later one's redelivery would then be a "duplicate").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The cause a task event wrote: ``f"event:{name}:{id}"[:255]`` (events.handlers).
_CAUSE = "'event:' || processed_events.event_type || ':' || processed_events.event_id"

BACKFILL_TASK_EVENTS = f"""
UPDATE processed_events SET project_id = x.project_id
FROM (
    SELECT h.cause AS cause, t.project_id AS project_id
    FROM task_history h JOIN tasks t ON t.id = h.task_id
    WHERE h.id IN (SELECT min(id) FROM task_history WHERE cause LIKE 'event:%' GROUP BY cause)
) AS x
WHERE processed_events.event_type <> 'rollback.requested'
  AND length({_CAUSE}) <= 255
  AND x.cause = {_CAUSE}
"""

BACKFILL_ROLLBACKS = """
UPDATE processed_events SET project_id = c.project_id
FROM taint_cascades c
WHERE processed_events.event_type = 'rollback.requested'
  AND c.event_id = processed_events.event_id
  AND c.kind = :kind
  AND c.project_id IS NOT NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("project_id", sa.String(255), nullable=False, server_default=""))
    op.execute(BACKFILL_TASK_EVENTS)
    # The project part first, then the targeted part over it: the targeted part's project wins.
    for kind in ("rollback", "taint"):
        op.execute(sa.text(BACKFILL_ROLLBACKS).bindparams(kind=kind))
    with op.batch_alter_table("processed_events") as batch:
        batch.alter_column("project_id", server_default=None, existing_type=sa.String(255))
        batch.drop_constraint("pk_processed_events", type_="primary")
        batch.create_primary_key("pk_processed_events", ["project_id", "event_id"])


def downgrade() -> None:
    # Keep the oldest claim of each id (ties: the lowest project), as the old key allowed one.
    op.execute(
        """
        DELETE FROM processed_events
        WHERE EXISTS (
            SELECT 1 FROM processed_events o
            WHERE o.event_id = processed_events.event_id
              AND (o.processed_at < processed_events.processed_at
                   OR (o.processed_at = processed_events.processed_at
                       AND o.project_id < processed_events.project_id))
        )
        """
    )
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_constraint("pk_processed_events", type_="primary")
        batch.create_primary_key("pk_processed_events", ["event_id"])
        batch.drop_column("project_id")
