"""Task API shapes: actions (input) and responses (output). The enums they use (priorities,
states, modes, domains, tiers, QA profiles) are the domain's (``domain.lifecycle``,
``domain.vocabulary``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestration_service.domain.lifecycle import Priority, TaskStatus
from orchestration_service.domain.vocabulary import Domain, QAProfile, Tier
from orchestration_service.schemas.common import NO_NUL

ProjectId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._:-]+$"),
    Field(description="1-255 characters of letters, digits and . _ : -", examples=["proj-123"]),
]


ConstitutionText = Annotated[str, StringConstraints(max_length=65_536, pattern=NO_NUL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskOptions(_Strict):
    # strict: JSON's true/false only (lax mode would take 0, 1, "yes" …), integers only.
    decompose: bool = Field(
        False, strict=True, description="Let the routing step split the task into dependent subtasks."
    )
    qa_profile: QAProfile | None = Field(None, description="Pin the QA profile.")
    domain: Domain | None = Field(None, description="Pin the domain (skips the analyzer's choice).")
    tier: Tier | None = Field(None, description="Pin the worker tier.")
    timeout_seconds: int | None = Field(
        None, strict=True, ge=1, le=7 * 24 * 3600, description="Time allowed in flight per attempt."
    )
    max_attempts: int | None = Field(
        None, strict=True, ge=1, le=100, description="Worker attempts before the task fails."
    )
    heartbeat_timeout_seconds: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=7 * 24 * 3600,
        description="Time a running attempt may go without task.progress or output before it is "
        "timed out (reason heartbeat_timeout); default: the service's setting (off unless set).",
    )
    constitution_override: ConstitutionText | None = Field(
        None,
        description="Markdown sent to the worker in place of the project's constitution, for this task "
        "only (recorded in its provenance).",
    )


class SubmitTask(_Strict):
    description: Annotated[str, StringConstraints(min_length=1, max_length=65_536, pattern=NO_NUL)] = Field(
        ..., examples=["Create a Python function that calculates fibonacci numbers"]
    )
    project_id: ProjectId
    priority: Priority | None = Field(None, description="Default from configuration (normal).")
    options: TaskOptions = Field(default_factory=TaskOptions)


class CancelTask(_Strict):
    reason: Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] | None = None


class TaskAccepted(BaseModel):
    task_id: uuid.UUID
    project_id: str
    status: TaskStatus
    created_at: datetime
    estimated_completion: datetime


class Artifact(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: str | None = None
    path: str | None = None


class SubtaskSummary(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    description: str
    depends_on: list[uuid.UUID] = Field(default_factory=list)


class TaskProgress(BaseModel):
    """The latest ``task.progress`` of the current attempt."""

    value: float | None = Field(None, ge=0, le=1, description="Fraction done, 0 to 1.")
    message: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    at: datetime = Field(description="When the worker reported it (the event's time).")


class TaskDocument(BaseModel):
    task_id: uuid.UUID
    project_id: str
    description: str
    status: TaskStatus
    priority: Priority
    mode: str | None
    domain: str | None
    tier: str | None
    qa_profile: str | None
    attempt: int
    max_attempts: int
    timeout_seconds: int
    options: dict[str, Any]
    parent_id: uuid.UUID | None
    depends_on: list[uuid.UUID] = Field(default_factory=list)
    subtasks: list[SubtaskSummary] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    execution_time_ms: int | None
    artifacts: list[Artifact] = Field(default_factory=list)
    provenance_id: uuid.UUID | None
    routing: dict[str, Any] | None = Field(None, description="Which analyzer decided the route, and why.")
    error: dict[str, Any] | None = None
    progress: TaskProgress | None = Field(
        None, description="The latest task.progress of the current attempt; null before any."
    )


class TaskPage(BaseModel):
    items: list[TaskDocument]
    total: int = Field(description="Tasks matching the filters, counted up to 10,000 (see `total_capped`).")
    total_capped: bool = Field(
        False, description="More tasks match than `total` says: the count stopped at 10,000."
    )
    limit: int
    offset: int
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page (keyset: fast at any depth); null at the end."
    )


class HistoryEntry(BaseModel):
    id: int
    task_id: uuid.UUID
    from_status: str | None = Field(None, alias="from", serialization_alias="from")
    to_status: str = Field(..., alias="to", serialization_alias="to")
    reason: str | None
    cause: str | None
    attempt: int | None
    details: dict[str, Any] | None
    time: datetime

    model_config = ConfigDict(populate_by_name=True)


class TaskHistory(BaseModel):
    task_id: uuid.UUID
    items: list[HistoryEntry]


class TaskTreeNode(BaseModel):
    """A task in a tree: ``depends_on`` names the siblings it waits for."""

    task_id: uuid.UUID
    status: TaskStatus
    description: str
    depends_on: list[uuid.UUID] = Field(default_factory=list)
    children: list[TaskTreeNode] = Field(default_factory=list)


class TaskTree(TaskTreeNode):
    """The top of a tree (the task asked for), with how much of it is shown."""

    subtask_count: int = Field(description="Subtasks shown under the top task, all levels.")
    truncated: bool = Field(description="More subtasks exist than the route returns (1,000).")
