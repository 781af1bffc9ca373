"""Dependencies shared by routers.

Routers reach the app's use cases through :class:`AppServices`, the part of the composition
root (``container.Container``) they read: the routers depend on this protocol, never on the
container module, so nothing here imports the composition root back."""

from __future__ import annotations

from typing import Protocol

from fastapi import Request

from orchestration_service.config import Settings
from orchestration_service.events.bus import EventBus
from orchestration_service.events.handlers import EventProcessor
from orchestration_service.events.publisher import OutboxRelay
from orchestration_service.events.replay import DeadLetterReplay
from orchestration_service.services.dead_letters import DeadLetterService
from orchestration_service.services.event_log import EventLog, LogNotifier
from orchestration_service.services.fleet import FleetService
from orchestration_service.services.progress_board import ProgressBoard
from orchestration_service.services.projects import ProjectService
from orchestration_service.services.provenance_store import ProvenanceStore
from orchestration_service.services.reviews import ReviewService
from orchestration_service.services.routing_engine import RoutingEngine
from orchestration_service.services.task_manager import TaskManager


class Pingable(Protocol):
    async def ping(self) -> None: ...


class RoutesTasks(Protocol):
    """The dispatcher loop, as health reads it (its routing engine's dependencies)."""

    @property
    def engine(self) -> RoutingEngine: ...


class AppServices(Protocol):
    """What the routers read from ``app.state.container`` (read-only)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def tasks(self) -> TaskManager: ...
    @property
    def projects(self) -> ProjectService: ...
    @property
    def provenance(self) -> ProvenanceStore: ...
    @property
    def reviews(self) -> ReviewService: ...
    @property
    def events(self) -> EventProcessor: ...
    @property
    def event_log(self) -> EventLog: ...
    @property
    def notifier(self) -> LogNotifier: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def relay(self) -> OutboxRelay: ...
    @property
    def dispatcher(self) -> RoutesTasks: ...
    @property
    def storage(self) -> Pingable: ...
    @property
    def migrated(self) -> bool: ...
    @property
    def fleet(self) -> FleetService: ...
    @property
    def dead_letters(self) -> DeadLetterService: ...
    @property
    def replay(self) -> DeadLetterReplay: ...
    @property
    def progress_board(self) -> ProgressBoard: ...
    async def refresh_migrated(self) -> bool: ...


def container(request: Request) -> AppServices:
    c: AppServices = request.app.state.container
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
