"""Project endpoints: the project, its settings and constitution, its status.

With API keys, a key sees and changes only its projects (another project answers 404, as
if it did not exist); changing needs the admin scope (``domain/access.py``), and so does
creating, with a key for every project or one naming the new project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from orchestration_service.domain.errors import Forbidden, NotFound
from orchestration_service.http import JSON
from orchestration_service.routers.deps import container, visible_projects
from orchestration_service.routers.task_actions import requester
from orchestration_service.schemas.common import NO_NUL, ProjectList, ProjectStatus, problem_responses
from orchestration_service.schemas.projects import ConstitutionView, CreateProject, ProjectView, UpdateProject

router = APIRouter(tags=["projects"])

ProjectPath = Annotated[str, Path(max_length=255, pattern=NO_NUL)]


def _visible(request: Request, project_id: str) -> None:
    scope = visible_projects(request)
    if scope is not None and project_id not in scope:
        raise NotFound(f"project {project_id} does not exist")


@router.get("/projects", response_model=ProjectList, summary="Projects with task counts")
async def list_projects(
    request: Request,
    include_archived: Annotated[bool, Query(description="Archived projects too.")] = False,
) -> JSON:
    items = await container(request).projects.list(
        project_ids=visible_projects(request), include_archived=include_archived
    )
    return JSON({"items": items})


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectView,
    responses=problem_responses(403, 409),
    summary="Create a project",
)
async def create_project(request: Request, body: CreateProject) -> JSON:
    scope = visible_projects(request)
    if scope is not None and body.project_id not in scope:
        raise Forbidden(f"this API key may not create project {body.project_id}")
    view = await container(request).projects.create(
        body.project_id,
        name=body.name,
        description=body.description,
        settings=body.settings.model_dump(mode="json"),
        constitution=body.constitution,
        created_by=requester(request),
    )
    return JSON(view, status_code=201, headers={"Location": f"/api/v1/projects/{body.project_id}"})


@router.get(
    "/projects/{project_id}",
    response_model=ProjectView,
    responses=problem_responses(404),
    summary="A project: its settings (own and in effect), constitution and status",
)
async def get_project(request: Request, project_id: ProjectPath) -> JSON:
    _visible(request, project_id)
    return JSON(await container(request).projects.get(project_id))


@router.patch(
    "/projects/{project_id}",
    response_model=ProjectView,
    responses=problem_responses(404),
    summary="Change a project (only the fields given; effective at once)",
)
async def update_project(request: Request, project_id: ProjectPath, body: UpdateProject) -> JSON:
    _visible(request, project_id)
    given = body.model_fields_set
    fields: dict[str, object] = {k: getattr(body, k) for k in ("name", "description") if k in given}
    settings = (
        body.settings.model_dump(mode="json", exclude_unset=True) if body.settings is not None else None
    )
    view = await container(request).projects.update(
        project_id,
        fields=fields,
        settings=settings,
        constitution=body.constitution,
        changed_by=requester(request),
    )
    return JSON(view)


@router.delete(
    "/projects/{project_id}",
    response_model=ProjectView,
    responses=problem_responses(404, 409),
    summary="Archive a project (refused while it has unfinished tasks)",
)
async def archive_project(request: Request, project_id: ProjectPath) -> JSON:
    _visible(request, project_id)
    return JSON(await container(request).projects.archive(project_id))


@router.get(
    "/projects/{project_id}/constitution",
    response_model=ConstitutionView,
    responses=problem_responses(404),
    summary="A project's constitution: the current version, or version N",
)
async def get_constitution(
    request: Request,
    project_id: ProjectPath,
    version: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> JSON:
    _visible(request, project_id)
    c = await container(request).projects.constitution(project_id, version)
    return JSON(
        {
            "project_id": c.project_id,
            "version": c.version,
            "sha256": c.sha256,
            "text": c.text,
            "created_at": c.created_at,
            "created_by": c.created_by,
        }
    )


@router.get(
    "/projects/{project_id}/status",
    response_model=ProjectStatus,
    responses=problem_responses(404),
    summary="A project's status summary",
)
async def project_status(request: Request, project_id: ProjectPath) -> JSON:
    _visible(request, project_id)
    return JSON(await container(request).projects.status(project_id))
