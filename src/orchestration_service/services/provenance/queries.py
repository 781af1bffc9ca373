"""Read side of the provenance store: records, listings, the taint trail, the project
consistency report and checkpoints, and (from ``graph``) lineage, impact and root cause.
Every query takes a project scope (``project_ids``; None = all): a record of another project
answers exactly as if it did not exist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from orchestration_service.domain.errors import NotFound, ValidationFailed
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.domain.provenance import recommended_action
from orchestration_service.repositories.provenance.port import (
    Checkpoint,
    ProvenanceFilter,
    ProvenanceRecord,
    TaintEvent,
    TaintEventFilter,
)
from orchestration_service.services.provenance.common import Page, parse_record_id, visible
from orchestration_service.services.provenance.graph import GraphQueries

# The routers build filters from the query string.
__all__ = ["ProvenanceFilter", "ProvenanceQueries", "TaintEventFilter"]


class ProvenanceQueries(GraphQueries):
    # -- records ---------------------------------------------------------------------------
    async def get(
        self, record_id: uuid.UUID | str, *, project_ids: Sequence[str] | None = None
    ) -> ProvenanceRecord:
        rid = parse_record_id(record_id)
        async with self.storage.read() as uow:
            found = await uow.provenance.get(rid)
        if found is None or not visible(found.project_id, project_ids):
            raise NotFound(f"provenance record {record_id} does not exist")
        return found

    async def by_artifact(
        self, artifact_id: str, *, project_ids: Sequence[str] | None = None
    ) -> ProvenanceRecord:
        """The record that produced an artifact id in one of ``project_ids`` (an artifact id
        is its project's); 422 when several of them have one (the caller names the project)."""
        async with self.storage.read() as uow:
            repo = uow.provenance
            found = await repo.artifact_projects(artifact_id, project_ids) if project_ids != [] else []
            if len(found) > 1:
                raise ValidationFailed(
                    f"artifact {artifact_id} exists in several projects; give project_id",
                    extra={"errors": [{"field": "project_id", "message": "required: several projects"}]},
                )
            producer = (await repo.producers_of(found[0], [artifact_id])).get(artifact_id) if found else None
            record = await repo.get(producer) if producer else None
        if record is None or not visible(record.project_id, project_ids):
            raise NotFound(f"no provenance record produced artifact {artifact_id}")
        return record

    async def find(
        self,
        f: ProvenanceFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Page[ProvenanceRecord]:
        async with self.storage.read() as uow:
            rows = await uow.provenance.find(f, limit=limit + 1, offset=offset, after=after)
            total = await uow.provenance.count(f, cap=LIST_TOTAL_CAP)
        return Page(rows[:limit], min(total, LIST_TOTAL_CAP), len(rows) > limit, total > LIST_TOTAL_CAP)

    async def taint_events(
        self,
        f: TaintEventFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, str] | None = None,
    ) -> Page[TaintEvent]:
        async with self.storage.read() as uow:
            rows = await uow.taint.find_taint_events(f, limit=limit + 1, offset=offset, after=after)
            total = await uow.taint.count_taint_events(f, cap=LIST_TOTAL_CAP)
        return Page(rows[:limit], min(total, LIST_TOTAL_CAP), len(rows) > limit, total > LIST_TOTAL_CAP)

    # -- projects --------------------------------------------------------------------------
    async def consistency(
        self, project_id: str, *, project_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        if not visible(project_id, project_ids):
            raise NotFound(f"project {project_id} has no provenance records")
        async with self.storage.read() as uow:
            counts = await uow.taint.project_counts(project_id)
            if counts.total == 0:
                raise NotFound(f"project {project_id} has no provenance records")
            orphaned = await uow.taint.orphaned_inputs(project_id)
        return {
            "project_id": project_id,
            "total_records": counts.total,
            "tainted_count": counts.tainted,
            "suspect_count": counts.suspect,
            "pending_revalidation": counts.pending_revalidation,
            "orphaned_artifacts": orphaned,
            "affected_ratio": round(counts.affected / counts.total, 4),
            "recommended_action": recommended_action(
                counts.total, counts.affected, counts.pending_revalidation
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
    ) -> tuple[Sequence[Checkpoint], int]:
        if not visible(project_id, project_ids):
            return [], 0
        async with self.storage.read() as uow:
            return await uow.taint.list_checkpoints(
                project_id, include_invalid=include_invalid, limit=limit, offset=offset
            )
