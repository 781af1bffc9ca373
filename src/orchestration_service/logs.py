"""Logging: one JSON object per line (or a console format), with request/task/event context.

Context (request_id, task_id, project_id, event_id, trace_id) lives in contextvars, so every
line logged while handling a request or an event carries it without passing it around.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service.config import LoggingSettings
from orchestration_service.http import route_template
from orchestration_service.redaction import RedactingFilter

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
project_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("project_id", default=None)
event_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
CONTEXT_VARS = {
    "request_id": request_id_var,
    "task_id": task_id_var,
    "project_id": project_id_var,
    "event_id": event_id_var,
}


def _trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, var in CONTEXT_VARS.items():
            value = var.get()
            if value is not None:
                out[key] = value
        trace_id = _trace_id()
        if trace_id:
            out["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_text:  # the redacting filter leaves the cleaned traceback here
            out["exception"] = record.exc_text
        elif record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(settings: LoggingSettings) -> None:
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # no URL password reaches a log line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("aiormq", "aio_pika", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # uvicorn's own access log is replaced by ours (same format, with the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


access_log = logging.getLogger("orchestration_service.access")

# Fields a handler adds to its request's access line (the task a POST created, its project).
# Kept in the ASGI scope, not in contextvars: the fast lane and the routes run below this
# middleware, and a value they set must reach its access line whatever context they ran in.
_ACCESS_FIELDS = "orchestration.access_fields"


def annotate_access(scope: Scope, **fields: str) -> None:
    """Add ``fields`` (e.g. task_id, project_id) to the access log line of this request."""
    scope.setdefault(_ACCESS_FIELDS, {}).update(fields)


class RequestContextMiddleware:
    """Takes X-Request-ID (or makes one), returns it, and writes the access log line."""

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:128]
                break
        request_id = incoming or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,  # on the record itself, whoever formats it
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route_template(scope),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                        **scope.get(_ACCESS_FIELDS, {}),
                    },
                )
            request_id_var.reset(token)
