"""Response models used for the OpenAPI document (handlers return plain dicts), and the
input types shared by several routes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

PROBLEM_JSON = "application/problem+json"

NO_NUL = r"^[^\x00]*$"
"""Pattern for free text that reaches the database: PostgreSQL rejects NUL characters in text,
so they are refused as 422 at validation. (A pattern also makes pydantic refuse lone
surrogates, which no database encoding accepts.)"""


_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?", re.ASCII
)


def _date_time_text(value: Any) -> Any:
    """Only an ISO 8601 / RFC 3339 date-time, as documented: pydantic alone would also take a
    date, or a number of seconds since the epoch (``created_after=0.5``)."""
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-11-24T08:37:50Z")
    return value


def _to_utc(value: datetime) -> datetime:
    """Naive means UTC; an aware value is converted, and one that leaves datetime's range
    there (``0001-01-01T00:00:00+01:00``) is a validation error instead of an OverflowError."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time is out of range once converted to UTC") from None


UTCDateTime = Annotated[datetime, BeforeValidator(_date_time_text), AfterValidator(_to_utc)]
"""A date-time query parameter: RFC 3339 (without an offset: UTC), normalised to UTC."""


class FieldError(BaseModel):
    field: str = Field(..., description="Dotted location of the offending value, e.g. `options.tier`.")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, sent as `application/problem+json`."""

    type: str = Field(..., examples=["urn:dats:orchestration:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(None, description="Validation errors (422 only).")


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    version: str
    timestamp: datetime


class DetailedHealth(Health):
    dependencies: dict[str, Literal["connected", "degraded", "unconfigured", "disconnected"]]
    details: dict[str, Any] = Field(default_factory=dict)


class OldestWaiting(BaseModel):
    task_id: uuid.UUID
    created_at: datetime
    priority: str


class ProjectSummary(BaseModel):
    project_id: str
    name: str | None = None
    archived: bool = False
    counts: dict[str, int]
    total: int
    in_flight: int
    max_concurrent: int


class ProjectStatus(ProjectSummary):
    oldest_waiting_task: OldestWaiting | None
    median_execution_time_ms: int | None


class ProjectList(BaseModel):
    items: list[ProjectSummary]


class ProvenanceRecord(BaseModel):
    id: uuid.UUID
    task_id: str
    project_id: str
    status: str
    model_used: str | None
    worker_id: str | None
    tier: str | None
    domain: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    tokens_input: int | None
    tokens_output: int | None
    execution_time_ms: int | None
    confidence: float | None
    verification_status: str
    is_tainted: bool
    tainted_at: datetime | None
    tainted_reason: str | None
    tainted_by: str | None
    is_suspect: bool
    suspect_since: datetime | None
    suspect_source: str | None
    outputs: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    inputs_consumed: list[str]
    execution: dict[str, Any]
    verification: dict[str, Any]
    metrics: dict[str, Any]


class ProvenancePage(BaseModel):
    items: list[ProvenanceRecord]
    total: int = Field(description="Records matching the filters, counted up to 10,000 (see `total_capped`).")
    total_capped: bool = Field(
        False,
        description="More match than `total` says: the count stopped at 10,000 (page on with `cursor`).",
    )
    limit: int
    offset: int
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page (keyset: fast at any depth); null at the end."
    )


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The request body is not valid JSON",
    403: "Not allowed for this caller",
    404: "The resource does not exist",
    409: "Conflict with the current state",
    413: "The request body exceeds the configured limit",
    422: "Request validation failed",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for errors rendered as problem+json.

    FastAPI files a response ``model`` under the route's media type (application/json); the
    ``application/problem+json`` key marks the entry, and ``orchestration_service.openapi``
    moves the schema there."""
    return {
        code: {
            "model": Problem,
            "description": PROBLEM_DESCRIPTIONS.get(code) or HTTPStatus(code).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for code in codes
    }


def sse_response(description: str, events: list[str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry for a Server-Sent Events stream (``text/event-stream``).

    ``itemSchema`` (OpenAPI 3.2, also what FastAPI writes for its own SSE routes) describes one
    event: its fields as the wire carries them, ``data`` being one line of JSON."""
    event: dict[str, Any] = {"type": "string"}
    if events:
        event["enum"] = events
    item = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {
                "type": "string",
                "description": "Sequence number; send it back as Last-Event-ID to resume",
            },
            "event": event,
            "data": {"type": "string", "contentMediaType": "application/json"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    return {200: {"description": description, "content": {"text/event-stream": {"itemSchema": item}}}}
