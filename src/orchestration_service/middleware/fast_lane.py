"""The fast lane, an ASGI middleware: ``GET /api/v1/tasks/{id}``, ``POST /api/v1/tasks`` and
workers' heartbeats (``POST /api/v1/events`` of one ``task.progress``) without FastAPI's
per-request machinery.

Reading a task's status and submitting tasks are most of the API's traffic. FastAPI's
layers (routing, dependency solving, exception stacks, response classes) cost more CPU
per request than the work itself, so these two are answered here, as plain ASGI, calling
the same use cases (``TaskManager``) and building the same documents.

The FastAPI routes in ``routers/tasks.py`` stay the reference: they define the OpenAPI
contract and answer every error. The lane answers only the plain successful case and hands
anything else — a body that does not validate, an unknown id, a project outside the key's
scope, an idempotency conflict — to them untouched (the body it read is replayed), so
errors are the reference's by construction. ``server.fast_lane: false`` turns the lane
off; ``tests/contract/test_fast_lane.py`` checks both give the same answers.

It sits inside the edge middleware (request id, metrics, tracing, API keys, body limit),
and marks the request with the reference route so metrics and traces label it the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import EventRejected, OrchestrationError
from orchestration_service.events.handlers import EventProcessor, parse_envelope
from orchestration_service.http import json_default, transient_problem
from orchestration_service.logs import annotate_access
from orchestration_service.schemas.tasks import SubmitTask
from orchestration_service.schemas.views import task_document
from orchestration_service.services.task_manager import TaskManager

TASKS = "/api/v1/tasks"
EVENTS = "/api/v1/events"
STRUCTURED = b"application/cloudevents+json"
_ONE_TASK_LEN = len(TASKS) + 1 + 36  # /api/v1/tasks/<canonical UUID>
_JSON_HEADERS = [(b"content-type", b"application/json")]


Attempt = Callable[[Scope, Send, bytes], Awaitable[bool]]  # True: answered here


class LaneCounts:
    """Requests the lane answered and handed on (``app.state.fast_lane``: tests read it)."""

    __slots__ = ("answered", "handed_on")

    def __init__(self) -> None:
        self.answered = 0
        self.handed_on = 0


class FastLaneMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        status_route: BaseRoute,
        submit_route: BaseRoute,
        counts: LaneCounts,
        events_route: BaseRoute | None = None,
    ) -> None:
        self.app = app
        self.status_route = status_route
        self.submit_route = submit_route
        self.events_route = events_route
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            method = scope["method"]
            if method == "GET" and len(path) == _ONE_TASK_LEN and path.startswith(TASKS + "/"):
                if await self._status(scope, send, path[len(TASKS) + 1 :]):
                    self.counts.answered += 1
                    return
                self.counts.handed_on += 1
            elif method == "POST" and path == TASKS:
                await self._lane(scope, receive, send, self._try_submit)
                return
            elif method == "POST" and path == EVENTS and self.events_route is not None:
                await self._lane(scope, receive, send, self._try_progress)
                return
        await self.app(scope, receive, send)

    async def _status(self, scope: Scope, send: Send, raw_id: str) -> bool:
        try:
            task_id = uuid.UUID(raw_id)
        except ValueError:
            return False
        try:
            view = await _tasks(scope).get(task_id, project_ids=_project_scope(scope))
        except OrchestrationError:
            return False  # not found (or not visible): the reference answers
        except Exception as exc:
            return await _unavailable(scope, send, exc)
        scope["route"] = self.status_route
        annotate_access(scope, task_id=str(task_id), project_id=view.task["project_id"])
        await _respond(send, 200, task_document(view.task, view.subtasks, view.dependencies))
        return True

    async def _lane(self, scope: Scope, receive: Receive, send: Send, attempt: Attempt) -> None:
        body = await _read_body(receive)
        if await attempt(scope, send, body):
            self.counts.answered += 1
        else:
            self.counts.handed_on += 1
            await self.app(scope, _replay(body, receive), send)

    async def _try_submit(self, scope: Scope, send: Send, body: bytes) -> bool:
        content_type = b""
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
                if not 1 <= len(key) <= 255 or "\x00" in key:
                    return False
        if not content_type.startswith(b"application/json"):
            return False
        try:
            cmd = SubmitTask.model_validate_json(body)
        except ValidationError:
            return False
        visible = _project_scope(scope)
        if visible is not None and cmd.project_id not in visible:
            return False
        try:
            result = await _tasks(scope).submit(cmd, idempotency_key=key)
        except OrchestrationError:
            return False  # raised before anything is written (an idempotency conflict)
        except Exception as exc:
            return await _unavailable(scope, send, exc)
        t = result.task
        headers = [(b"location", f"{TASKS}/{t['id']}".encode())]
        if result.replayed:
            headers.append((b"idempotency-replayed", b"true"))
        scope["route"] = self.submit_route
        annotate_access(scope, task_id=str(t["id"]), project_id=t["project_id"])
        await _respond(
            send,
            201,
            {
                "task_id": t["id"],
                "project_id": t["project_id"],
                "status": t["status"],
                "created_at": t["created_at"],
                "estimated_completion": result.estimated_completion,
            },
            headers,
        )
        return True

    async def _try_progress(self, scope: Scope, send: Send, body: bytes) -> bool:
        """One ``task.progress`` in structured mode, kept or ignored; anything else (another
        event, a batch, binary mode, a rejection) goes to the reference route."""
        content_type = next((v for n, v in scope["headers"] if n == b"content-type"), b"")
        if content_type.split(b";")[0].strip().lower() != STRUCTURED:
            return False
        try:
            ce = parse_envelope(body)
        except EventRejected:
            return False
        if ce.source == ev.SOURCE or ev.event_name_of(ce.type) != ev.TASK_PROGRESS:
            return False
        events: EventProcessor = scope["app"].state.container.events
        try:
            result = await events.process(ce, projects=_project_scope(scope))
        except EventRejected:
            return False  # nothing was written: the reference answers, and keeps the dead letter
        except Exception as exc:
            return await _unavailable(scope, send, exc)
        scope["route"] = self.events_route
        document = {"id": ce.id, "type": ce.type, "outcome": result.outcome, "detail": result.detail}
        await _respond(send, 202, document)
        return True


def _tasks(scope: Scope) -> TaskManager:
    # The app's use case, from the container the lifespan built (the lane needs nothing else).
    tasks: TaskManager = scope["app"].state.container.tasks
    return tasks


def _project_scope(scope: Scope) -> list[str] | None:
    visible: list[str] | None = scope.get("state", {}).get("project_scope")
    return visible


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _unavailable(scope: Scope, send: Send, exc: Exception) -> bool:
    """A transient database failure: answered 503 here, as the reference would (handing the
    request on would run it, and wait on the database, a second time). Anything else is raised."""
    response = transient_problem(scope["method"], scope["path"], exc)
    if response is None:
        raise exc
    await response(scope, _no_body, send)
    return True


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _respond(
    send: Send, status: int, document: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(document, default=json_default)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
