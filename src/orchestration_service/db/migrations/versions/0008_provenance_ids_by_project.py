"""provenance: artifact, cascade and rollback ids scoped by project

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

An artifact id named one producer in the whole store, so another project's consumers of the
same id were linked to it (and its taint reached them); a cascade or rollback id claimed by
one project turned the same id of another project into a no-op. Now each is keyed by
(project_id, id).

Existing rows keep their data: ``project_id`` is filled from the producing record (artifacts,
unresolved inputs) or the cascade's record. The derived graph is then repaired: an edge
between records of two projects becomes an unresolved input again, every record that
produced an id its project had no producer for yet becomes that producer (the earliest per
project, as an import does), and inputs now resolvable within their project get their edge.

Downgrade keeps, per id, the earliest producer (artifacts) or the first project (cascades).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 2000

# Lightweight table handles for the data steps (the schema as it is between the steps). Ids
# are copied as stored (SQLite: as text, whatever its form), never re-encoded.
ID = sa.Uuid().with_variant(sa.String(), "sqlite")
_m = sa.MetaData()
records = sa.Table(
    "provenance_records",
    _m,
    sa.Column("id", ID),
    sa.Column("project_id", sa.String(255)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("outputs", sa.JSON()),
)
artifacts = sa.Table(
    "provenance_artifacts",
    _m,
    sa.Column("project_id", sa.String(255)),
    sa.Column("artifact_id", sa.String(255)),
    sa.Column("provenance_id", ID),
)
edges = sa.Table(
    "artifact_dependencies",
    _m,
    sa.Column("artifact_id", ID),
    sa.Column("depends_on", ID),
    sa.Column("dependency_type", sa.String(50)),
    sa.Column("via_artifact_id", sa.String(255)),
)
unresolved = sa.Table(
    "provenance_unresolved_inputs",
    _m,
    sa.Column("record_id", ID),
    sa.Column("project_id", sa.String(255)),
    sa.Column("artifact_id", sa.String(255)),
    sa.Column("relationship", sa.String(16)),
)


def _project_of(column: str) -> str:
    return f"(SELECT r.project_id FROM provenance_records r WHERE r.id = {column})"


# An edge between two projects' records (the dependent's project differs from its dependency's).
_CROSS = (
    f"{_project_of('artifact_dependencies.artifact_id')} <> {_project_of('artifact_dependencies.depends_on')}"
)


def upgrade() -> None:
    # -- the columns, filled ---------------------------------------------------------------
    with op.batch_alter_table("provenance_artifacts") as batch:
        batch.add_column(sa.Column("project_id", sa.String(length=255), nullable=True))
    op.execute(
        f"UPDATE provenance_artifacts SET project_id = {_project_of('provenance_artifacts.provenance_id')}"
    )
    with op.batch_alter_table("provenance_unresolved_inputs") as batch:
        batch.add_column(sa.Column("project_id", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE provenance_unresolved_inputs"
        f" SET project_id = {_project_of('provenance_unresolved_inputs.record_id')}"
    )
    op.execute(
        f"UPDATE taint_cascades SET project_id = {_project_of('taint_cascades.provenance_id')}"
        " WHERE project_id IS NULL"
    )
    op.execute("UPDATE taint_cascades SET project_id = '' WHERE project_id IS NULL")

    # -- the keys ------------------------------------------------------------------------------
    with op.batch_alter_table("provenance_artifacts", recreate="always") as batch:
        batch.alter_column("project_id", existing_type=sa.String(length=255), nullable=False)
        batch.drop_constraint("pk_provenance_artifacts", type_="primary")
        batch.create_primary_key("pk_provenance_artifacts", ["project_id", "artifact_id"])
    with op.batch_alter_table("provenance_unresolved_inputs") as batch:
        batch.alter_column("project_id", existing_type=sa.String(length=255), nullable=False)
        batch.drop_index("ix_provenance_unresolved_inputs_artifact")
        batch.create_index("ix_provenance_unresolved_inputs_project_artifact", ["project_id", "artifact_id"])
    with op.batch_alter_table("taint_cascades", recreate="always") as batch:
        batch.alter_column("project_id", existing_type=sa.String(length=255), nullable=False)
        batch.drop_constraint("pk_taint_cascades", type_="primary")
        batch.create_primary_key("pk_taint_cascades", ["project_id", "id"])
        batch.drop_constraint("uq_taint_cascades_rollback_id", type_="unique")
        batch.create_unique_constraint("uq_taint_cascades_project_rollback", ["project_id", "rollback_id"])

    _repair_graph(op.get_bind())


def _repair_graph(conn: sa.Connection) -> None:
    # 1. An edge between two projects' records came from a global artifact id: the dependent
    #    record's input is unresolved within its own project.
    cross = sa.select(
        edges.c.artifact_id,
        sa.literal_column(_project_of("artifact_dependencies.artifact_id")),
        edges.c.via_artifact_id,
        sa.func.coalesce(edges.c.dependency_type, "consumed"),
    ).where(
        sa.text(_CROSS),
        edges.c.via_artifact_id.is_not(None),
    )
    for rid, project, art, rel in list(conn.execute(cross)):
        conn.execute(
            _insert_ignore(conn, unresolved),
            {"record_id": rid, "project_id": project, "artifact_id": art, "relationship": rel[:16]},
        )
    conn.execute(sa.text(f"DELETE FROM artifact_dependencies WHERE {_CROSS}"))
    # 2. Producers the global id hid: per project, the earliest record naming it in its outputs.
    known = {(p, a) for p, a in conn.execute(sa.select(artifacts.c.project_id, artifacts.c.artifact_id))}
    added: list[dict[str, Any]] = []
    after: tuple[Any, Any] | None = None
    while True:
        stmt = sa.select(records.c.id, records.c.project_id, records.c.created_at, records.c.outputs)
        if after is not None:
            stmt = stmt.where(sa.tuple_(records.c.created_at, records.c.id) > sa.tuple_(*after))
        rows = list(conn.execute(stmt.order_by(records.c.created_at, records.c.id).limit(BATCH)))
        if not rows:
            break
        after = (rows[-1][2], rows[-1][0])
        for rid, project, _, outputs in rows:
            for art in _output_ids(outputs):
                if (project, art) not in known:
                    known.add((project, art))
                    added.append({"project_id": project, "artifact_id": art, "provenance_id": rid})
    for i in range(0, len(added), BATCH):
        conn.execute(artifacts.insert(), added[i : i + BATCH])
    # 3. Inputs resolvable within their project now get their edge.
    pa = artifacts
    late = (
        sa.select(
            unresolved.c.record_id, pa.c.provenance_id, unresolved.c.relationship, unresolved.c.artifact_id
        )
        .select_from(
            unresolved.join(
                pa,
                sa.and_(
                    pa.c.project_id == unresolved.c.project_id, pa.c.artifact_id == unresolved.c.artifact_id
                ),
            )
        )
        .where(pa.c.provenance_id != unresolved.c.record_id)
    )
    conn.execute(
        _insert_ignore(conn, edges).from_select(
            ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"], late
        )
    )
    conn.execute(
        unresolved.delete().where(
            sa.exists().where(
                pa.c.project_id == unresolved.c.project_id, pa.c.artifact_id == unresolved.c.artifact_id
            )
        )
    )


def _output_ids(outputs: Any) -> list[str]:
    # As domain.provenance.output_artifact_ids (kept here: a migration does not change with the code).
    if not isinstance(outputs, list):
        return []
    ids = [
        o["artifact_id"]
        for o in outputs
        if isinstance(o, dict) and isinstance(o.get("artifact_id"), str) and o["artifact_id"]
    ]
    return [a for a in dict.fromkeys(ids) if len(a) <= 255]


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()


def downgrade() -> None:
    # One row per id again: the earliest producer of an artifact id, the first project of a
    # cascade or rollback id. (Edges already resolved stay; nothing else is lost.)
    op.execute(
        "DELETE FROM provenance_artifacts WHERE EXISTS ("
        " SELECT 1 FROM provenance_artifacts o"
        " JOIN provenance_records ro ON ro.id = o.provenance_id"
        " JOIN provenance_records rs ON rs.id = provenance_artifacts.provenance_id"
        " WHERE o.artifact_id = provenance_artifacts.artifact_id"
        " AND (ro.created_at < rs.created_at"
        " OR (ro.created_at = rs.created_at AND o.project_id < provenance_artifacts.project_id)))"
    )
    op.execute(
        "DELETE FROM taint_cascades WHERE EXISTS (SELECT 1 FROM taint_cascades o"
        " WHERE o.id = taint_cascades.id AND o.project_id < taint_cascades.project_id)"
    )
    op.execute(
        "DELETE FROM taint_cascades WHERE rollback_id IS NOT NULL AND EXISTS (SELECT 1 FROM taint_cascades o"
        " WHERE o.rollback_id = taint_cascades.rollback_id AND o.project_id < taint_cascades.project_id)"
    )
    with op.batch_alter_table("taint_cascades", recreate="always") as batch:
        batch.drop_constraint("uq_taint_cascades_project_rollback", type_="unique")
        batch.create_unique_constraint("uq_taint_cascades_rollback_id", ["rollback_id"])
        batch.drop_constraint("pk_taint_cascades", type_="primary")
        batch.create_primary_key("pk_taint_cascades", ["id"])
        batch.alter_column("project_id", existing_type=sa.String(length=255), nullable=True)
    with op.batch_alter_table("provenance_unresolved_inputs") as batch:
        batch.drop_index("ix_provenance_unresolved_inputs_project_artifact")
        batch.create_index("ix_provenance_unresolved_inputs_artifact", ["artifact_id"])
        batch.drop_column("project_id")
    with op.batch_alter_table("provenance_artifacts", recreate="always") as batch:
        batch.drop_constraint("pk_provenance_artifacts", type_="primary")
        batch.create_primary_key("pk_provenance_artifacts", ["artifact_id"])
        batch.drop_column("project_id")
