"""Response models used for the OpenAPI document (handlers return plain dicts)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(..., examples=["urn:dats:orchestration:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


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
    total: int
    limit: int
    offset: int


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 404, 409, 413, 422)
}
