"""provenance_records: drop the index on ``status``, which no query reads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

No query filters or orders provenance records by ``status`` (the listings filter on
``verification_status``, which has its own index); every record added or imported still paid
for the index. The one statement that used it, a count of all records (the export's), took it
as the smallest index to scan and now counts on the primary key (index-only in both).
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_provenance_records_status", table_name="provenance_records")


def downgrade() -> None:
    op.create_index("ix_provenance_records_status", "provenance_records", ["status"], unique=False)
