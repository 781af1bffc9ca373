"""Hand-written PostgreSQL statements for recording a validated task's provenance: one round
trip where ``ProvenanceRepository`` takes four (``producers_of``, ``add_artifacts`` and the two
statements of ``resolve_waiting``). SQLite, and inputs, go through ``ProvenanceRepository``;
the tests run both backends against the same expectations.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

# The record now produces these artifacts in its project ($3) (an artifact id keeps its first
# producer of the project: a re-produced id is skipped), and earlier records of the project
# that used them, waiting as unresolved inputs, get their dependency edge on it. Returns the
# artifact ids this record produces.
CLAIM_OUTPUTS = """
WITH mine AS (
    INSERT INTO provenance_artifacts (project_id, artifact_id, provenance_id)
    SELECT $3, a, $1 FROM unnest($2::text[]) AS a
    ON CONFLICT (project_id, artifact_id) DO NOTHING
    RETURNING artifact_id
), waiting AS (
    DELETE FROM provenance_unresolved_inputs u USING mine m
    WHERE u.project_id = $3 AND u.artifact_id = m.artifact_id
    RETURNING u.record_id, u.artifact_id, u.relationship
), resolved AS (
    INSERT INTO artifact_dependencies (artifact_id, depends_on, dependency_type, via_artifact_id)
    SELECT w.record_id, $1, w.relationship, w.artifact_id FROM waiting w WHERE w.record_id <> $1
    ON CONFLICT DO NOTHING
)
SELECT artifact_id FROM mine
"""


async def claim_outputs(
    conn: asyncpg.Connection, project_id: str, record_id: uuid.UUID, produced: Sequence[str]
) -> list[str]:
    """``producers_of`` + ``add_artifacts`` + ``resolve_waiting`` for a new record, at once."""
    if not produced:
        return []
    rows = await conn.fetch(CLAIM_OUTPUTS, record_id, list(dict.fromkeys(produced)), project_id)
    return [r["artifact_id"] for r in rows]
