"""Read side of the provenance store: listings, the graph (lineage, impact, root cause) and
the project consistency report. Every query takes a project scope (``project_ids``; None =
all): a record of another project answers exactly as if it did not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Database
from orchestration_service.domain.errors import NotFound, ValidationFailed
from orchestration_service.domain.lifecycle import ACTIVE_STATES
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.domain.provenance import (
    output_artifact_ids,
    primary_artifact,
    recommended_action,
)
from orchestration_service.repositories.provenance import (
    GRAPH_COLUMNS,
    ProvenanceFilter,
    ProvenanceRepository,
    TaintEventFilter,
)

# "In flight" for the impact report: every unfinished status.
IN_FLIGHT = sorted(s.value for s in ACTIVE_STATES)
DEFAULT_MAX_DEPTH = 50
MAX_DEPTH_LIMIT = 1000
# At most this many records (and artifact ids, tasks) in each list of a graph answer; beyond,
# the answer says ``truncated``. The walk itself is bounded by ``max_depth``.
DEFAULT_GRAPH_LIMIT = 1000
MAX_GRAPH_LIMIT = 10_000


def parse_record_id(raw: str | uuid.UUID) -> uuid.UUID:
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"provenance record {raw} does not exist") from None


def visible(project_id: str, project_ids: Sequence[str] | None) -> bool:
    return project_ids is None or project_id in project_ids


def artifact_ids(outputs: str | None) -> list[str]:
    """A record's artifact ids from its ``outputs`` JSON text."""
    return [] if outputs is None else output_artifact_ids(orjson.loads(outputs))


# Positions in a graph row (repositories.provenance.GRAPH_COLUMNS).
DEPTH, ID, TASK_ID, PROJECT_ID, CREATED_AT, VERIFICATION_STATUS, IS_TAINTED, IS_SUSPECT, OUTPUTS = range(
    len(GRAPH_COLUMNS)
)


def node(row: Sequence[Any], ids: list[str] | None = None) -> dict[str, Any]:
    """A record in a graph answer (``ids``: its artifact ids, when already known), from a
    graph row. The hot loop of lineage and impact: positional reads, one dict."""
    return {
        "id": row[ID],
        "task_id": row[TASK_ID],
        "project_id": row[PROJECT_ID],
        "created_at": row[CREATED_AT],
        "verification_status": row[VERIFICATION_STATUS],
        "is_tainted": bool(row[IS_TAINTED]),
        "is_suspect": bool(row[IS_SUSPECT]),
        "artifact_ids": artifact_ids(row[OUTPUTS]) if ids is None else ids,
        "depth": row[DEPTH],
    }


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[RowMapping]
    total: int  # at most LIST_TOTAL_CAP
    has_more: bool
    total_capped: bool = False  # more match than ``total``


class ProvenanceQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- records ---------------------------------------------------------------------------
    async def get(
        self, record_id: uuid.UUID | str, *, project_ids: Sequence[str] | None = None
    ) -> RowMapping:
        rid = parse_record_id(record_id)
        async with self.db.read() as conn:
            row = await ProvenanceRepository(conn).get(rid)
        if row is None or not visible(row["project_id"], project_ids):
            raise NotFound(f"provenance record {record_id} does not exist")
        return row

    async def by_artifact(self, artifact_id: str, *, project_ids: Sequence[str] | None = None) -> RowMapping:
        """The record that produced an artifact id in one of ``project_ids`` (an artifact id
        is its project's); 422 when several of them have one (the caller names the project)."""
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            found = await repo.artifact_projects(artifact_id, project_ids) if project_ids != [] else []
            if len(found) > 1:
                raise ValidationFailed(
                    f"artifact {artifact_id} exists in several projects; give project_id",
                    extra={"errors": [{"field": "project_id", "message": "required: several projects"}]},
                )
            producer = (await repo.producers_of(found[0], [artifact_id])).get(artifact_id) if found else None
            row = await repo.get(producer) if producer else None
        if row is None or not visible(row["project_id"], project_ids):
            raise NotFound(f"no provenance record produced artifact {artifact_id}")
        return row

    async def find(
        self,
        f: ProvenanceFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Page:
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            rows = await repo.find(f, limit=limit + 1, offset=offset, after=after)
            total = await repo.count(f, cap=LIST_TOTAL_CAP)
        return Page(rows[:limit], min(total, LIST_TOTAL_CAP), len(rows) > limit, total > LIST_TOTAL_CAP)

    async def taint_events(
        self,
        f: TaintEventFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, str] | None = None,
    ) -> Page:
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            rows = await repo.find_taint_events(f, limit=limit + 1, offset=offset, after=after)
            total = await repo.count_taint_events(f, cap=LIST_TOTAL_CAP)
        return Page(rows[:limit], min(total, LIST_TOTAL_CAP), len(rows) > limit, total > LIST_TOTAL_CAP)

    # -- the graph -------------------------------------------------------------------------
    async def lineage(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        limit: int = DEFAULT_GRAPH_LIMIT,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Every record upstream (the records whose artifacts this one used, theirs, …): the
        nearest ``limit`` of them."""
        rid = parse_record_id(record_id)
        async with self.db.read() as conn:
            rows, truncated = await ProvenanceRepository(conn).graph(rid, "up", max_depth)
        root, reached = self._scoped(rows, record_id, project_ids)
        upstream = [r for r in reached if r[DEPTH] > 0]
        return {
            "provenance_id": root[ID],
            "artifact_ids": artifact_ids(root[OUTPUTS]),
            "depth_limit": max_depth,
            "max_depth": upstream[-1][DEPTH] if upstream else 0,
            "truncated": truncated or len(upstream) > limit,
            "total": len(upstream),
            "limit": limit,
            "items": [node(r) for r in upstream[:limit]],
        }

    async def impact(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        limit: int = DEFAULT_GRAPH_LIMIT,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Every record downstream, and the unfinished tasks that wait on any of them; each
        list holds at most ``limit`` entries (the nearest records first)."""
        rid = parse_record_id(record_id)
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            rows, truncated = await repo.graph(rid, "down", max_depth)
            root, reached = self._scoped(rows, record_id, project_ids)
            waiting = await repo.waiting_tasks([r[ID] for r in reached], IN_FLIGHT, project_ids)
            projects = sorted({r[PROJECT_ID] for r in reached})
            by_project = await repo.in_flight_by_project(projects, IN_FLIGHT)
        affected = [r for r in reached if r[DEPTH] > 0]
        # Only the listed records' artifacts are parsed: the lists end where ``items`` does.
        listed = affected[:limit]
        artifacts = [artifact_ids(r[OUTPUTS]) for r in listed]
        direct = [a for r, ids in zip(listed, artifacts, strict=True) if r[DEPTH] == 1 for a in ids]
        transitive = [a for r, ids in zip(listed, artifacts, strict=True) if r[DEPTH] > 1 for a in ids]
        root_artifacts = artifact_ids(root[OUTPUTS])
        cut = len(affected) > limit or len(direct) > limit or len(transitive) > limit or len(waiting) > limit
        return {
            "provenance_id": root[ID],
            "artifact_id": root_artifacts[0] if root_artifacts else str(root[ID]),
            "artifact_ids": root_artifacts,
            "direct_dependents": direct[:limit],
            "transitive_dependents": transitive[:limit],
            "total_affected": len(affected),
            "depth_limit": max_depth,
            "max_depth": affected[-1][DEPTH] if affected else 0,
            "truncated": truncated or cut,
            "limit": limit,
            "items": [node(r, ids) for r, ids in zip(listed, artifacts, strict=True)],
            "tasks_in_flight": [
                {"task_id": t["id"], "project_id": t["project_id"], "status": t["status"]}
                for t in waiting[:limit]
            ],
            "in_flight_by_project": by_project,
        }

    @staticmethod
    def _scoped(
        rows: Sequence[Sequence[Any]], record_id: uuid.UUID | str, project_ids: Sequence[str] | None
    ) -> tuple[Sequence[Any], list[Sequence[Any]]]:
        """The root row (the first, at depth 0) and the rows in scope; NotFound when the root
        does not exist or is out of scope. The walk itself is unscoped (a path may pass
        through another project); the answer is scoped."""
        if not rows or rows[0][DEPTH] != 0 or not visible(rows[0][PROJECT_ID], project_ids):
            raise NotFound(f"provenance record {record_id} does not exist")
        if project_ids is None:
            return rows[0], list(rows)
        scope = set(project_ids)
        return rows[0], [r for r in rows if r[PROJECT_ID] in scope]

    async def root_cause(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The legacy root-cause analysis: of the tainted records upstream (and the record
        itself), ``immediate_cause`` is the nearest, ``root_cause`` the earliest created;
        ``path`` runs from the root cause's artifact down to the failed one (the artifact
        through which each step depended on the previous), ``depth`` = its number of edges."""
        rid = parse_record_id(record_id)
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            root = await repo.summary(rid)
            if root is None or not visible(root["project_id"], project_ids):
                raise NotFound(f"provenance record {record_id} does not exist")
            failed = primary_artifact(root["outputs"], root["id"])
            # The walk stays in the record's project: neither a cause nor a step of the path
            # is another project's record (an edge into one can only be legacy data).
            rows = await repo.reached_tainted(rid, "up", max_depth, root["project_id"])
            tainted = [r for r in rows if r["is_tainted"] and visible(r["project_id"], project_ids)]
            answer: dict[str, Any] = {
                "failed_artifact_id": failed,
                "failed_provenance_id": root["id"],
                "immediate_cause": None,
                "immediate_cause_provenance_id": None,
                "root_cause": None,
                "root_cause_provenance_id": None,
                "path": [],
                "path_provenance_ids": [],
                "depth": 0,
            }
            if not tainted:
                return answer
            nearest = min(tainted, key=lambda r: (r["depth"], r["created_at"], str(r["id"])))
            earliest = min(tainted, key=lambda r: (r["created_at"], -r["depth"], str(r["id"])))
            depth_of = {r["id"]: r["depth"] for r in rows}
            edges = await repo.edges_between([r["id"] for r in rows if r["depth"] < earliest["depth"]])
        # Walk back down from the root cause along edges whose depth decreases by one.
        by_dependency: dict[Any, list[RowMapping]] = {}
        for e in edges:
            by_dependency.setdefault(e["depends_on"], []).append(e)
        records = [earliest["id"]]
        path: list[str] = []
        current = earliest["id"]
        for level in range(earliest["depth"] - 1, -1, -1):
            step = min(
                (e for e in by_dependency.get(current, []) if depth_of.get(e["artifact_id"]) == level),
                key=lambda e: str(e["artifact_id"]),
            )
            path.append(step["via_artifact_id"] or primary_artifact(None, current))
            current = step["artifact_id"]
            records.append(current)
        path.append(failed)
        answer.update(
            {
                "immediate_cause": primary_artifact(nearest["outputs"], nearest["id"]),
                "immediate_cause_provenance_id": nearest["id"],
                "root_cause": path[0] if earliest["depth"] > 0 else failed,
                "root_cause_provenance_id": earliest["id"],
                "path": path if earliest["depth"] > 0 else [failed],
                "path_provenance_ids": records,
                "depth": earliest["depth"],
            }
        )
        return answer

    # -- projects --------------------------------------------------------------------------
    async def consistency(
        self, project_id: str, *, project_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        if not visible(project_id, project_ids):
            raise NotFound(f"project {project_id} has no provenance records")
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            counts = await repo.project_counts(project_id)
            if counts["total"] == 0:
                raise NotFound(f"project {project_id} has no provenance records")
            orphaned = await repo.orphaned_inputs(project_id)
        return {
            "project_id": project_id,
            "total_records": counts["total"],
            "tainted_count": counts["tainted"],
            "suspect_count": counts["suspect"],
            "pending_revalidation": counts["pending_revalidation"],
            "orphaned_artifacts": orphaned,
            "affected_ratio": round(counts["affected"] / counts["total"], 4),
            "recommended_action": recommended_action(
                counts["total"], counts["affected"], counts["pending_revalidation"]
            ),
        }

    async def checkpoints(
        self,
        project_id: str,
        *,
        include_invalid: bool = True,
        limit: int = 50,
        offset: int = 0,
        project_ids: Sequence[str] | None = None,
    ) -> tuple[Sequence[RowMapping], int]:
        if not visible(project_id, project_ids):
            return [], 0
        async with self.db.read() as conn:
            return await ProvenanceRepository(conn).list_checkpoints(
                project_id, include_invalid=include_invalid, limit=limit, offset=offset
            )
