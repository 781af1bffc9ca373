"""Project endpoints. A project exists once it has a task."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from orchestration_service.domain.errors import NotFound
from orchestration_service.http import JSON
from orchestration_service.routers.deps import container, visible_projects
from orchestration_service.schemas.common import NO_NUL, ProjectList, ProjectStatus, problem_responses

router = APIRouter(tags=["projects"])


@router.get("/projects", response_model=ProjectList, summary="Projects with task counts")
async def list_projects(request: Request) -> JSON:
    items = await container(request).projects.list(project_ids=visible_projects(request))
    return JSON({"items": items})


@router.get(
    "/projects/{project_id}/status",
    response_model=ProjectStatus,
    responses=problem_responses(404),
    summary="A project's status summary",
)
async def project_status(
    request: Request, project_id: Annotated[str, Path(max_length=255, pattern=NO_NUL)]
) -> JSON:
    scope = visible_projects(request)
    if scope is not None and project_id not in scope:
        raise NotFound(f"project {project_id} has no tasks")
    return JSON(await container(request).projects.status(project_id))
