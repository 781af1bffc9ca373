"""Schemas of the CloudEvent envelope and of the events this service consumes.

Tolerant reader: unknown fields are kept and ignored, never rejected; missing or mistyped
required fields fail validation (dead letter on the bus, 422 over HTTP).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=255)]

# Bounds of what the database stores (db/tables.py), so an event the store would refuse is
# refused at the door (422 / dead letter) instead of failing a later event's transaction.
INT32 = 2**31 - 1  # Integer columns (tokens)
INT64 = 2**63 - 1  # BigInteger columns; also orjson's bound for JSON integers
Id = Annotated[str, StringConstraints(max_length=255)]  # String(255) ids
Name100 = Annotated[str, StringConstraints(max_length=100)]  # provenance worker_id, model_used
Relationship = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Text4K = Annotated[str, StringConstraints(max_length=4096)]  # paths, locations (JSON, not columns)


def _utc(value: datetime) -> datetime:
    """Naive is UTC; the instant must be representable in UTC (a Python datetime)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class CloudEvent(BaseModel):
    """CloudEvents 1.0 (structured JSON). Extension attributes (e.g. traceparent) are kept."""

    model_config = ConfigDict(extra="allow")

    specversion: Annotated[str, StringConstraints(pattern=r"^1\.0$")]
    type: NonEmpty
    source: NonEmpty
    id: NonEmpty
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None


class ArtifactIn(_Tolerant):
    id: NonEmpty
    type: NonEmpty
    path: Text4K | None = None
    location: Text4K | None = None
    checksum: Id | None = None
    size_bytes: int | None = Field(None, ge=0, le=INT64)

    @model_validator(mode="after")
    def _path_or_location(self) -> ArtifactIn:
        if not (self.path or self.location):
            raise ValueError("an artifact needs a path or a location")
        return self


class InputIn(_Tolerant):
    artifact_id: NonEmpty
    relationship: Relationship = "consumed"
    version_at_consumption: Id | None = None


class TaskOutputCreated(_Tolerant):
    task_id: NonEmpty
    artifacts: list[ArtifactIn]
    worker_id: Name100 | None = None
    model_used: Name100 | None = None
    tokens_input: int | None = Field(None, ge=0, le=INT32)
    tokens_output: int | None = Field(None, ge=0, le=INT32)
    execution_time_ms: int | None = Field(None, ge=0, le=INT64)
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    output: dict[str, Any] | str | None = None
    inputs: list[InputIn] | None = None
    prompt_template: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class TaskValidated(_Tolerant):
    task_id: NonEmpty
    confidence: float | None = Field(None, ge=0, le=1)
    artifact_id: Id | None = None
    artifacts: list[ArtifactIn] | None = None
    qa_profile: Id | None = None
    qa_result_id: Id | None = None
    verified_by: Id | None = None
    validators: Any = None
    details: dict[str, Any] | None = None


class TaskRejected(_Tolerant):
    task_id: NonEmpty
    reason: str | None = None
    feedback: str | dict[str, Any] | None = None
    qa_result_id: Id | None = None


class TaskFailed(_Tolerant):
    task_id: NonEmpty
    error: str | dict[str, Any] | None = None
    retryable: bool | None = None
    worker_id: Name100 | None = None


class TaskProgress(_Tolerant):
    """A worker's heartbeat. Kept on the task (the latest wins), never in its history."""

    task_id: NonEmpty
    attempt: int | None = Field(None, ge=1, le=INT32)
    progress: float | None = Field(None, ge=0, le=1)
    message: Text4K | None = None
    worker_id: Name100 | None = None


class RollbackRequested(_Tolerant):
    """Targeted: artifact_id and/or provenance_id. Project: project_id + checkpoint_id."""

    artifact_id: Id | None = None
    provenance_id: Id | None = None
    project_id: Id | None = None
    checkpoint_id: Id | None = None
    reason: str | None = None
    cascade_id: Id | None = None
    rollback_id: Id | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RollbackRequested:
        targeted = bool(self.artifact_id or self.provenance_id)
        project = bool(self.project_id and self.checkpoint_id)
        if not (targeted or project):
            raise ValueError(
                "needs artifact_id and/or provenance_id (targeted) or project_id and checkpoint_id (project)"
            )
        return self
