"""Provenance endpoints: records, the dependency graph, taint and the project views
(consistency, checkpoints). Every answer honours the caller's project scope: a record of
another project answers exactly as if it did not exist.

Route order matters: the fixed paths (``/provenance/taint-events``, ``/provenance/by-artifact``)
come before ``/provenance/{record_id}``.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Path, Query, Request

from orchestration_service.http import JSON
from orchestration_service.routers.deps import container, narrowed_projects, visible_projects
from orchestration_service.routers.paging import Cursor, Offset, PageLimit, keyset_after, page_answer
from orchestration_service.schemas.common import (
    NO_NUL,
    ProvenancePage,
    ProvenanceRecord,
    UTCDateTime,
    problem_responses,
)
from orchestration_service.schemas.provenance import (
    Checkpoint,
    CheckpointCreate,
    CheckpointPage,
    ClearSuspectRequest,
    ClearSuspectResult,
    Consistency,
    Impact,
    Lineage,
    RootCause,
    TaintAction,
    TaintEventPage,
    TaintRequest,
    TaintResult,
    VerificationStatus,
)
from orchestration_service.services.provenance.common import (
    DEFAULT_GRAPH_LIMIT,
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_LIMIT,
    MAX_GRAPH_LIMIT,
)
from orchestration_service.services.provenance.documents import (
    checkpoint_document,
    record_document,
    taint_event_document,
)
from orchestration_service.services.provenance.queries import ProvenanceFilter, TaintEventFilter

router = APIRouter(tags=["provenance"])

Id = Annotated[str | None, Query(max_length=255, pattern=NO_NUL)]
MaxDepth = Annotated[int, Query(ge=1, le=MAX_DEPTH_LIMIT, description="How many edges to follow.")]
GraphLimit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_GRAPH_LIMIT,
        description=(
            f"At most this many entries in each list of the answer (default {DEFAULT_GRAPH_LIMIT:,}, "
            f"at most {MAX_GRAPH_LIMIT:,}), the nearest records first; `truncated` says when one was cut."
        ),
    ),
]
ProjectPath = Annotated[str, Path(max_length=255, pattern=NO_NUL)]


@router.get(
    "/provenance",
    response_model=ProvenancePage,
    responses=problem_responses(422),
    summary="Provenance records, newest first",
)
async def list_provenance(
    request: Request,
    project_id: Id = None,
    task_id: Id = None,
    artifact_id: Annotated[
        str | None, Query(max_length=255, pattern=NO_NUL, description="A produced artifact")
    ] = None,
    verification_status: VerificationStatus | None = None,
    is_tainted: bool | None = None,
    is_suspect: bool | None = None,
    model_used: Id = None,
    worker_id: Id = None,
    tier: Id = None,
    domain: Id = None,
    created_after: UTCDateTime | None = None,
    created_before: UTCDateTime | None = None,
    cursor: Cursor = None,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> JSON:
    after = keyset_after(cursor, offset)
    projects = narrowed_projects(request, project_id)
    if projects == []:
        return JSON(page_answer([], None, limit=limit, offset=offset))
    f = ProvenanceFilter(
        project_ids=projects,
        task_id=task_id,
        artifact_id=artifact_id,
        verification_status=verification_status.value if verification_status else None,
        is_tainted=is_tainted,
        is_suspect=is_suspect,
        model_used=model_used,
        worker_id=worker_id,
        tier=tier,
        domain=domain,
        created_after=created_after,
        created_before=created_before,
    )
    page = await container(request).provenance.queries.find(f, limit=limit, offset=offset, after=after)
    items = [record_document(r) for r in page.rows]
    return JSON(page_answer(items, page.with_rows(items), limit=limit, offset=offset))


@router.get(
    "/provenance/taint-events",
    response_model=TaintEventPage,
    responses=problem_responses(422),
    summary="The taint audit trail, newest first",
)
async def list_taint_events(
    request: Request,
    project_id: Id = None,
    cascade_id: Id = None,
    provenance_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    artifact_id: Id = None,
    action: TaintAction | None = None,
    cursor: Cursor = None,
    limit: PageLimit = 100,
    offset: Offset = 0,
) -> JSON:
    after = keyset_after(cursor, offset, uuid_ids=False)
    projects = narrowed_projects(request, project_id)
    empty = page_answer([], None, limit=limit, offset=offset)
    if projects == []:
        return JSON(empty)
    record = None
    if provenance_id is not None:
        try:
            record = uuid.UUID(provenance_id)
        except ValueError:
            return JSON(empty)
    f = TaintEventFilter(
        project_ids=projects,
        cascade_id=cascade_id,
        provenance_id=record,
        artifact_id=artifact_id,
        action=action.value if action else None,
    )
    page = await container(request).provenance.queries.taint_events(
        f, limit=limit, offset=offset, after=after
    )
    items = [taint_event_document(r) for r in page.rows]
    return JSON(page_answer(items, page.with_rows(items), limit=limit, offset=offset, time_key="timestamp"))


@router.get(
    "/provenance/by-artifact/{artifact_id}",
    response_model=ProvenanceRecord,
    responses=problem_responses(404),
    summary="The record that produced an artifact",
    description=(
        "An artifact id is its project's: when several of the caller's projects have one, "
        "`project_id` says which (422 without it)."
    ),
)
async def provenance_by_artifact(request: Request, artifact_id: str, project_id: Id = None) -> JSON:
    row = await container(request).provenance.queries.by_artifact(
        artifact_id, project_ids=narrowed_projects(request, project_id)
    )
    return JSON(record_document(row))


@router.get(
    "/provenance/{record_id}",
    response_model=ProvenanceRecord,
    responses=problem_responses(404),
    summary="A provenance record",
)
async def get_provenance(request: Request, record_id: str) -> JSON:
    row = await container(request).provenance.queries.get(record_id, project_ids=visible_projects(request))
    return JSON(record_document(row))


@router.get(
    "/provenance/{record_id}/lineage",
    response_model=Lineage,
    responses=problem_responses(404, 422),
    summary="Everything upstream of a record, with depth",
)
async def provenance_lineage(
    request: Request,
    record_id: str,
    max_depth: MaxDepth = DEFAULT_MAX_DEPTH,
    limit: GraphLimit = DEFAULT_GRAPH_LIMIT,
) -> JSON:
    doc = await container(request).provenance.queries.lineage(
        record_id, max_depth=max_depth, limit=limit, project_ids=visible_projects(request)
    )
    return JSON(doc)


@router.get(
    "/provenance/{record_id}/impact",
    response_model=Impact,
    responses=problem_responses(404, 422),
    summary="Everything downstream of a record, and the tasks in flight that wait on it",
)
async def provenance_impact(
    request: Request,
    record_id: str,
    max_depth: MaxDepth = DEFAULT_MAX_DEPTH,
    limit: GraphLimit = DEFAULT_GRAPH_LIMIT,
) -> JSON:
    doc = await container(request).provenance.queries.impact(
        record_id, max_depth=max_depth, limit=limit, project_ids=visible_projects(request)
    )
    return JSON(doc)


@router.get(
    "/provenance/{record_id}/root-cause",
    response_model=RootCause,
    responses=problem_responses(404, 422),
    summary="The tainted records upstream that explain this one",
)
async def provenance_root_cause(
    request: Request, record_id: str, max_depth: MaxDepth = DEFAULT_MAX_DEPTH
) -> JSON:
    doc = await container(request).provenance.queries.root_cause(
        record_id, max_depth=max_depth, project_ids=visible_projects(request)
    )
    return JSON(doc)


@router.post(
    "/provenance/{record_id}/taint",
    response_model=TaintResult,
    responses=problem_responses(400, 404, 413, 422),
    summary="Mark a record tainted and everything downstream suspect",
)
async def taint_provenance(request: Request, record_id: str, body: TaintRequest) -> JSON:
    result = await container(request).provenance.cascade.taint(
        record_id,
        reason=body.reason,
        tainted_by=body.tainted_by,
        cascade_id=body.cascade_id,
        project_ids=visible_projects(request),
    )
    return JSON(result.document())


@router.post(
    "/provenance/{record_id}/clear-suspect",
    response_model=ClearSuspectResult,
    responses=problem_responses(400, 404, 413, 422),
    summary="A suspect record was revalidated: clear its suspect mark",
)
async def clear_suspect(
    request: Request, record_id: str, body: Annotated[ClearSuspectRequest | None, Body()] = None
) -> JSON:
    doc = await container(request).provenance.cascade.clear_suspect(
        record_id,
        reason=body.reason if body else None,
        cleared_by=body.cleared_by if body else None,
        project_ids=visible_projects(request),
    )
    return JSON(doc)


@router.get(
    "/projects/{project_id}/consistency",
    response_model=Consistency,
    responses=problem_responses(404),
    summary="A project's provenance health and what to do about it",
)
async def project_consistency(request: Request, project_id: ProjectPath) -> JSON:
    doc = await container(request).provenance.queries.consistency(
        project_id, project_ids=visible_projects(request)
    )
    return JSON(doc)


@router.get(
    "/projects/{project_id}/checkpoints",
    response_model=CheckpointPage,
    responses=problem_responses(404, 422),
    summary="A project's checkpoints, newest first",
)
async def list_checkpoints(
    request: Request,
    project_id: ProjectPath,
    include_invalid: Annotated[bool, Query(description="Also those a rollback invalidated")] = True,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> JSON:
    rows, total = await container(request).provenance.queries.checkpoints(
        project_id,
        include_invalid=include_invalid,
        limit=limit,
        offset=offset,
        project_ids=visible_projects(request),
    )
    return JSON(
        {"items": [checkpoint_document(r) for r in rows], "total": total, "limit": limit, "offset": offset}
    )


@router.post(
    "/projects/{project_id}/checkpoints",
    status_code=201,
    response_model=Checkpoint,
    responses=problem_responses(400, 403, 404, 413, 422),
    summary="Record a checkpoint of a project (what a rollback returns to)",
)
async def create_checkpoint(
    request: Request, project_id: ProjectPath, body: Annotated[CheckpointCreate | None, Body()] = None
) -> JSON:
    body = body or CheckpointCreate()
    row = await container(request).provenance.cascade.create_checkpoint(
        project_id,
        git_ref=body.git_ref,
        rag_state_ref=body.rag_state_ref,
        work_product_ref=body.work_product_ref,
        description=body.description,
        trigger=body.trigger,
        project_ids=visible_projects(request),
    )
    return JSON(
        checkpoint_document(row),
        status_code=201,
        headers={"Location": f"/api/v1/projects/{quote(project_id, safe='')}/checkpoints"},
    )
