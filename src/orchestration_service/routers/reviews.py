"""Human review endpoints: the queue, one review, and the three decisions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.provenance import encode_cursor
from orchestration_service.domain.reviews import ANONYMOUS, ReviewDecision
from orchestration_service.http import JSON
from orchestration_service.routers.deps import container, narrowed_projects, visible_projects
from orchestration_service.routers.paging import Cursor, Offset, PageLimit, keyset_after
from orchestration_service.schemas.common import NO_NUL, problem_responses
from orchestration_service.schemas.reviews import (
    Approve,
    Reject,
    RequestChanges,
    ReviewDocument,
    ReviewPage,
)
from orchestration_service.schemas.views import task_document
from orchestration_service.services.reviews import Decision, ReviewFilter, ReviewRecord, ReviewView

router = APIRouter(tags=["reviews"])


def _review_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"review {raw} does not exist") from None


def _reviewer(request: Request) -> str:
    """The key's name; ``anonymous`` with auth off."""
    principal = request.scope.get("state", {}).get("principal")
    return str(principal.name) if principal is not None else ANONYMOUS


def _summary(r: ReviewRecord, description: str | None) -> dict[str, Any]:
    return {
        "review_id": r.id,
        "task_id": r.task_id,
        "project_id": r.project_id,
        "status": r.status,
        "attempt": r.attempt,
        "reason": r.reason,
        "qa_review_id": r.qa_review_id,
        "qa_result_id": r.qa_result_id,
        "requested_at": r.requested_at,
        "decision": r.decision,
        "reviewer": r.reviewer,
        "decision_text": r.decision_text,
        "decided_at": r.decided_at,
        "decided_via": r.decided_via,
        "closed_reason": r.closed_reason,
        "task_description": description,
    }


def _document(view: ReviewView) -> dict[str, Any]:
    r, t = view.review, view.task
    return {
        **_summary(r, t["description"]),
        "task": task_document(t),
        "output": t.get("output"),
        "artifacts": t["artifacts"] or [],
        "qa_artifacts": r.request.get("artifacts") or [],
        "checklist": r.request.get("checklist"),
        "details": r.request.get("details"),
    }


@router.get(
    "/reviews",
    response_model=ReviewPage,
    responses=problem_responses(422),
    summary="List human reviews, oldest request first",
)
async def list_reviews(
    request: Request,
    project_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    status: Annotated[
        Literal["open", "decided", "closed"] | None,
        Query(description="`open`: the queue; `closed`: the task left review without a decision"),
    ] = None,
    cursor: Cursor = None,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> JSON:
    after = keyset_after(cursor, offset)
    projects = narrowed_projects(request, project_id)
    empty = {
        "items": [],
        "total": 0,
        "total_capped": False,
        "limit": limit,
        "offset": offset,
        "next_cursor": None,
    }
    if projects == []:
        return JSON(empty)
    page = await container(request).reviews.list(
        ReviewFilter(project_ids=projects, status=status), limit=limit, offset=offset, after=after
    )
    items = []
    for r in page.rows:
        task = page.tasks.get(r.task_id)
        items.append(_summary(r, task["description"] if task else None))
    last = page.rows[-1] if page.rows else None
    return JSON(
        {
            "items": items,
            "total": page.total,
            "total_capped": page.total_capped,
            "limit": limit,
            "offset": offset,
            "next_cursor": encode_cursor(last.requested_at, last.id) if page.has_more and last else None,
        }
    )


@router.get(
    "/reviews/{review_id}",
    response_model=ReviewDocument,
    responses=problem_responses(404),
    summary="A review with its task, the worker's output and artifacts, and QA's reason",
)
async def get_review(request: Request, review_id: str) -> JSON:
    view = await container(request).reviews.get(_review_id(review_id), project_ids=visible_projects(request))
    return JSON(_document(view))


async def _decide(request: Request, review_id: str, decision: ReviewDecision, text: str | None) -> JSON:
    view = await container(request).reviews.decide(
        _review_id(review_id),
        Decision(decision, _reviewer(request), text),
        project_ids=visible_projects(request),
    )
    return JSON(_document(view))


DECISION_RESPONSES = problem_responses(404, 409, 422)


@router.post(
    "/reviews/{review_id}/approve",
    response_model=ReviewDocument,
    responses=DECISION_RESPONSES,
    summary="Approve: the task completes, its provenance naming the reviewer",
)
async def approve(request: Request, review_id: str, body: Approve | None = None) -> JSON:
    return await _decide(request, review_id, ReviewDecision.APPROVED, body.comment if body else None)


@router.post(
    "/reviews/{review_id}/reject",
    response_model=ReviewDocument,
    responses=DECISION_RESPONSES,
    summary="Reject: the task fails",
)
async def reject(request: Request, review_id: str, body: Reject) -> JSON:
    return await _decide(request, review_id, ReviewDecision.REJECTED, body.reason)


@router.post(
    "/reviews/{review_id}/request-changes",
    response_model=ReviewDocument,
    responses=DECISION_RESPONSES,
    summary="Request changes: a new attempt starts with the feedback (past max_attempts, the task fails)",
)
async def request_changes(request: Request, review_id: str, body: RequestChanges) -> JSON:
    return await _decide(request, review_id, ReviewDecision.CHANGES_REQUESTED, body.feedback)
