"""Events over HTTP: the CloudEvents ingress and the durable SSE feed.

Ingress events go through exactly the handlers, schema validation and idempotency (the
CloudEvent ``id``) that broker deliveries go through (``EventProcessor.process``).
A batch answers per event (docs/integrating/events.md: each event is its own transaction, as on the bus).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import (
    BadRequest,
    EventRejected,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from orchestration_service.domain.topics import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_WORDS,
    MAX_PATTERNS,
    pattern_problem,
)
from orchestration_service.events.handlers import parse_envelope
from orchestration_service.http import JSON, is_transient
from orchestration_service.routers.deps import container, narrowed_projects, visible_projects
from orchestration_service.schemas.common import problem_responses, sse_response
from orchestration_service.schemas.events import CloudEvent
from orchestration_service.services.event_log import LogFilter
from orchestration_service.sse import SSEResponse, sse_comment, sse_message

router = APIRouter(tags=["events"])
log = logging.getLogger(__name__)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_CE_ATTRS = ("specversion", "type", "source", "id", "time", "subject", "dataschema")

_ENVELOPE = CloudEvent.model_json_schema()
_ACCEPTED: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "outcome", "detail"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "outcome": {"type": "string", "enum": ["processed", "duplicate", "ignored"]},
        "detail": {"type": "string"},
    },
}
_BATCH_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "status", "outcome"],
                "properties": {
                    "index": {"type": "integer"},
                    "status": {"type": "integer"},
                    "id": {"type": ["string", "null"]},
                    "type": {"type": ["string", "null"]},
                    "outcome": {"type": "string", "enum": ["processed", "duplicate", "ignored", "rejected"]},
                    "detail": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            },
        }
    },
}
_INGRESS_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "Structured mode (`application/cloudevents+json`), batch mode "
            "(`application/cloudevents-batch+json`, a JSON array, answered per event), or "
            "binary mode (`ce-specversion`, `ce-type`, `ce-source`, `ce-id` headers; the body is `data`)."
        ),
        "content": {
            STRUCTURED: {"schema": _ENVELOPE},
            # Any item: each is validated on its own and answered in `results` (the batch is 200).
            BATCH: {"schema": {"type": "array", "items": {"description": "a CloudEvent"}}},
            "application/json": {
                "schema": {"type": "object", "description": "binary mode: the event's data"}
            },
        },
    },
    "responses": {
        "202": {
            "description": "Accepted and applied (or ignored: the task is final)",
            "content": {"application/json": {"schema": _ACCEPTED}},
        },
        "200": {
            "description": "A duplicate (already processed: nothing changed), or a batch's per-event results",
            "content": {"application/json": {"schema": {"oneOf": [_ACCEPTED, _BATCH_RESULT]}}},
        },
    },
}


def _problem_for(exc: EventRejected) -> BadRequest | ValidationFailed:
    extra = {"field": exc.field, "reason": exc.kind} if exc.field else {"reason": exc.kind}
    if exc.kind == "malformed":
        return BadRequest(exc.reason, extra=extra)
    return ValidationFailed(exc.reason, extra=extra)


def _binary_envelope(request: Request, body: bytes) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for name, value in request.headers.items():
        if name.startswith("ce-"):
            env[name[3:]] = value
    missing = [a for a in ("specversion", "type", "source", "id") if a not in env]
    if missing:
        raise EventRejected(
            "malformed", f"binary mode needs the ce-{missing[0]} header", field=f"ce-{missing[0]}"
        )
    ctype = request.headers.get("content-type", "application/json")
    env["datacontenttype"] = ctype
    if body:
        try:
            env["data"] = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise EventRejected(
                "malformed", "binary mode: the body (data) is not JSON", field="data"
            ) from None
    return env


async def _process_one(request: Request, raw: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    c = container(request)
    projects = visible_projects(request)
    try:
        ce = parse_envelope(raw)  # also refuses NUL characters, which PostgreSQL cannot store
        result = await c.events.process(ce, projects=projects)
    except EventRejected as exc:
        # Kept as a dead letter too (GET /dead-letters), attributed only within the key's projects.
        await c.dead_letters.record("ingress", raw, exc.kind, exc.reason, projects)
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("event ingress: transient failure: %s: %s", type(exc).__name__, exc)
        raise ServiceUnavailable("the database is unavailable; retry later") from None
    status = 200 if result.outcome == "duplicate" else 202
    return status, {"id": ce.id, "type": ce.type, "outcome": result.outcome, "detail": result.detail}


@router.post(
    "/events",
    openapi_extra=_INGRESS_DOC,
    summary="Deliver CloudEvents over HTTP",
    status_code=202,
    responses=problem_responses(400, 413, 415, 422, 503),
)
async def ingest(request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    try:
        if ctype == BATCH:
            return await _batch(request, body)
        if ctype == STRUCTURED:
            status, out = await _process_one(request, body)
        elif "ce-specversion" in request.headers:
            status, out = await _process_one(request, _binary_envelope(request, body))
        else:
            raise UnsupportedMediaType(
                f"use {STRUCTURED}, {BATCH}, or binary mode with ce-* headers (got {ctype or 'none'})"
            )
    except EventRejected as exc:
        raise _problem_for(exc) from None
    return JSON(out, status_code=status)


async def _batch(request: Request, body: bytes) -> Response:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the batch is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise BadRequest("a batch must be a JSON array of CloudEvents")
    if len(items) > 1000:
        raise ValidationFailed("a batch holds at most 1000 events", extra={"field": "batch"})
    results: list[dict[str, Any]] = []
    # Heartbeats of distinct tasks in a row are answered together, so that they share the
    # statements of the progress hot path (a worker's heartbeats of its tasks in one request);
    # a report is idempotent, decided by its time. Everything else goes one by one, in order.
    beats: dict[str, int] = {}  # task id -> the index of its report in the run at hand
    for i, item in enumerate(items):
        task_id = _heartbeat_task(item)
        if task_id is not None and task_id not in beats:
            beats[task_id] = i
            continue
        results += await _answer_together(request, items, list(beats.values()))
        beats.clear()
        if task_id is not None:
            beats[task_id] = i
        else:
            results.append(await _answer(request, i, item))
    results += await _answer_together(request, items, list(beats.values()))
    return JSON({"results": results}, status_code=200)


def _heartbeat_task(item: Any) -> str | None:
    """The task id of a ``task.progress`` batch item, as sent (validated when processed)."""
    kind = item.get("type") if isinstance(item, dict) else None
    if not isinstance(kind, str) or ev.event_name_of(kind) != ev.TASK_PROGRESS:
        return None
    data = item.get("data")
    task_id = data.get("task_id") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) else None


async def _answer_together(request: Request, items: list[Any], indexes: list[int]) -> list[dict[str, Any]]:
    if len(indexes) < 2:
        return [await _answer(request, i, items[i]) for i in indexes]
    answers = await asyncio.gather(*(_answer(request, i, items[i]) for i in indexes), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException):  # a 503 (database away) for the request, as one by one
            raise answer
    return [a for a in answers if not isinstance(a, BaseException)]


async def _answer(request: Request, i: int, item: Any) -> dict[str, Any]:
    try:
        status, out = await _process_one(request, item if isinstance(item, dict) else {"_": item})
    except EventRejected as exc:
        problem = _problem_for(exc)
        return {
            "index": i,
            "id": item.get("id") if isinstance(item, dict) else None,
            "status": problem.status,
            "outcome": "rejected",
            "type": problem.type,
            "detail": exc.reason,
            "field": exc.field,
        }
    return {"index": i, "status": status, **out}


# -- the feed -----------------------------------------------------------------------------
def _start_after(last_event_id: str | None, after: int | None) -> int | None:
    if after is not None:
        return after
    if last_event_id:
        try:
            return max(0, int(last_event_id))
        except ValueError:
            raise BadRequest("Last-Event-ID must be an event sequence number") from None
    return None


@router.get(
    "/events",
    summary="The event feed (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        **sse_response("Each event: `event` is its type, `data` the CloudEvent"),
        **problem_responses(400, 422, 503),
    },
)
async def feed(
    request: Request,
    type: Annotated[
        list[str] | None,
        Query(
            description=(
                f"Topic pattern (`*` one word, `#` any); at most {MAX_PATTERNS} patterns of "
                f"{MAX_PATTERN_LENGTH} characters and {MAX_PATTERN_WORDS} words each"
            )
        ),
    ] = None,
    project_id: Annotated[str | None, Query(max_length=255)] = None,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    after: Annotated[int | None, Query(ge=0, description="Replay every event after this sequence")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="Close after this many")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    c = container(request)
    problem = pattern_problem(type or [])
    if problem is not None:
        raise ValidationFailed(f"type: {problem}", extra={"errors": [{"field": "type", "message": problem}]})
    projects = narrowed_projects(request, project_id)
    flt = LogFilter(types=[t for t in type or [] if t], project_ids=projects, subject=subject)
    start = _start_after(last_event_id, after)
    slot = c.notifier.open_stream()  # 503 with Retry-After when the process has none free
    try:
        if start is None:
            # A live tail starts at the newest event as of now, before the response begins,
            # so a client that has the headers misses nothing committed after them.
            start = await c.event_log.head()
    except BaseException:
        slot.release()
        raise
    heartbeat = c.settings.events.sse_heartbeat_seconds

    async def stream() -> AsyncIterator[bytes]:
        yield sse_comment("event feed")
        sent = 0
        async for batch in c.event_log.follow(start, flt, heartbeat=heartbeat, cut=slot.cut):
            if batch is None:
                yield sse_comment("keepalive")
                continue
            if limit is not None:
                batch = batch[: limit - sent]
            # One write per batch, not per event.
            yield b"".join(sse_message(e.seq, e.event_type, e.envelope) for e in batch)
            sent += len(batch)
            if limit is not None and sent >= limit:
                return

    return SSEResponse(stream(), slot)
