"""Task endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request

from orchestration_service.domain.errors import Forbidden, NotFound
from orchestration_service.domain.lifecycle import Priority, TaskStatus
from orchestration_service.http import JSON
from orchestration_service.logs import annotate_access
from orchestration_service.routers.deps import container, narrowed_projects, visible_projects
from orchestration_service.routers.paging import Cursor, Offset, PageLimit, keyset_after, page_answer
from orchestration_service.schemas.common import NO_NUL, UTCDateTime, problem_responses
from orchestration_service.schemas.tasks import (
    CancelTask,
    SubmitTask,
    TaskAccepted,
    TaskDocument,
    TaskHistory,
    TaskPage,
    TaskTree,
)
from orchestration_service.schemas.views import history_entry, task_document
from orchestration_service.services.task_manager import TaskFilter

router = APIRouter(tags=["tasks"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="Same key and body: the same task is returned, no second one is made.",
    ),
]


def _task_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"task {raw} does not exist") from None


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskAccepted,
    responses=problem_responses(403, 409),
    summary="Submit a task",
)
async def submit_task(
    request: Request,
    body: SubmitTask,
    idempotency_key: IdempotencyKey = None,
) -> JSON:
    scope = visible_projects(request)
    if scope is not None and body.project_id not in scope:
        raise Forbidden(f"this API key may not submit to project {body.project_id}")
    result = await container(request).tasks.submit(body, idempotency_key=idempotency_key)
    t = result.task
    annotate_access(request.scope, task_id=str(t["id"]), project_id=t["project_id"])
    headers = {"Location": f"/api/v1/tasks/{t['id']}"}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return JSON(
        {
            "task_id": t["id"],
            "project_id": t["project_id"],
            "status": t["status"],
            "created_at": t["created_at"],
            "estimated_completion": result.estimated_completion,
        },
        status_code=201,
        headers=headers,
    )


@router.get(
    "/tasks", response_model=TaskPage, responses=problem_responses(422), summary="List tasks, newest first"
)
async def list_tasks(
    request: Request,
    project_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    status: Annotated[list[TaskStatus] | None, Query(description="Repeatable")] = None,
    priority: Priority | None = None,
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
    f = TaskFilter(
        project_ids=projects,
        statuses=[s.value for s in status or []],
        priority=priority.value if priority else None,
        created_after=created_after,
        created_before=created_before,
    )
    page = await container(request).tasks.list(f, limit=limit, offset=offset, after=after)
    items = [task_document(r) for r in page.rows]
    return JSON(page_answer(items, page, limit=limit, offset=offset))


@router.get(
    "/tasks/{task_id}",
    response_model=TaskDocument,
    responses=problem_responses(404),
    summary="A task's status document",
)
async def get_task(request: Request, task_id: str) -> JSON:
    view = await container(request).tasks.get(_task_id(task_id), project_ids=visible_projects(request))
    return JSON(task_document(view.task, view.subtasks, view.dependencies))


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=TaskDocument,
    responses=problem_responses(404, 409),
    summary="Cancel a task (and its subtasks)",
)
async def cancel_task(
    request: Request,
    task_id: str,
    body: Annotated[CancelTask | None, Body()] = None,
) -> JSON:
    c = container(request)
    tid = _task_id(task_id)
    scope = visible_projects(request)
    await c.tasks.cancel(tid, reason=body.reason if body else None, project_ids=scope)
    view = await c.tasks.get(tid, project_ids=scope)
    return JSON(task_document(view.task, view.subtasks, view.dependencies))


@router.get(
    "/tasks/{task_id}/history",
    response_model=TaskHistory,
    responses=problem_responses(404),
    summary="Every transition, in order",
)
async def task_history(request: Request, task_id: str) -> JSON:
    tid = _task_id(task_id)
    rows = await container(request).tasks.history(tid, project_ids=visible_projects(request))
    return JSON({"task_id": tid, "items": [history_entry(h) for h in rows]})


@router.get(
    "/tasks/{task_id}/tree",
    response_model=TaskTree,
    responses=problem_responses(404),
    summary="The task and its subtasks, all levels, nested",
)
async def task_tree(request: Request, task_id: str) -> JSON:
    tid = _task_id(task_id)
    return JSON(await container(request).tasks.tree(tid, project_ids=visible_projects(request)))
