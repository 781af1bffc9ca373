"""Provenance endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from orchestration_service.domain.errors import NotFound
from orchestration_service.http import JSON
from orchestration_service.repositories.provenance import ProvenanceFilter
from orchestration_service.routers.deps import container, visible_projects
from orchestration_service.schemas.common import (
    NO_NUL,
    ProvenancePage,
    ProvenanceRecord,
    problem_responses,
)
from orchestration_service.schemas.views import provenance_document

router = APIRouter(tags=["provenance"])


@router.get("/provenance", response_model=ProvenancePage, summary="Provenance records, newest first")
async def list_provenance(
    request: Request,
    project_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    task_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSON:
    scope = visible_projects(request)
    projects: list[str] | None
    if project_id is not None:
        projects = [project_id] if scope is None or project_id in scope else []
    else:
        projects = scope
    if projects == []:
        return JSON({"items": [], "total": 0, "limit": limit, "offset": offset})
    rows, total = await container(request).provenance.list(
        ProvenanceFilter(project_ids=projects, task_id=task_id), limit=limit, offset=offset
    )
    return JSON(
        {"items": [provenance_document(r) for r in rows], "total": total, "limit": limit, "offset": offset}
    )


@router.get(
    "/provenance/{record_id}",
    response_model=ProvenanceRecord,
    responses=problem_responses(404),
    summary="A provenance record",
)
async def get_provenance(request: Request, record_id: str) -> JSON:
    try:
        rid = uuid.UUID(record_id)
    except ValueError:
        raise NotFound(f"provenance record {record_id} does not exist") from None
    row = await container(request).provenance.get(rid, project_ids=visible_projects(request))
    return JSON(provenance_document(row))
