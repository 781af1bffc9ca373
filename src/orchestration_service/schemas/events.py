"""Schemas of the CloudEvent envelope and of the events this service consumes.

Tolerant reader: unknown fields are kept and ignored, never rejected; missing or mistyped
required fields fail validation (dead letter on the bus, 422 over HTTP).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=255)]


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
    path: str | None = None
    location: str | None = None
    checksum: str | None = None
    size_bytes: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _path_or_location(self) -> ArtifactIn:
        if not (self.path or self.location):
            raise ValueError("an artifact needs a path or a location")
        return self


class InputIn(_Tolerant):
    artifact_id: NonEmpty
    relationship: str = "consumed"
    version_at_consumption: str | None = None


class TaskOutputCreated(_Tolerant):
    task_id: NonEmpty
    artifacts: list[ArtifactIn]
    worker_id: str | None = None
    model_used: str | None = None
    tokens_input: int | None = Field(None, ge=0)
    tokens_output: int | None = Field(None, ge=0)
    execution_time_ms: int | None = Field(None, ge=0)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: dict[str, Any] | str | None = None
    inputs: list[InputIn] | None = None
    prompt_template: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class TaskValidated(_Tolerant):
    task_id: NonEmpty
    confidence: float | None = Field(None, ge=0, le=1)
    artifact_id: str | None = None
    artifacts: list[ArtifactIn] | None = None
    qa_profile: str | None = None
    qa_result_id: str | None = None
    validators: Any = None
    details: dict[str, Any] | None = None


class TaskRejected(_Tolerant):
    task_id: NonEmpty
    reason: str | None = None
    feedback: str | dict[str, Any] | None = None
    qa_result_id: str | None = None


class TaskFailed(_Tolerant):
    task_id: NonEmpty
    error: str | dict[str, Any] | None = None
    retryable: bool | None = None


class RollbackRequested(_Tolerant):
    """Targeted: artifact_id and/or provenance_id. Project: project_id + checkpoint_id."""

    artifact_id: str | None = None
    provenance_id: str | None = None
    project_id: str | None = None
    checkpoint_id: str | None = None
    reason: str | None = None
    cascade_id: str | None = None
    rollback_id: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RollbackRequested:
        targeted = bool(self.artifact_id or self.provenance_id)
        project = bool(self.project_id and self.checkpoint_id)
        if not (targeted or project):
            raise ValueError(
                "needs artifact_id and/or provenance_id (targeted) or project_id and checkpoint_id (project)"
            )
        return self
