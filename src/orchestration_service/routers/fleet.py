"""The fleet: workers, queues per tier, recent failures, and dead letters.

With API keys on, a project-scoped key sees what its projects' rows say (see
``services/fleet.py``); dead letters not attributed to a project are shown to keys for
every project only. Replaying and discarding need the admin scope (``domain/access.py``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from orchestration_service.domain.errors import NotFound, ServiceUnavailable
from orchestration_service.domain.vocabulary import Tier
from orchestration_service.http import JSON, is_transient
from orchestration_service.routers.deps import container, narrowed_projects, visible_projects
from orchestration_service.routers.paging import Cursor, Offset, PageLimit, keyset_after, page_answer
from orchestration_service.schemas.common import NO_NUL, problem_responses
from orchestration_service.schemas.fleet import (
    DeadLetterDoc,
    DeadLetterPage,
    DiscardResult,
    FailurePage,
    QueueList,
    ReplayResult,
    WorkerList,
)
from orchestration_service.services.dead_letters import DeadLetter, DeadLetterFilter
from orchestration_service.services.fleet import FailureFilter

router = APIRouter(tags=["fleet"])

ProjectQuery = Annotated[str | None, Query(max_length=255, pattern=NO_NUL)]


def _letter_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"dead letter {raw} does not exist") from None


@router.get("/workers", response_model=WorkerList, summary="Workers seen on task events")
async def list_workers(request: Request, limit: PageLimit = 100, offset: Offset = 0) -> JSON:
    answer = await container(request).fleet.workers(visible_projects(request), limit=limit, offset=offset)
    return JSON(answer)


@router.get("/queues", response_model=QueueList, summary="Tasks waiting and in flight per tier")
async def list_queues(request: Request) -> JSON:
    return JSON(await container(request).fleet.queues(visible_projects(request)))


@router.get(
    "/failures",
    response_model=FailurePage,
    responses=problem_responses(422),
    summary="Recently failed tasks, newest first",
)
async def list_failures(
    request: Request,
    project_id: ProjectQuery = None,
    tier: Tier | None = None,
    reason: Annotated[
        str | None, Query(max_length=255, pattern=NO_NUL, description="The failure reason starts with this")
    ] = None,
    cursor: Cursor = None,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> JSON:
    after = keyset_after(cursor, offset)
    projects = narrowed_projects(request, project_id)
    if projects == []:
        return JSON(page_answer([], None, limit=limit, offset=offset))
    f = FailureFilter(project_ids=projects, tier=tier.value if tier else None, reason=reason or None)
    page = await container(request).fleet.failures(f, limit=limit, offset=offset, after=after)
    items = [_failure(r) for r in page.rows]
    return JSON(page_answer(items, page, limit=limit, offset=offset, time_key="completed_at"))


def _failure(row: dict[str, Any]) -> dict[str, Any]:
    error = row.get("error")
    return {
        "task_id": row["id"],
        "project_id": row["project_id"],
        "description": row["description"],
        "tier": row["tier"],
        "domain": row["domain"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "parent_id": row["parent_id"],
        "reason": error.get("reason") if isinstance(error, dict) else None,
        "error": error.get("detail") if isinstance(error, dict) else error,
        "created_at": row["created_at"],
        "failed_at": row["completed_at"],
    }


def _letter(d: DeadLetter) -> dict[str, Any]:
    return dataclasses.asdict(d)


@router.get(
    "/dead-letters",
    response_model=DeadLetterPage,
    responses=problem_responses(422),
    summary="Events this service dead-lettered, newest first",
)
async def list_dead_letters(
    request: Request,
    project_id: ProjectQuery = None,
    source: Literal["broker", "ingress"] | None = None,
    event_type: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    cursor: Cursor = None,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> JSON:
    after = keyset_after(cursor, offset)
    projects = narrowed_projects(request, project_id)
    if projects == []:
        return JSON(page_answer([], None, limit=limit, offset=offset))
    f = DeadLetterFilter(project_ids=projects, source=source, event_type=event_type)
    page = await container(request).dead_letters.list(f, limit=limit, offset=offset, after=after)
    rows = [_letter(r) for r in page.rows]
    answer = page_answer(
        rows, _RowsPage(rows, page.total, page.total_capped, page.has_more), limit=limit, offset=offset
    )
    return JSON(answer)


@dataclasses.dataclass(frozen=True, slots=True)
class _RowsPage:
    rows: list[dict[str, Any]]
    total: int
    total_capped: bool
    has_more: bool


@router.get(
    "/dead-letters/{letter_id}",
    response_model=DeadLetterDoc,
    responses=problem_responses(404),
    summary="One dead letter",
)
async def get_dead_letter(request: Request, letter_id: str) -> JSON:
    letter = await container(request).dead_letters.get(_letter_id(letter_id), visible_projects(request))
    return JSON(_letter(letter))


@router.post(
    "/dead-letters/{letter_id}/replay",
    response_model=ReplayResult,
    responses=problem_responses(404, 409, 503),
    summary="Run a dead letter's event through the handlers again, once",
)
async def replay_dead_letter(request: Request, letter_id: str) -> JSON:
    try:
        result = await container(request).replay.replay(
            _letter_id(letter_id), projects=visible_projects(request)
        )
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise ServiceUnavailable("the database is unavailable; retry later") from None
    return JSON(result)


@router.delete(
    "/dead-letters/{letter_id}",
    response_model=DiscardResult,
    responses=problem_responses(404),
    summary="Discard a dead letter",
)
async def discard_dead_letter(request: Request, letter_id: str) -> JSON:
    lid = _letter_id(letter_id)
    await container(request).dead_letters.discard(lid, visible_projects(request))
    return JSON({"id": lid, "outcome": "discarded"})
