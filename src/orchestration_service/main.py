"""App factory and lifespan wiring. Nothing connects at import time: ``create_app``
builds the HTTP app (middleware, routers, /metrics) and its lifespan builds, starts and stops
a :class:`~orchestration_service.container.Container` (the composition root)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.routing import BaseRoute

from orchestration_service import __version__, tracing
from orchestration_service.auth import ApiKeyMiddleware
from orchestration_service.config import Settings, load_settings
from orchestration_service.container import Container
from orchestration_service.cross_site import CrossSiteGuard
from orchestration_service.http import JSON, BodyLimitMiddleware, GZipWhenAccepted, install_error_handlers
from orchestration_service.logs import RequestContextMiddleware
from orchestration_service.metrics import Metrics, MetricsMiddleware
from orchestration_service.middleware.fast_lane import FastLaneMiddleware, LaneCounts
from orchestration_service.routers.ui import mount_ui


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = Container.build(settings, metrics)
        app.state.container = container
        await container.start()
        try:
            yield
        finally:
            await container.stop()

    app = FastAPI(
        title="DATS Orchestration Service",
        version=__version__,
        description=(
            "Task lifecycle, routing and provenance for DATS. Errors are "
            "`application/problem+json` (RFC 9457) with a stable `type`."
        ),
        lifespan=lifespan,
        default_response_class=JSON,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    from orchestration_service import openapi
    from orchestration_service.routers import (
        events,
        fleet,
        health,
        projects,
        provenance,
        reviews,
        streams,
        task_actions,
        tasks,
    )

    # Starlette runs the last-added middleware first: request context, metrics, cross-site guard,
    # auth, body
    # limit, then the fast lane for the two hottest routes.
    if settings.server.fast_lane:
        app.state.fast_lane = LaneCounts()
        app.add_middleware(
            FastLaneMiddleware,
            status_route=_route(tasks.router, "/tasks/{task_id}", "GET"),
            submit_route=_route(tasks.router, "/tasks", "POST"),
            events_route=_route(events.router, "/events", "POST"),
            counts=app.state.fast_lane,
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    if settings.auth.enabled:
        app.add_middleware(ApiKeyMiddleware)
    # Before the key check and the fast lane: a cross-site POST is refused whatever its key.
    app.add_middleware(
        CrossSiteGuard, allowed_origins=settings.server.allowed_origins, auth_enabled=settings.auth.enabled
    )
    if settings.observability.metrics_enabled:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(GZipWhenAccepted)  # skips text/event-stream
    app.add_middleware(RequestContextMiddleware, access_log_enabled=settings.observability.access_log)
    tracing.configure(settings.observability.otel_exporter)
    app.add_middleware(tracing.TracingMiddleware)  # outermost: every span below is its child

    app.state.route_templates = {}
    for module in (health, tasks, task_actions, streams, projects, provenance, events, reviews, fleet):
        app.include_router(module.router, prefix="/api/v1")
        for route in module.router.routes:
            app.state.route_templates[id(route)] = "/api/v1" + getattr(route, "path", "")
    if settings.observability.metrics_enabled:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(request: Request) -> Response:
            c: Container = request.app.state.container
            body = await metrics.render(
                broker=c.bus.health(), listeners=c.notifier.listener_count, dependencies=c.dependency_states()
            )
            return Response(body, media_type=CONTENT_TYPE_LATEST)

    mount_ui(app)
    openapi.install(app)
    return app


def _route(router: APIRouter, path: str, method: str) -> BaseRoute:
    for route in router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no route {method} {path}")


def app_factory() -> FastAPI:
    """Entry for ``uvicorn --factory`` (settings from the environment)."""
    app = create_app()
    # In the server process, modules and the app live for ever: keep them out of every GC
    # pass (the collector's cost showed in profiles). Not done for apps built in tests.
    gc.collect()
    gc.freeze()
    # Requests allocate many short-lived objects: collect the young generation less often
    # (the default, 700, ran a collection every few requests).
    gc.set_threshold(20_000, 20, 20)
    return app
