"""HTTP edge concerns shared by every router: problem+json errors and the body limit."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service.db.errors import DATABASE_ERRORS
from orchestration_service.db.errors import is_transient as is_transient  # routers classify errors here
from orchestration_service.domain.errors import (
    PROBLEM_BASE,
    OrchestrationError,
    PayloadTooLarge,
)
from orchestration_service.schemas.common import PROBLEM_JSON

log = logging.getLogger(__name__)

__all__ = [
    "JSON",
    "PROBLEM_JSON",
    "BodyLimitMiddleware",
    "GZipWhenAccepted",
    "install_error_handlers",
    "json_default",
    "problem",
    "transient_problem",
]


class JSON(JSONResponse):
    """JSON via orjson, which serialises UUIDs and datetimes natively (fast path).

    A ``JSONResponse`` subclass so that FastAPI documents each route's ``response_model``
    (for any other response class it writes ``{"type": "string"}``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=json_default)


def json_default(value: Any) -> Any:
    # asyncpg returns its own UUID subclass, and Decimals come from NUMERIC columns.
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_STATUS_KINDS = {
    400: ("bad-request", "Malformed request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Resource not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict with the current state"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    503: ("service-unavailable", "Service unavailable"),
}


def route_template(scope: Scope) -> str | None:
    """The matched route's full path template (e.g. /api/v1/tasks/{task_id}), never the raw
    path: FastAPI keeps included routes relative to their router, so create_app records the
    prefix of each one."""
    route = scope.get("route")
    if route is None:
        return None
    app = scope.get("app")
    templates = getattr(getattr(app, "state", None), "route_templates", None) or {}
    return templates.get(id(route)) or getattr(route, "path", None)


def problem(
    status: int,
    *,
    kind: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    default_kind, default_title = _STATUS_KINDS.get(status, ("internal-error", "Internal server error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (kind or default_kind),
        "title": title or default_title,
        "status": status,
        "detail": detail or title or default_title,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        return ".".join(parts[1:]) or parts[0]
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OrchestrationError)
    async def _domain(request: Request, exc: OrchestrationError) -> Response:
        return problem(
            exc.status,
            kind=exc.kind,
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            extra=exc.extra,
            headers=getattr(exc, "headers", None),  # e.g. Retry-After of a 503
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": _loc(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in exc.errors()
        ]
        json_error = any(e.get("type") == "json_invalid" for e in exc.errors())
        if json_error:
            return problem(400, detail="the request body is not valid JSON", instance=request.url.path)
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return problem(422, detail=detail, instance=request.url.path, extra={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code,
            detail=str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _unhandled(request: Request, exc: Exception) -> Response:
        transient = transient_problem(request.method, request.url.path, exc)
        if transient is not None:
            return transient
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, detail="an internal error occurred; it has been logged", instance=request.url.path
        )

    # The database's errors are answered where routes raise them, so that a 503 is a handled
    # answer: the catch-all below (Starlette's outermost layer) re-raises after answering,
    # and the server would log a traceback per request all through an outage.
    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, _unhandled)
    app.add_exception_handler(Exception, _unhandled)


def transient_problem(method: str, path: str, exc: BaseException) -> Response | None:
    """The 503 answer (Retry-After) to a transient database failure, else None."""
    if not is_transient(exc):
        return None
    # The database is away or overloaded, or aborted this request's transaction for a
    # deadlock: the request may be sent again (task submission with its Idempotency-Key, if
    # the connection dropped during the commit).
    log.warning("%s %s: transient database failure: %s: %s", method, path, type(exc).__name__, exc)
    return problem(
        503,
        detail="the database is unavailable or busy; retry shortly",
        instance=path,
        headers={"Retry-After": "1"},
    )


class GZipWhenAccepted:
    """gzip for clients that accept it, at the fastest level; other requests pass straight
    through, with no per-request wrapper. Small documents (a task's status) stay plain:
    compressing them costs more CPU than the bytes saved. Level 1 (nginx's default) because
    the large answers are the slow ones: a 300 kB graph answer (impact of 2,000 records) took
    6.5 ms of CPU at level 6, about as much as building it, and 2.2 ms at level 1, for 11 %
    more bytes (77 kB against 70 kB)."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = 1024, compresslevel: int = 1) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if b"gzip" in value:
                        await self.gzip(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Rejects bodies over the limit with 413 before the app reads them (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
                break
        received = 0
        limit = self.max_bytes
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            if not response_started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, detail=f"the request body exceeds {self.max_bytes} bytes", instance=scope.get("path")
        )
        await response(scope, receive, send)
