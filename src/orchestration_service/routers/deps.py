"""Dependencies shared by routers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from orchestration_service.main import Container


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def visible_projects(request: Request) -> list[str] | None:
    """The projects the caller may see; None = all. (API keys narrow this.)"""
    # Read the ASGI state dict directly: request.state raises (and catches) AttributeError
    # for a missing key, which costs measurably on every request.
    scope: list[str] | None = request.scope.get("state", {}).get("project_scope")
    return scope


def narrowed_projects(request: Request, project_id: str | None) -> list[str] | None:
    """The projects a query may cover: the caller's scope, narrowed to ``project_id`` when
    given. ``[]`` means nothing is visible (a project outside the key's scope)."""
    scope = visible_projects(request)
    if project_id is None:
        return scope
    return [project_id] if scope is None or project_id in scope else []
