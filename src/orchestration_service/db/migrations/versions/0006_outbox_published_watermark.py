"""outbox: one published-through watermark instead of a published_at per row

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

The relay publishes in ``seq`` order, so "published" is a prefix of the log. Marking each
row rewrote it (a non-HOT update: a new row version and an entry in every index) for every
event; one watermark row, updated once per batch, says the same.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_progress",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("published_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_relay_progress"),
    )
    # Everything before the first unpublished numbered row was sent (at worst a few rows
    # are sent again: consumers deduplicate on the event id).
    op.execute(
        """
        INSERT INTO relay_progress (id, published_seq)
        SELECT 1, coalesce(
            (SELECT min(seq) - 1 FROM outbox WHERE published_at IS NULL AND seq IS NOT NULL),
            (SELECT max(seq) FROM outbox),
            0)
        """
    )
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    # Retention deletes from the oldest id: it needs no index of its own.
    op.drop_index("ix_outbox_created", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("published_at")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE outbox SET published_at = created_at"
        " WHERE seq <= (SELECT published_seq FROM relay_progress WHERE id = 1)"
    )
    op.create_index("ix_outbox_created", "outbox", ["created_at"])
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
        sqlite_where=sa.text("published_at IS NULL AND seq IS NOT NULL"),
    )
    op.drop_table("relay_progress")
