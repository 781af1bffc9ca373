"""What a person does to a task after the fact: retry it by hand."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from orchestration_service.domain.errors import NotFound
from orchestration_service.http import JSON
from orchestration_service.routers.deps import container, visible_projects
from orchestration_service.schemas.common import problem_responses
from orchestration_service.schemas.tasks import TaskDocument
from orchestration_service.schemas.views import task_document

router = APIRouter(tags=["tasks"])


def _task_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"task {raw} does not exist") from None


def requester(request: Request) -> str:
    """Who asked: the API key's name, ``anonymous`` when keys are off."""
    principal = request.scope.get("state", {}).get("principal")
    return str(principal.name) if principal is not None else "anonymous"


@router.post(
    "/tasks/{task_id}/retry",
    response_model=TaskDocument,
    responses=problem_responses(404, 409),
    summary="Run a failed or cancelled task again",
)
async def retry_task(request: Request, task_id: str) -> JSON:
    """A new attempt, even past ``max_attempts`` (a person asked): the task goes back to
    ``pending`` and is routed and dispatched again. A decomposed task goes back to
    ``decomposing`` and only its failed and cancelled subtasks (at every depth) run again.
    Recorded in the task's history with who asked. Any other state: 409."""
    c = container(request)
    tid = _task_id(task_id)
    scope = visible_projects(request)
    await c.tasks.retry(tid, requested_by=requester(request), project_ids=scope)
    view = await c.tasks.get(tid, project_ids=scope)
    return JSON(task_document(view.task, view.subtasks, view.dependencies))
