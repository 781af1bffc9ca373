"""Health endpoints: liveness, readiness, and each dependency's state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from orchestration_service import __version__
from orchestration_service.http import JSON
from orchestration_service.redaction import reason
from orchestration_service.routers.deps import container
from orchestration_service.schemas.common import DetailedHealth, Health

router = APIRouter(tags=["health"])


def _base(status: str = "healthy") -> dict[str, Any]:
    return {"status": status, "version": __version__, "timestamp": datetime.now(UTC)}


@router.get("/health", response_model=Health, summary="Service health")
async def health() -> JSON:
    return JSON(_base())


@router.get("/health/live", response_model=Health, summary="The process answers")
async def live() -> JSON:
    return JSON(_base())


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Migrated, database reachable, consumer attached",
)
async def ready(request: Request) -> JSON:
    c = container(request)
    ok = c.bus.consuming
    try:
        await c.storage.ping()
        ok = await c.refresh_migrated() and ok
    except Exception:
        ok = False
    return JSON(_base("healthy" if ok else "unhealthy"), status_code=200 if ok else 503)


@router.get(
    "/health/detailed",
    response_model=DetailedHealth,
    responses={503: {"model": DetailedHealth}},
    summary="Each dependency: connected, degraded or unconfigured",
)
async def detailed(request: Request) -> JSON:
    c = container(request)
    deps: dict[str, str] = {}
    details: dict[str, Any] = {}
    try:
        await c.storage.ping()
        deps["database"] = "connected"
    except Exception as exc:
        deps["database"] = "disconnected"
        details["database"] = reason(exc)  # classified: never the driver's text
    deps["broker"] = c.bus.health()
    if deps["broker"] != "connected":
        details["broker"] = getattr(c.bus, "last_error", None) or "not connected"
    if c.relay.last_error:
        details["outbox_relay"] = c.relay.last_error
    # Agent and RAG: connected (the last call succeeded, or with no recent call a cached
    # GET /health probe answers), degraded (breaker open or the last call failed, or the
    # probe fails: routing falls back to the built-in analyzer / no context), unconfigured.
    for name, (state, info) in (await c.dispatcher.engine.health()).items():
        deps[name] = state
        if info:
            details[name] = info
    details["migrated"] = c.migrated
    details["relay_leader"] = c.relay.is_leader
    healthy = deps["database"] == "connected"
    body = {**_base("healthy" if healthy else "unhealthy"), "dependencies": deps, "details": details}
    return JSON(body, status_code=200 if healthy else 503)
